"""Early stopping on the real control plane: trial pods (played by the test kubelet) push their reports to the
operator's endpoint with their pod's token, the operator stops the trials ASHA condemns by deleting their pods,
and their Trials end EarlyStopped, as ``kubectl get trials`` shows; a pod that reports for another trial is
refused and changes nothing."""

from __future__ import annotations

from cluster import Behaviour
from operator_cluster import by_name, ended, experiment, run_operator

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
