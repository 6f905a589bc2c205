"""What the API server and the scheduler say about trial pods, on a real control plane: a template the API server
refuses (asked in a dry run before any trial exists) ends the experiment Failed / InvalidSpec with its message;
a ResourceQuota that refuses trial pods holds the experiment (PodRefused, a Warning Event, no trial) until it is
raised; trials whose pods cannot be scheduled show Pending from creation and then the scheduler's reason."""

from __future__ import annotations

from cluster import Behaviour, FakeNode
from operator_cluster import experiment, run_operator, succeeded, wait_for

from kubetune.core.manifest import load_experiment


def warnings_of(namespace, reason: str) -> list[dict]:
    return [e for e in namespace.events() if e.get("reason") == reason and e["type"] == "Warning"]


def test_a_template_only_the_api_server_refuses_ends_failed_at_once_with_its_message(namespace):
    document = experiment(name="nomount")
    document["spec"]["trialTemplate"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "data", "mountPath": "/data"}]  # no such volume: the PodSpec's schema cannot tell
    load_experiment(document)  # the manifest and its PodSpec schema accept it
    with run_operator(namespace) as operator:
        namespace.apply(document)
        namespace.kubectl("wait", "--for=condition=Failed", "experiment/nomount", "--timeout=90s")
        events = wait_for(lambda: warnings_of(namespace, "InvalidSpec"), what="the InvalidSpec Event")
    final = namespace.status("nomount")
    assert final["phase"] == "Failed" and final["reason"] == "InvalidSpec"
    assert final["message"].startswith('trialTemplate.spec: the API server refused the trial pod: Pod "nomount-0" '
                                       "is invalid: ")
    assert 'spec.containers[0].volumeMounts[0].name: Not found: "data"' in final["message"]
    assert events[0]["message"] == final["message"] and events[0]["reportingComponent"] == "kubetune-operator"
    assert namespace.trials() == [] and namespace.pods() == []
    assert "Traceback" not in operator.log()


def test_a_quota_that_refuses_trial_pods_holds_the_experiment_until_it_is_raised(namespace):
    namespace.apply({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "trials"},
                     "spec": {"hard": {"pods": "0"}}})
    wait_for(lambda: (namespace.get("resourcequota", "trials").get("status") or {}).get("hard"),
             what="the quota controller to fill in the quota's status")
    with namespace.kubelet(behaviour=lambda pod: Behaviour(seconds=0.2)), run_operator(namespace) as operator:
        namespace.apply(experiment(maxTrials=4, parallelism=2))
        held = wait_for(lambda: (s := namespace.status("demo")).get("reason") == "PodRefused" and s, timeout=90,
                        what="the experiment held")
        events = wait_for(lambda: warnings_of(namespace, "PodRefused"), what="the PodRefused Event")
        trials_while_held = namespace.trials()
        namespace.kubectl("patch", "resourcequota", "trials", "--type=merge", "-p", '{"spec":{"hard":{"pods":"10"}}}')
        final = succeeded(namespace, timeout=180)
    assert held["phase"] == "Running" and "exceeded quota: trials" in held["message"]
    assert {c["type"]: (c["status"], c["reason"]) for c in held["conditions"]}["Running"] == ("False", "PodRefused")
    assert "exceeded quota: trials" in events[0]["message"] and events[0]["reportingComponent"] == "kubetune-operator"
    assert trials_while_held == []
    assert final["trials"]["succeeded"] == 4 and len(namespace.trials()) == 4
    assert "Traceback" not in operator.log()


def test_trials_waiting_for_a_gpu_are_pending_from_creation_and_say_why(namespace):
    document = experiment(maxTrials=2, parallelism=2, template={"resources": {"gpu": 1}})
    with namespace.kubelet([FakeNode("node-1")]), run_operator(namespace) as operator:
        namespace.apply(document)
        first_seen = wait_for(lambda: namespace.trials(), what="the trials")
        waiting = wait_for(lambda: len(found := [t for t in namespace.trials()
                                                 if (t.get("status") or {}).get("reason") == "Unschedulable"]) == 2
                           and found, timeout=90, what="both trials to say why they wait")
        status = wait_for(lambda: "wait to be scheduled" in (s := namespace.status("demo")).get("message", "") and s,
                          timeout=60, what="the experiment to say that its trials wait")
        table = namespace.kubectl("get", "trials", "-o", "wide")
    assert all(trial["status"]["phase"] == "Pending" for trial in first_seen)  # a phase from creation
    for trial in waiting:
        assert trial["status"]["phase"] == "Pending" and "Insufficient nvidia.com/gpu" in trial["status"]["message"]
    assert status["phase"] == "Running"
    assert "; 2 wait to be scheduled (Unschedulable: " in status["message"]
    assert "Insufficient nvidia.com/gpu" in status["message"]
    assert "Unschedulable" in table and "Insufficient nvidia.com/gpu" in table
    assert "Traceback" not in operator.log()
