"""Early stopping on the real control plane: trial pods (played by the test kubelet) push their reports to the
operator's endpoint with their pod's token, the operator stops the trials ASHA condemns by deleting their pods,
and their Trials end EarlyStopped, as ``kubectl get trials`` shows; a pod that reports for another trial is
refused and changes nothing."""

from __future__ import annotations

from cluster import Behaviour, free_port
from operator_cluster import by_name, ended, experiment, run_operator, wait_for

ASHA = {"rule": "asha", "settings": {"minResource": 1, "maxResource": 9, "reductionFactor": 3}}


def test_trials_pushing_reports_are_stopped_early_by_asha_and_forgers_are_refused(namespace):
    def behaviour(pod):
        forge = "demo-0" if pod["metadata"]["name"] == "demo-1" else None
        return Behaviour(seconds=3.0, reports=9, forge=forge)

    with namespace.kubelet(behaviour=behaviour) as kubelet, run_operator(namespace) as operator:
        namespace.apply(experiment(maxTrials=9, parallelism=3, earlyStopping=ASHA))
        final = ended(namespace, "demo", timeout=120)
        table = namespace.kubectl("get", "trials")
        answers = list(kubelet.report_answers)
    assert "Traceback" not in operator.log(), operator.log()[-3000:]
    assert final["phase"] == "Succeeded", final
    trials = by_name(namespace.trials())
    stopped = {name for name, t in trials.items() if t["status"]["phase"] == "EarlyStopped"}
    assert stopped, {name: t["status"].get("phase") for name, t in trials.items()}
    assert "EarlyStopped" in table
    for name in stopped:
        status = trials[name]["status"]
        assert status["reason"] == "EarlyStopped" and "asha" in status["message"]
        assert status["progress"]["rungs"] and status["progress"]["step"] < 9
    assert {t["status"]["phase"] for t in trials.values()} <= {"Succeeded", "EarlyStopped"}
    # genuine reports were accepted; the forger's were refused: another trial's token 403, a made-up one 401
    assert any(status == 202 for pod, trial, status in answers if pod == trial)
    forged = {status for pod, trial, status in answers if pod != trial}
    assert forged and forged <= {401, 403} and {401, 403} <= forged, forged
    assert "report refused (403)" in operator.log() and "report refused (401)" in operator.log()
    # the key the tokens are signed with lives in the operator's namespace
    assert namespace.kubectl("get", "secret", "kubetune-report-key", "-o", "name") == "secret/kubetune-report-key\n"


def test_an_operator_killed_mid_run_is_replaced_and_the_new_one_goes_on_stopping_trials(namespace):
    # the report endpoint keeps its address across the restart, as the chart's Service does
    port = free_port()
    reports = ("--reports-port", str(port), "--reports-url", f"http://127.0.0.1:{port}",
               "--report-key-namespace", namespace.name)
    with namespace.kubelet(behaviour=lambda pod: Behaviour(seconds=4.5, reports=9)) as kubelet, \
            run_operator(namespace, *reports) as operator:
        namespace.apply(experiment(maxTrials=12, parallelism=3, earlyStopping=ASHA))
        wait_for(lambda: any(t.get("status", {}).get("progress", {}).get("rungs", {}).get("3")
                             for t in namespace.trials()), timeout=60, what="a trial past the rung at 3")
        operator.kill()  # SIGKILL: whatever it had not written is lost with it
        # a Trial just created has no status yet: its status is written with its next change
        before = {name: (t.get("status") or {}).get("phase", "Pending")
                  for name, t in by_name(namespace.trials()).items()}
        restarted_at = len(operator.log())
        operator.start()
        final = ended(namespace, "demo", timeout=150)
        answers = list(kubelet.report_answers)
    after = operator.log()[restarted_at:]
    assert "Traceback" not in operator.log(), operator.log()[-3000:]
    assert final["phase"] == "Succeeded", final
    trials = by_name(namespace.trials())
    assert len(trials) == 12 and {t["status"]["phase"] for t in trials.values()} <= {"Succeeded", "EarlyStopped"}
    # what the first operator decided stands; the second one stopped trials too, from what it read back
    assert all(trials[name]["status"]["phase"] == "EarlyStopped" for name, phase in before.items()
               if phase == "EarlyStopped")
    assert "stopped by the asha rule" in after, after[-3000:]
    assert not [status for pod, trial, status in answers if status in (400, 401, 403, 413)]
