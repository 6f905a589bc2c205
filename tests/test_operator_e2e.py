"""End to end on a real control plane: kubectl applies the CRDs and Experiments to kube-apiserver, the operator
(``kubetune operator``, its own process, as the chart's ServiceAccount) runs them, kube-scheduler places the
pods on fake nodes and the test kubelet plays them; kubectl reads the results."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time

import pytest
import yaml
from cluster import Behaviour, FakeNode, objective
from operator_cluster import (
    Operator,
    by_name,
    ended,
    experiment,
    release_until_ended,
    run_operator,
    succeeded,
    wait_for,
)


def test_crds_are_served_explained_and_enforced_by_the_api_server(namespace):
    explained = namespace.kubectl("explain", "experiment.spec.parallelism")
    assert "Trials running at once." in explained and "integer" in explained
    assert "Trials to run in total." in namespace.kubectl("explain", "experiments.spec.maxTrials")
    forbidden = experiment(name="forbidden", parallelism=0, maxTrials="many")
    refused = namespace.apply(forbidden, "--dry-run=server", check=False)
    assert "spec.parallelism: Invalid value: 0" in refused and "should be greater than or equal to 1" in refused
    assert "spec.maxTrials: Invalid value: \"string\"" in refused
    assert namespace.get("experiments") == []
    # unknown fields are pruned by the structural schema, except inside the embedded PodSpec
    document = experiment(name="pruned")
    document["spec"]["unknownField"] = 1
    document["spec"]["trialTemplate"]["spec"]["containers"][0]["tty"] = True
    namespace.apply(document, "--dry-run=server", "--validate=false")
    stored = json.loads(namespace.kubectl("apply", "-f", "-", "--dry-run=server", "--validate=false", "-o", "json",
                                          stdin=json.dumps(document)))
    assert "unknownField" not in stored["spec"]
    assert stored["spec"]["trialTemplate"]["spec"]["containers"][0]["tty"] is True


def test_experiment_applied_with_kubectl_runs_to_succeeded(namespace):
    # odd trials print their metrics (read through pods/log), even ones use the termination message
    def behaviour(pod):
        number = int(pod["metadata"]["name"].rsplit("-", 1)[1])
        return Behaviour(seconds=0.3, report="log" if number % 2 else "termination")

    with namespace.kubelet(behaviour=behaviour) as kubelet, run_operator(namespace) as operator:
        namespace.apply(experiment(maxTrials=6, parallelism=2, template={"retain": "all"}))  # pods read below
        wait_for(lambda: "demo-" in namespace.kubectl("get", "trials"), what="a trial")
        table = namespace.kubectl("get", "experiments,trials")
        final = succeeded(namespace)
        done_table = namespace.kubectl("get", "experiments")
        log = namespace.kubectl("logs", "demo-1")  # the kubelet's log, through the real pods/log
    assert operator.alive() or "Traceback" not in operator.log()
    assert "PHASE" in table and "RUNNING" in table and "BEST" in table and "EXPERIMENT" in table
    assert "Succeeded" in done_table and str(round(final["best"]["value"], 2))[:4] in done_table
    trials = by_name(namespace.trials())
    assert sorted(trials) == [f"demo-{i}" for i in range(6)]
    pods = by_name(namespace.pods())
    for name, trial in trials.items():
        assert trial["status"]["phase"] == "Succeeded"
        assert trial["status"]["value"] == pytest.approx(objective(pods[name]))
    assert kubelet.max_unfinished["demo"] <= 2
    assert final["trials"]["succeeded"] == 6 and final["reason"] == "MaxTrialsReached"
    assert final["best"]["trial"] == min(trials.values(), key=lambda t: t["status"]["value"])["metadata"]["name"]
    assert {p["metadata"]["ownerReferences"][0]["kind"] for p in pods.values()} == {"Trial"}
    assert all(p["spec"]["nodeName"] == "node-1" for p in pods.values())  # placed by kube-scheduler
    assert "epoch 2: loss=" in log
    assert kubelet.errors == []


def test_invalid_spec_ends_failed_with_the_message_and_an_event(namespace):
    document = experiment(name="broken")
    document["spec"]["parameters"][0].update(min=10, max=1)
    with run_operator(namespace):
        namespace.apply(document)
        namespace.kubectl("wait", "--for=condition=Failed", "experiment/broken", "--timeout=90s")
        final = ended(namespace, "broken")
        events = wait_for(lambda: [e for e in namespace.events() if e.get("reason") == "InvalidSpec"],
                          what="the InvalidSpec event")
    assert final["phase"] == "Failed" and final["reason"] == "InvalidSpec"
    assert "spec.parameters[0]: max (1) must be greater than min (10)" in final["message"]
    assert namespace.trials() == []
    assert "must be greater than min" in events[0]["message"] and events[0]["type"] == "Warning"
    assert events[0]["involvedObject"]["name"] == "broken" and events[0]["reportingComponent"] == "kubetune-operator"


def events_by_reason(namespace, awaited: str) -> dict[str, dict] | None:
    """The Events about the namespace's Experiments by reason, once one has the reason ``awaited``."""
    found = {event["reason"]: event for event in namespace.events() if event["involvedObject"]["kind"] == "Experiment"}
    return found if awaited in found else None


def test_suspend_then_resume(namespace):
    with namespace.kubelet(), run_operator(namespace):
        namespace.apply(experiment(suspend=True, maxTrials=4))
        namespace.kubectl("wait", "--for=condition=Suspended", "experiment/demo", "--timeout=90s")
        suspended = namespace.status("demo")
        table = namespace.kubectl("get", "experiments")
        assert namespace.trials() == []  # the pass that wrote Suspended created none
        namespace.kubectl("patch", "experiment", "demo", "--type=merge", "-p", '{"spec": {"suspend": false}}')
        namespace.kubectl("wait", "--for=condition=Succeeded", "experiment/demo", "--timeout=90s")
        final = namespace.status("demo")
        said = wait_for(lambda: events_by_reason(namespace, "MaxTrialsReached"), what="the Event of the end")
        described = namespace.kubectl("describe", "experiment", "demo")
    assert suspended["phase"] == "Suspended" and "Suspended" in table.splitlines()[1]
    # each move is one Event about the Experiment, from the operator's own name (and none from kopf)
    assert {"Suspended", "Resumed", "MaxTrialsReached"} <= set(said)
    assert "suspended with 0 trials still running" in said["Suspended"]["message"]
    for event in said.values():
        assert event["source"]["component"] == event["reportingComponent"] == "kubetune-operator", event
        assert event["involvedObject"]["name"] == "demo" and event["count"] == 1
    events_table = described.split("Events:", 1)[1]
    assert "kubetune-operator" in events_table and "kopf" not in events_table
    assert all(reason in events_table for reason in ("Suspended", "Resumed", "MaxTrialsReached"))
    assert not [e for e in namespace.events() if (e.get("source") or {}).get("component") == "kopf"]
    conditions = {c["type"]: c for c in final["conditions"]}
    assert conditions["Succeeded"]["status"] == "True" and conditions["Suspended"]["status"] == "False"
    assert all(c["lastTransitionTime"] and c["reason"] == "MaxTrialsReached" for c in conditions.values())
    assert final["trials"]["succeeded"] == 4


def test_parallelism_and_max_trials_edited_while_it_runs(namespace):
    # trials end only when the test lets them, so the edit finds the first one running
    with namespace.kubelet(behaviour=lambda pod: Behaviour(held=True)) as kubelet, run_operator(namespace):
        namespace.apply(experiment(parallelism=1, maxTrials=3))
        wait_for(kubelet.holding, what="the first trial to run")
        namespace.kubectl("patch", "experiment", "demo", "--type=merge", "-p",
                          '{"spec": {"parallelism": 3, "maxTrials": 9}}')
        wait_for(lambda: len(kubelet.holding()) == 3, what="three trials running at once")
        final = release_until_ended(namespace, kubelet)
        edited = wait_for(lambda: [e for e in namespace.events() if e.get("reason") == "Edited"],
                          what="the Event of the edit")
    assert final["phase"] == "Succeeded"
    assert set(edited[0]["message"].split("; ")) == {"parallelism 1 -> 3", "maxTrials 3 -> 9"}
    assert edited[0]["involvedObject"]["name"] == "demo"
    assert final["trials"]["succeeded"] == 9 and len(namespace.trials()) == 9
    assert kubelet.max_unfinished["demo"] == 3


def test_a_failed_attempt_is_retried_in_a_new_pod(namespace):
    behaviour = lambda pod: Behaviour(exit_code=1 if "-r" not in pod["metadata"]["name"] else 0)  # noqa: E731
    with namespace.kubelet(behaviour=behaviour), run_operator(namespace):
        namespace.apply(experiment(maxTrials=3, template={"retries": 1, "retain": "all"}))
        final = succeeded(namespace)
        said = wait_for(lambda: events_by_reason(namespace, "MaxTrialsReached"), what="the Event of the end")
    trials = namespace.trials()
    assert all(t["status"]["phase"] == "Succeeded" and t["status"]["attempts"] == 2 for t in trials)
    assert sorted(p["metadata"]["name"] for p in namespace.pods()) == sorted(
        [f"demo-{i}" for i in range(3)] + [f"demo-{i}-r2" for i in range(3)])
    assert final["trials"]["failed"] == 0
    retried = [e for e in namespace.events() if e["reason"] == "TrialRetried"]
    assert sorted(e["message"].split(":")[0] for e in retried) == [f"trial demo-{i}" for i in range(3)]
    assert all("attempt 1 failed" in e["message"] and e["type"] == "Normal" for e in retried)
    assert "TrialFailed" not in said


def test_by_default_only_the_pods_of_failed_trials_are_kept_once_their_results_are_recorded(namespace):
    behaviour = lambda pod: Behaviour(exit_code=1, report="log") if pod["metadata"]["name"] == "demo-2" \
        else Behaviour()  # noqa: E731
    with namespace.kubelet(behaviour=behaviour), run_operator(namespace) as operator:
        namespace.apply(experiment(maxTrials=5, parallelism=2))
        final = succeeded(namespace)
        pods = wait_for(lambda: [p["metadata"]["name"] for p in namespace.pods()] == ["demo-2"] and ["demo-2"],
                        what="only the failed trial's pod to be left")
        log = namespace.kubectl("logs", "demo-2")  # kept for debugging
    trials = by_name(namespace.trials())
    assert pods == ["demo-2"] and "epoch" in log
    assert final["trials"]["succeeded"] == 4 and final["trials"]["failed"] == 1
    assert trials["demo-2"]["status"]["phase"] == "Failed" and trials["demo-2"]["status"]["attempts"] == 1
    assert all(t["status"]["value"] is not None for n, t in trials.items() if n != "demo-2")  # read before
    assert "Traceback" not in operator.log()


def test_more_failures_than_max_failed_trials_fail_the_experiment(namespace):
    with namespace.kubelet(behaviour=lambda pod: Behaviour(exit_code=3, message="boom")), \
            run_operator(namespace):
        namespace.apply(experiment(maxTrials=10, maxFailedTrials=2))
        final = ended(namespace, "demo")
        said = wait_for(lambda: events_by_reason(namespace, "MaxFailedTrialsReached"), what="the Event of the end")
    assert final["phase"] == "Failed" and final["reason"] == "MaxFailedTrialsReached"
    failed = [t for t in namespace.trials() if t["status"]["phase"] == "Failed"]
    # the third failure ends it; a trial of the other slot that failed in the same pass keeps its result
    parallelism = experiment()["spec"]["parallelism"]
    assert 3 <= len(failed) <= 2 + parallelism and final["trials"]["failed"] == len(failed)
    assert all("exited with status 3" in t["status"]["message"] for t in failed)
    trial_failures = [e for e in namespace.events() if e["reason"] == "TrialFailed"]
    assert sorted(e["message"].split()[1] for e in trial_failures) == sorted(t["metadata"]["name"] for t in failed)
    assert all(e["type"] == "Warning" and "exited with status 3" in e["message"] for e in trial_failures)
    assert said["MaxFailedTrialsReached"]["type"] == "Warning"


def test_reaching_the_target_ends_the_experiment_and_stops_running_trials(namespace):
    # trial 0 runs long; the others are quick, and the target is easy to reach
    behaviour = lambda pod: Behaviour(seconds=60 if pod["metadata"]["name"] == "demo-0" else 0.2)  # noqa: E731
    document = experiment(maxTrials=50, parallelism=3)
    document["spec"]["objective"]["target"] = 30.0
    with namespace.kubelet(behaviour=behaviour), run_operator(namespace):
        namespace.apply(document)
        final = succeeded(namespace)
    assert final["reason"] == "TargetReached" and final["best"]["value"] <= 30
    trials = by_name(namespace.trials())
    assert trials["demo-0"]["status"]["phase"] == "Killed"
    wait_for(lambda: "demo-0" not in by_name(namespace.pods()), what="the killed trial's pod to go")


def test_evicted_oom_killed_and_timed_out_attempts_are_failures_that_retry(namespace):
    first = {"demo-0": Behaviour(evict=True), "demo-1": Behaviour(oom=True), "demo-2": Behaviour(seconds=30)}
    behaviour = lambda pod: first.get(pod["metadata"]["name"], Behaviour())  # noqa: E731
    document = experiment(maxTrials=3, parallelism=3, template={"retries": 1, "timeoutSeconds": 3, "retain": "all"})
    with namespace.kubelet(behaviour=behaviour), run_operator(namespace):
        namespace.apply(document)
        final = succeeded(namespace)
    trials = by_name(namespace.trials())
    assert final["trials"]["succeeded"] == 3
    assert all(t["status"]["attempts"] == 2 and t["status"]["phase"] == "Succeeded" for t in trials.values())
    messages = {name: trial["status"]["message"] for name, trial in trials.items()}
    assert messages["demo-0"].startswith("attempt 1 failed (Evicted: The node was low on resource: memory.")
    assert messages["demo-1"].startswith("attempt 1 failed (exited with status 137 (OOMKilled)")
    assert messages["demo-2"].startswith("attempt 1 failed (ran longer than timeoutSeconds)")
    assert all(message.endswith("; attempt 2 succeeded") for message in messages.values())
    pods = by_name(namespace.pods())
    assert pods["demo-0"]["status"]["reason"] == "Evicted" and pods["demo-2"]["status"]["reason"] == "DeadlineExceeded"


def test_a_trial_whose_node_disappears_is_retried_on_another(namespace):
    nodes = [FakeNode("node-1"), FakeNode("node-2")]
    behaviour = lambda pod: Behaviour(seconds=0.5, lose_node=pod["metadata"]["name"] == "demo-0")  # noqa: E731
    with namespace.kubelet(nodes, behaviour=behaviour) as kubelet, run_operator(namespace):
        namespace.apply(experiment(maxTrials=1, parallelism=1, template={"retries": 1, "retain": "all"}))
        final = succeeded(namespace)
    (trial,) = namespace.trials()
    assert final["trials"]["succeeded"] == 1 and trial["status"]["attempts"] == 2
    assert trial["status"]["message"] == ("attempt 1 failed (DeletionByPodGC: PodGC: node no longer exists); "
                                          "attempt 2 succeeded")
    pods = by_name(namespace.pods())  # the lost node's pod went with it, as the pod garbage collector does
    assert list(pods) == ["demo-0-r2"] and len(kubelet.lost) == 1
    assert pods["demo-0-r2"]["spec"]["nodeName"] not in kubelet.lost


def test_operator_killed_at_random_moments_loses_and_duplicates_nothing(namespace):
    """The operator is SIGKILLed again and again at random points of the experiment's progress: in its start-up,
    before it has seen trials end, while it records them and creates their successors, after. Trials end only
    when the test releases them, one or two a round, and every round ends with a kill, so the experiment's 30
    trials take at least 15 kills however fast the machine is."""
    rng = random.Random(7)
    document = experiment(maxTrials=30, parallelism=4, algorithm={"name": "gp", "settings": {"initialTrials": 4}},
                          template={"retain": "all"})
    operator = run_operator(namespace)
    kills = released = 0
    with namespace.kubelet(behaviour=lambda pod: Behaviour(held=True)) as kubelet:
        namespace.apply(document)
        try:
            for _round in range(100):
                operator.start()
                if rng.random() < 0.25:  # in its start-up (about a second) or its first pass
                    time.sleep(rng.uniform(0.0, 1.0))
                else:
                    held = wait_for(lambda: kubelet.holding() or namespace.phase("demo") == "Succeeded",
                                    timeout=120, what="a running trial (or the experiment's end)")
                    if held is True:
                        break
                    ending = rng.sample(held, min(len(held), rng.randint(1, 2)))
                    kubelet.release(ending)
                    released += len(ending)
                    time.sleep(rng.uniform(0.0, 1.5))  # before, while or after the operator acts on their ends
                if namespace.phase("demo") == "Succeeded":
                    break
                operator.kill()
                kills += 1
            if not operator.alive():
                operator.start()
            final = succeeded(namespace, timeout=120)
        finally:
            operator.stop()
    assert released == 30 and kills >= 15  # at most two trials end a round, and the rounds end with a kill
    trials = by_name(namespace.trials())
    assert sorted(trials) == sorted(f"demo-{i}" for i in range(30))
    assert len({json.dumps(t["spec"]["params"], sort_keys=True) for t in trials.values()}) == 30
    pods = by_name(namespace.pods())
    for name, trial in trials.items():
        assert trial["status"]["phase"] == "Succeeded", (name, trial["status"])
        assert trial["status"]["value"] == pytest.approx(objective(pods[name]))
    assert final["trials"]["created"] == 30 and final["trials"]["succeeded"] == 30
    assert kubelet.max_unfinished["demo"] <= 4
    assert all(not name.endswith("-r2") for name in pods)  # no attempt ran twice


def test_two_replicas_only_the_lease_holder_acts_and_the_standby_takes_over(namespace):
    from operator_cluster import operator_identity

    kubeconfig = operator_identity(namespace, leader_election=True)
    election = ("--leader-election", "--lease-namespace", namespace.name, "--lease-duration", "3")
    first = Operator(namespace, kubeconfig, [namespace.name], (*election, "--identity", "first"), name="first")
    second = Operator(namespace, kubeconfig, [namespace.name], (*election, "--identity", "second"), name="second")

    def holder() -> str | None:
        leases = [lease for lease in namespace.get("leases") if lease["metadata"]["name"] == "kubetune-operator"]
        return leases[0]["spec"].get("holderIdentity") if leases else None

    with first, namespace.kubelet(behaviour=lambda pod: Behaviour(seconds=0.3)):
        wait_for(lambda: holder() == "first", what="the first replica to lead")
        second.start()
        wait_for(lambda: "standing by: Lease" in second.log(), what="the second replica to stand by")
        namespace.apply(experiment(maxTrials=10, parallelism=2, algorithm={"name": "gp"}))
        wait_for(lambda: sum(t.get("status", {}).get("phase") == "Succeeded" for t in namespace.trials()) >= 3,
                 what="three trials")
        assert "following it" not in second.log()
        first.kill()  # no chance to release the Lease: the standby waits for it to expire
        final = succeeded(namespace, timeout=90)
        assert holder() == "second" and "leading" in second.log() and "following it" in second.log()
        second.stop()
    trials = namespace.trials()
    assert sorted(t["metadata"]["name"] for t in trials) == sorted(f"demo-{i}" for i in range(10))
    assert final["trials"]["created"] == 10


def test_the_charts_user_roles_let_view_read_and_edit_create_experiments(namespace):
    """The chart's ClusterRoles, aggregated by kube-controller-manager into the built-in view and edit roles,
    as a user bound to either in one namespace sees them."""
    from cluster.identity import CHART, tool

    release = f"r{namespace.name[-5:]}"  # ClusterRoles are cluster-wide: one release name per test
    rendered = subprocess.run([tool("helm"), "template", release, str(CHART), "--show-only",
                               "templates/userroles.yaml"], capture_output=True, text=True, check=True).stdout
    namespace.kubectl("apply", "-f", "-", stdin=rendered, namespaced=False)
    try:
        for user, role in (("viewer", "view"), ("editor", "edit")):
            namespace.kubectl("create", "serviceaccount", user)
            namespace.kubectl("create", "rolebinding", user, f"--clusterrole={role}",
                              f"--serviceaccount={namespace.name}:{user}")

        def may(user: str, verb: str, resource: str) -> bool:
            answer = namespace.kubectl("auth", "can-i", verb, f"{resource}.kubetune.io", "--as",
                                       f"system:serviceaccount:{namespace.name}:{user}", check=False)
            return answer.strip().splitlines()[0] == "yes"

        wait_for(lambda: may("editor", "create", "experiments") and may("viewer", "list", "trials"),
                 what="the roles to be aggregated")
        assert may("viewer", "get", "experiments") and not may("viewer", "create", "experiments")
        assert may("editor", "delete", "experiments") and not may("editor", "create", "trials")
        as_editor = ("--as", f"system:serviceaccount:{namespace.name}:editor")
        namespace.kubectl("apply", "-f", "-", *as_editor, stdin=yaml.safe_dump(experiment(name="by-editor")))
        refused = namespace.kubectl("apply", "-f", "-", "--as", f"system:serviceaccount:{namespace.name}:viewer",
                                    stdin=yaml.safe_dump(experiment(name="by-viewer")), check=False)
        assert "forbidden" in refused and [e["metadata"]["name"] for e in namespace.get("experiments")] == ["by-editor"]
    finally:
        namespace.kubectl("delete", "-f", "-", stdin=rendered, namespaced=False, check=False)


def test_deleting_an_experiment_removes_its_trials_and_pods(namespace):
    with namespace.kubelet(behaviour=lambda pod: Behaviour(seconds=30)), run_operator(namespace):
        namespace.apply(experiment(maxTrials=4, parallelism=2))
        wait_for(lambda: len(namespace.pods()) == 2, what="two pods")
        namespace.kubectl("delete", "experiment", "demo", "--wait=false")
        wait_for(lambda: namespace.trials() == [] and namespace.pods() == [], timeout=60,
                 what="the garbage collector to remove the trials and pods")
    assert namespace.get("experiments") == []


def test_operator_command_line_refuses_to_run_without_a_scope():
    result = subprocess.run([sys.executable, "-m", "kubetune.cli", "operator"], capture_output=True, text=True,
                            env={**os.environ})
    assert result.returncode == 2 and "--namespace" in result.stderr
