"""Trials whose pods wait for the scheduler, against the in-memory cluster: a Pending Trial shows the scheduler's
reason and message (written once per change, cleared once its pod runs), and the Experiment's message says how
many wait and why."""

from __future__ import annotations

from typing import Any

from fake_cluster import FakeCluster, FakeKubelet
from test_reconcile import drive, experiment_document, run

from kubetune.core.cluster.gpu_sharing import GpuSharing
from kubetune.core.cluster.outcome import waiting
from kubetune.operator.reconcile import Reconciler

NO_GPU = ("0/1 nodes are available: 1 Insufficient nvidia.com/gpu. preemption: 0/1 nodes are available: "
          "1 No preemption victims found for incoming pod.")


def unschedulable(message: str = NO_GPU) -> dict[str, Any]:
    return {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
         "lastTransitionTime": "2026-12-07T04:00:00Z"}]}


def trial_statuses(cluster: FakeCluster) -> dict[str, dict[str, Any]]:
    return {t["metadata"]["name"]: t.get("status") or {} for t in cluster.of_kind("trials")}


def test_waiting_is_the_pod_scheduled_condition_of_a_pod_not_yet_started():
    assert waiting({"status": unschedulable()}) == ("Unschedulable", NO_GPU)
    assert waiting({"status": {"phase": "Pending"}}) is None
    assert waiting({"status": {**unschedulable(), "phase": "Running"}}) is None
    scheduled = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}
    assert waiting({"status": scheduled}) is None


def test_trials_waiting_for_the_scheduler_show_why_and_the_experiment_says_how_many():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=4, parallelism=2))
    reconciler = Reconciler(cluster, GpuSharing())
    run(reconciler.reconcile(cluster.experiment("demo")))
    for pod in cluster.of_kind("pods"):
        pod["status"] = unschedulable()
    result = run(reconciler.reconcile(cluster.experiment("demo")))
    for status in trial_statuses(cluster).values():
        assert (status["phase"], status["reason"], status["message"]) == ("Pending", "Unschedulable", NO_GPU)
    assert result.status["message"] == f"2 trials running; 2 wait to be scheduled (Unschedulable: {NO_GPU})"
    assert result.status["conditions"][0]["message"] == result.status["message"]
    written = cluster.writes["status trials"]
    run(reconciler.reconcile(cluster.experiment("demo")))
    assert cluster.writes["status trials"] == written  # nothing changed: nothing written
    pod = cluster.objects[("pods", "default", "demo-0")]
    pod["status"] = unschedulable("0/2 nodes are available: 2 Insufficient nvidia.com/gpu.")
    run(reconciler.reconcile(cluster.experiment("demo")))
    assert trial_statuses(cluster)["demo-0"]["message"] == "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."
    assert cluster.writes["status trials"] == written + 1  # only the trial whose pod's message changed
    FakeKubelet(cluster).step(finish=0)  # scheduled at last: both run
    result = run(reconciler.reconcile(cluster.experiment("demo")))
    for status in trial_statuses(cluster).values():
        assert status["phase"] == "Running" and "reason" not in status and "message" not in status
    assert result.status["message"] == "2 trials running"
    result = run(drive(reconciler, cluster, FakeKubelet(cluster)))
    assert result.status["phase"] == "Succeeded"


def test_a_scheduled_pod_still_starting_clears_the_reason():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=2, parallelism=1))
    reconciler = Reconciler(cluster, GpuSharing())
    run(reconciler.reconcile(cluster.experiment("demo")))
    pod = cluster.objects[("pods", "default", "demo-0")]
    pod["status"] = unschedulable()
    run(reconciler.reconcile(cluster.experiment("demo")))
    assert trial_statuses(cluster)["demo-0"]["reason"] == "Unschedulable"
    pod["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}
    result = run(reconciler.reconcile(cluster.experiment("demo")))
    status = trial_statuses(cluster)["demo-0"]
    assert status["phase"] == "Pending" and "reason" not in status and "message" not in status
    assert result.status["message"] == "1 trials running"
