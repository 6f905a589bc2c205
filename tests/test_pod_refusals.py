"""Trial pods the API server refuses, against the in-memory cluster: a template it finds invalid (asked in a dry
run of the first pod before any trial is created) ends the experiment Failed / InvalidSpec with its message; a
refusal for another reason (a quota, an admission policy or webhook) holds the experiment with the reason
PodRefused and an Event, creates no trial while it lasts, loses or duplicates none, and lifts once the API
server admits a pod again."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

import pytest
from fake_cluster import FakeCluster, FakeKubelet
from test_reconcile import drive, experiment_document, run

from kubetune.core.cluster.gpu_sharing import GpuSharing
from kubetune.operator import api as api_module
from kubetune.operator.api import ApiError, Forbidden, Invalid, Refused
from kubetune.operator.events import EventRecorder
from kubetune.operator.handlers import _report_failure
from kubetune.operator.reconcile import Reconciler

INVALID = 'Pod "demo-0" is invalid: spec.containers[0].volumeMounts[0].name: Not found: "data"'
QUOTA = ('pods "demo-0" is forbidden: exceeded quota: trials, requested: pods=1, used: pods=0, '
         'limited: pods=0')


def setup(**spec: Any) -> tuple[FakeCluster, Reconciler]:
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(**spec))
    return cluster, Reconciler(cluster, GpuSharing(), events=EventRecorder(cluster, instance="test"))


def warnings(cluster: FakeCluster) -> list[tuple[str, int, str]]:
    return [(e["reason"], e["count"], e["message"]) for e in cluster.of_kind("events") if e["type"] == "Warning"]


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_a_template_the_api_server_finds_invalid_ends_the_experiment_at_the_first_pass_without_a_trial():
    cluster, reconciler = setup()
    cluster.refusal = lambda pod, dry_run: Invalid(INVALID)
    result = run(reconciler.reconcile(cluster.experiment("demo")))
    status = cluster.experiment("demo")["status"]
    assert result.done and status["phase"] == "Failed" and status["reason"] == "InvalidSpec"
    assert status["message"] == f"trialTemplate.spec: the API server refused the trial pod: {INVALID}"
    assert conditions(status)["Failed"] == ("True", "InvalidSpec")
    assert cluster.of_kind("trials") == [] and cluster.of_kind("pods") == []
    assert warnings(cluster) == [("InvalidSpec", 1, status["message"])]


def test_the_dry_run_asks_for_the_first_trials_pod_once_per_template():
    cluster, reconciler = setup(maxTrials=6, parallelism=2)
    asked: list[tuple[str, bool]] = []
    cluster.refusal = lambda pod, dry_run: asked.append((pod["metadata"]["name"], dry_run)) or None
    result = run(drive(reconciler, cluster, FakeKubelet(cluster)))
    assert result.status["phase"] == "Succeeded"
    assert [name for name, dry_run in asked if dry_run] == ["demo-0"]  # once, before the first trial
    assert asked[0] == ("demo-0", True) and cluster.dry_runs == 1
    cluster.objects[("experiments", "default", "demo")]["spec"]["trialTemplate"]["retries"] = 1
    cluster.objects[("experiments", "default", "demo")]["spec"]["maxTrials"] = 8
    cluster.objects[("experiments", "default", "demo")].pop("status")
    run(drive(reconciler, cluster, FakeKubelet(cluster)))
    assert [name for name, dry_run in asked if dry_run] == ["demo-0", "demo-0"]  # the edited spec asked again


def test_a_quota_refusal_holds_the_experiment_without_trials_until_the_quota_is_raised():
    cluster, reconciler = setup(maxTrials=5, parallelism=3)
    minutes = itertools.count()
    reconciler.clock = lambda: datetime(2026, 12, 7, 4, 0, tzinfo=UTC) + timedelta(minutes=next(minutes))
    refusing = [True]
    cluster.refusal = lambda pod, dry_run: Refused(QUOTA) if refusing[0] else None
    for _ in range(3):
        result = run(reconciler.reconcile(cluster.experiment("demo")))
        status = cluster.experiment("demo")["status"]
        assert result.held and not result.done
        assert status["phase"] == "Running" and status["reason"] == "PodRefused" and QUOTA in status["message"]
        assert conditions(status)["Running"] == ("False", "PodRefused")
        assert cluster.of_kind("trials") == [] and cluster.of_kind("pods") == []
    assert warnings(cluster) == [("PodRefused", 3, status["message"])]  # one Event, counted at each pass
    assert cluster.writes["status experiments"] == 1  # a hold that lasts is written once
    assert not [e for e in cluster.of_kind("events") if e["reason"] == "Started"]
    refusing[0] = False
    result = run(reconciler.reconcile(cluster.experiment("demo")))
    assert not result.held and result.status["reason"] == "TrialsRunning" and len(cluster.of_kind("pods")) == 3
    assert conditions(cluster.experiment("demo")["status"])["Running"] == ("True", "TrialsRunning")
    result = run(drive(reconciler, cluster, FakeKubelet(cluster)))
    assert result.status["phase"] == "Succeeded" and len(cluster.of_kind("trials")) == 5


def test_pods_refused_at_creation_hold_the_experiment_and_their_trials_get_them_once_admitted():
    """A quota of one pod: the dry run is admitted, the first pod created, the next two refused. Their Trials
    wait without a pod (not failed, not duplicated) and get one each as the quota allows."""
    cluster, reconciler = setup(maxTrials=6, parallelism=3, template={"retain": "all"})
    quota = [1]

    def refusal(pod: dict[str, Any], dry_run: bool) -> Refused | None:
        return Refused(QUOTA) if len(cluster.active_pods()) >= quota[0] else None

    cluster.refusal = refusal
    kubelet = FakeKubelet(cluster)
    result = run(reconciler.reconcile(cluster.experiment("demo")))
    assert result.held and result.status["reason"] == "PodRefused"
    assert len(cluster.of_kind("trials")) == 3
    assert [p["metadata"]["name"] for p in cluster.of_kind("pods")] == ["demo-0"]
    kubelet.step(finish=0)
    result = run(reconciler.reconcile(cluster.experiment("demo")))
    assert result.held and len(cluster.of_kind("trials")) == 3  # no new trial while held
    kubelet.step(finish=1)  # demo-0 ends: the quota allows one more pod
    result = run(reconciler.reconcile(cluster.experiment("demo")))
    assert len(cluster.of_kind("trials")) == 3 and len(cluster.active_pods()) == 1
    quota[0] = 3
    result = run(drive(reconciler, cluster, kubelet))
    trials = cluster.of_kind("trials")
    assert result.status["phase"] == "Succeeded" and sorted(t["metadata"]["name"] for t in trials) == [
        f"demo-{i}" for i in range(6)]
    assert all(t["status"]["phase"] == "Succeeded" and t["status"]["attempts"] == 1 for t in trials)
    assert sorted(p["metadata"]["name"] for p in cluster.of_kind("pods")) == [f"demo-{i}" for i in range(6)]
    lifted = [e for e in cluster.of_kind("events") if e["reason"] == "HoldLifted"]
    assert lifted and lifted[0]["type"] == "Normal" and lifted[0]["message"].startswith("PodRefused no longer holds")


def test_a_refusal_that_fails_a_pass_is_shown_as_pod_refused_in_one_line():
    cluster, reconciler = setup()
    logger = MagicMock()
    state = SimpleNamespace(reconciler=reconciler)
    run(_report_failure(state, cluster.experiment("demo"), SimpleNamespace(name="demo"), Refused(QUOTA), 10.0,
                        logger))
    status = cluster.experiment("demo")["status"]
    assert status["reason"] == "PodRefused" and status["message"] == QUOTA
    assert logger.warning.called and not logger.exception.called and not logger.error.called


RBAC = ('pods is forbidden: User "system:serviceaccount:kubetune:kubetune" cannot create resource "pods" in API '
        'group "" in the namespace "team-a"')
WEBHOOK = 'admission webhook "images.example.com" denied the request: images from docker.io are not allowed'


@pytest.mark.parametrize(("code", "message", "kind"), [
    (403, RBAC, Forbidden), (403, QUOTA, Refused), (403, WEBHOOK, Refused), (400, WEBHOOK, Refused),
    (422, INVALID, Invalid), (400, "quantities must match the regular expression", Invalid)])
def test_what_the_api_server_refused_is_told_apart(code: int, message: str, kind: type[ApiError]):
    """RBAC's refusal (the operator lacks a permission), an admission check's (a quota, a webhook: the cluster's
    rule, perhaps for now) and the API server's validation (the pod can never be created)."""
    error = api_module._error(code, "Forbidden", json.dumps({"kind": "Status", "message": message}))
    assert type(error) is kind and str(error) == message and error.status == code
