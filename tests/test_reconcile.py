"""The operator's reconciliation pass against an in-memory cluster and a test kubelet."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from unittest.mock import MagicMock

import pytest
from fake_cluster import FakeCluster, FakeKubelet

from conftest import manifest
from kubetune.core.cluster.gpu_sharing import GpuSharing
from kubetune.operator import reconcile as reconcile_module
from kubetune.operator.handlers import _report_failure
from kubetune.operator.reconcile import Reconciler, TrialsDoNotFit


def experiment_document(**spec):
    document = manifest(**{"maxTrials": 8, "parallelism": 3, "algorithm": {"name": "random"}, **spec})
    document["spec"]["trialTemplate"]["spec"]["containers"][0]["image"] = "python:3.12-slim"
    return document


async def drive(reconciler, cluster, kubelet, name="demo", passes=200, finish=1):
    result = None
    for _ in range(passes):
        result = await reconciler.reconcile(cluster.experiment(name))
        assert len(cluster.active_pods()) <= cluster.experiment(name)["spec"]["parallelism"]
        if result.done:
            return result
        kubelet.step(finish=finish)
    raise AssertionError(f"not done after {passes} passes: {result}")


def run(coroutine):
    return asyncio.run(coroutine)


def test_runs_to_succeeded_with_exactly_max_trials():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document())
    reconciler = Reconciler(cluster, GpuSharing())
    result = run(drive(reconciler, cluster, FakeKubelet(cluster)))
    trials = cluster.of_kind("trials")
    assert result.status["phase"] == "Succeeded" and result.status["reason"] == "MaxTrialsReached"
    assert sorted(t["metadata"]["name"] for t in trials) == sorted(f"demo-{i}" for i in range(8))
    assert all(t["status"]["phase"] == "Succeeded" for t in trials)
    assert cluster.max_active_pods == 3
    best = min(trials, key=lambda t: t["status"]["value"])
    assert result.status["best"]["trial"] == best["metadata"]["name"]
    assert result.status["best"]["value"] == pytest.approx((best["spec"]["params"]["x"] - 2) ** 2)
    assert result.status["trials"]["succeeded"] == 8 and result.status["trials"]["created"] == 8
    assert cluster.experiment("demo")["status"]["phase"] == "Succeeded"


def test_each_freed_slot_is_refilled_at_once():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=10))
    reconciler = Reconciler(cluster, GpuSharing())
    kubelet = FakeKubelet(cluster)
    run(reconciler.reconcile(cluster.experiment("demo")))
    assert len(cluster.of_kind("pods")) == 3
    kubelet.step(finish=0)  # all running
    kubelet.step(finish=1)  # one ends
    run(reconciler.reconcile(cluster.experiment("demo")))
    assert len(cluster.of_kind("trials")) == 4 and len(cluster.active_pods()) == 3


def trial_phases(cluster) -> list[str]:
    return sorted((t.get("status") or {}).get("phase", "Pending") for t in cluster.of_kind("trials"))


def test_marking_trials_running_is_bounded_per_pass_and_never_delays_a_refill(monkeypatch):
    monkeypatch.setattr(reconcile_module, "RUNNING_UPDATES_PER_PASS", 2)
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=20, parallelism=6))
    reconciler = Reconciler(cluster, GpuSharing())
    kubelet = FakeKubelet(cluster)
    run(reconciler.reconcile(cluster.experiment("demo")))
    kubelet.step(finish=0)  # all six pods running
    kubelet.step(finish=1)  # and one of them already ended
    result = run(reconciler.reconcile(cluster.experiment("demo")))
    phases = trial_phases(cluster)
    assert len(cluster.of_kind("trials")) == 7  # the freed slot was refilled
    assert phases.count("Running") == 2 and phases.count("Succeeded") == 1
    assert result.status["trials"]["running"] == 5  # counted from the pods, not from the lagging marks
    run(reconciler.reconcile(cluster.experiment("demo")))
    run(reconciler.reconcile(cluster.experiment("demo")))
    assert trial_phases(cluster).count("Running") == 5


@pytest.mark.parametrize(("retain", "most"), [("all", 4), ("failed", 5)])
def test_writes_per_trial_stay_small(retain, most):
    """A Trial, its Pod, its Running mark and its result; and its pod's deletion when it is not retained."""
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=12, parallelism=4, template={"retain": retain}))
    run(drive(Reconciler(cluster, GpuSharing()), cluster, FakeKubelet(cluster)))
    per_trial = sum(v for k, v in cluster.writes.items() if "experiments" not in k) / 12
    assert per_trial <= most
    assert cluster.writes["status experiments"] < 12 * 2


def test_invalid_spec_fails_with_a_clear_message():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(parallelism=0))
    result = run(Reconciler(cluster, GpuSharing()).reconcile(cluster.experiment("demo")))
    status = cluster.experiment("demo")["status"]
    assert result.done and status["phase"] == "Failed" and status["reason"] == "InvalidSpec"
    assert "spec.parallelism" in status["message"]
    assert status["conditions"][0]["reason"] == "InvalidSpec"
    assert cluster.of_kind("trials") == []


def test_gpu_request_a_mode_cannot_express_is_invalid():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(template={"resources": {"gpu": 2}}))
    run(Reconciler(cluster, GpuSharing("timeslicing")).reconcile(cluster.experiment("demo")))
    status = cluster.experiment("demo")["status"]
    assert status["reason"] == "InvalidSpec" and status["message"].startswith("timeslicing:")


def test_restart_mid_experiment_creates_no_duplicates_and_loses_nothing():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=9, parallelism=3, algorithm={"name": "gp"}))
    kubelet = FakeKubelet(cluster)
    first = Reconciler(cluster, GpuSharing())
    for _ in range(4):
        run(first.reconcile(cluster.experiment("demo")))
        kubelet.step(finish=1)
    finished = {t["metadata"]["name"]: t["status"]["value"] for t in cluster.of_kind("trials")
                if t.get("status", {}).get("phase") == "Succeeded"}
    assert finished
    second = Reconciler(cluster, GpuSharing())  # a new operator process: nothing in memory
    result = run(drive(second, cluster, kubelet))
    trials = cluster.of_kind("trials")
    assert result.status["phase"] == "Succeeded" and len(trials) == 9
    assert len({t["metadata"]["name"] for t in trials}) == 9
    values = {t["metadata"]["name"]: t["status"]["value"] for t in trials}
    assert all(values[name] == value for name, value in finished.items())
    params = [tuple(sorted(t["spec"]["params"].items())) for t in trials]
    assert len(set(params)) == 9


def test_a_pass_cut_short_between_trial_and_pod_is_completed():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=3, parallelism=3, template={"retain": "all"}))
    original = cluster.create
    calls = {"pods": 0}

    async def flaky(kind, namespace, body, dry_run=False):
        if kind == "pods" and not dry_run:
            calls["pods"] += 1
            if calls["pods"] == 2:
                raise RuntimeError("operator killed")
        return await original(kind, namespace, body, dry_run=dry_run)

    cluster.create = flaky
    with pytest.raises(RuntimeError):
        run(Reconciler(cluster, GpuSharing()).reconcile(cluster.experiment("demo")))
    cluster.create = original
    assert len(cluster.of_kind("pods")) < len(cluster.of_kind("trials")), "a trial was left without its pod"
    result = run(drive(Reconciler(cluster, GpuSharing()), cluster, FakeKubelet(cluster)))
    assert result.status["phase"] == "Succeeded"
    assert sorted(p["metadata"]["name"] for p in cluster.of_kind("pods")) == ["demo-0", "demo-1", "demo-2"]


def test_retries_start_new_pods_then_fail():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=2, parallelism=2, maxFailedTrials=5,
                                               template={"retries": 1}))
    result = run(drive(Reconciler(cluster, GpuSharing()), cluster, FakeKubelet(cluster, lambda p, pod: "fail")))
    pods = sorted(p["metadata"]["name"] for p in cluster.of_kind("pods"))
    assert pods == ["demo-0", "demo-0-r2", "demo-1", "demo-1-r2"]
    trials = cluster.of_kind("trials")
    assert all(t["status"]["phase"] == "Failed" and t["status"]["attempts"] == 2 for t in trials)
    assert trials[0]["status"]["message"].startswith("attempt 1 failed (exited with status 2")
    assert "; attempt 2 failed (exited with status 2" in trials[0]["status"]["message"]
    assert result.status["phase"] == "Failed" and result.status["reason"] == "NoSuccessfulTrial"


def test_eviction_is_retried():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=2, parallelism=2, template={"retries": 1}))
    seen = set()

    def evict_first(params, pod):
        if pod["metadata"]["name"] in seen or pod["metadata"]["name"].endswith("-r2"):
            return "sdk"
        seen.add(pod["metadata"]["name"])
        return "evict"

    result = run(drive(Reconciler(cluster, GpuSharing()), cluster, FakeKubelet(cluster, evict_first)))
    assert result.status["phase"] == "Succeeded"
    for trial in cluster.of_kind("trials"):
        assert trial["status"]["attempts"] == 2
        assert trial["status"]["message"] == ("attempt 1 failed (Evicted: The node was low on memory.); "
                                              "attempt 2 succeeded")


@pytest.mark.parametrize(("retain", "kept"), [("all", ["demo-0", "demo-1", "demo-2", "demo-3"]),
                                               ("failed", ["demo-1", "demo-3"]), ("none", [])])
def test_finished_pods_are_deleted_after_their_result_unless_retained(retain, kept):
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=4, parallelism=2, maxFailedTrials=5,
                                               template={"retain": retain}))
    endings = {"demo-0": "sdk", "demo-1": "fail", "demo-2": "log", "demo-3": "nometrics"}
    kubelet = FakeKubelet(cluster, lambda params, pod: endings[pod["metadata"]["name"]])
    result = run(drive(Reconciler(cluster, GpuSharing()), cluster, kubelet))
    assert sorted(p["metadata"]["name"] for p in cluster.of_kind("pods")) == kept
    assert trial_phases(cluster) == ["Failed", "MetricsUnavailable", "Succeeded", "Succeeded"]  # read before
    assert result.status["trials"]["succeeded"] == 2


def test_pods_left_by_an_operator_killed_between_a_result_and_the_deletion_are_deleted_by_its_successor():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=4, parallelism=2))
    original = cluster.delete

    async def killed(kind, namespace, name):
        raise RuntimeError("operator killed")

    cluster.delete = killed
    kubelet = FakeKubelet(cluster)
    reconciler = Reconciler(cluster, GpuSharing())
    run(reconciler.reconcile(cluster.experiment("demo")))
    kubelet.step()  # running
    kubelet.step()  # ended
    with pytest.raises(RuntimeError):
        run(reconciler.reconcile(cluster.experiment("demo")))
    ended = [t["metadata"]["name"] for t in cluster.of_kind("trials")
             if (t.get("status") or {}).get("phase") == "Succeeded"]
    assert ended and all(any(p["metadata"]["name"] == name for p in cluster.of_kind("pods")) for name in ended)
    cluster.delete = original
    run(drive(Reconciler(cluster, GpuSharing()), cluster, kubelet))
    assert cluster.of_kind("pods") == []


def test_metrics_from_the_log_and_missing_metrics():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=4, parallelism=2, maxFailedTrials=5))
    endings = iter(["log", "nometrics", "log", "nometrics"])
    run(drive(Reconciler(cluster, GpuSharing()), cluster, FakeKubelet(cluster, lambda p, pod: next(endings))))
    phases = trial_phases(cluster)
    assert phases == ["MetricsUnavailable", "MetricsUnavailable", "Succeeded", "Succeeded"]
    for trial in cluster.of_kind("trials"):
        if trial["status"]["phase"] == "Succeeded":
            assert trial["status"]["value"] == pytest.approx((trial["spec"]["params"]["x"] - 2) ** 2)


def test_target_stops_running_trials():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=50, parallelism=3,
                                               objective={"metric": "loss", "direction": "minimize", "target": 40}))
    result = run(drive(Reconciler(cluster, GpuSharing()), cluster, FakeKubelet(cluster)))
    assert result.status["reason"] == "TargetReached"
    assert cluster.active_pods() == []
    killed = [t for t in cluster.of_kind("trials") if t["status"]["phase"] == "Killed"]
    assert all(t["status"]["reason"] == "TargetReached" for t in killed)


def test_edits_and_suspend_take_effect():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=20, parallelism=2))
    reconciler = Reconciler(cluster, GpuSharing())
    kubelet = FakeKubelet(cluster)
    run(reconciler.reconcile(cluster.experiment("demo")))
    assert len(cluster.active_pods()) == 2
    cluster.objects[("experiments", "default", "demo")]["spec"]["parallelism"] = 4
    run(reconciler.reconcile(cluster.experiment("demo")))
    assert len(cluster.active_pods()) == 4
    cluster.objects[("experiments", "default", "demo")]["spec"]["suspend"] = True
    kubelet.step(finish=0)
    kubelet.step(finish=2)
    run(reconciler.reconcile(cluster.experiment("demo")))
    assert len(cluster.active_pods()) == 2 and len(cluster.of_kind("trials")) == 4
    cluster.objects[("experiments", "default", "demo")]["spec"].update(suspend=False, maxTrials=6)
    result = run(drive(reconciler, cluster, kubelet))
    assert result.status["phase"] == "Succeeded" and len(cluster.of_kind("trials")) == 6


def test_status_stays_small_with_many_trials():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=60, parallelism=20))
    result = run(drive(Reconciler(cluster, GpuSharing()), cluster, FakeKubelet(cluster), finish=None))
    assert len(json.dumps(result.status)) < 2000
    assert result.status["trials"]["succeeded"] == 60


class PodWatch:
    """The pod events a watch would deliver since the last call: the pods that ended or went."""

    def __init__(self, cluster):
        self.cluster, self.seen = cluster, set()

    def ended(self) -> list[tuple[str, dict]]:
        events = []
        for pod in self.cluster.of_kind("pods"):
            name = pod["metadata"]["name"]
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") and name not in self.seen:
                self.seen.add(name)
                events.append(("MODIFIED", json.loads(json.dumps(pod))))
        return events


def test_passes_woken_by_ended_pods_list_nothing_and_run_the_experiment_exactly():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=15, parallelism=4))
    reconciler = Reconciler(cluster, GpuSharing(), monotonic=lambda: 0.0)  # the listing never gets old
    kubelet, watch = FakeKubelet(cluster), PodWatch(cluster)
    result = run(reconciler.reconcile(cluster.experiment("demo")))
    assert cluster.lists == 2
    for _ in range(100):
        kubelet.step(finish=1)  # one trial at a time ends, as they do
        result = run(reconciler.reconcile(cluster.experiment("demo"), watch.ended()))
        assert len(cluster.active_pods()) <= 4
        if result.done:
            break
    assert cluster.lists == 2  # every pass after the first worked from the events
    trials = cluster.of_kind("trials")
    assert sorted(t["metadata"]["name"] for t in trials) == sorted(f"demo-{i}" for i in range(15))
    assert all(t["status"]["phase"] == "Succeeded" for t in trials)
    assert result.status["phase"] == "Succeeded" and result.status["trials"]["succeeded"] == 15
    fresh = run(Reconciler(cluster, GpuSharing()).reconcile(cluster.experiment("demo")))
    assert fresh.status["trials"] == result.status["trials"]


def test_a_fast_pass_takes_a_pod_it_created_for_pending_and_a_stale_listing_for_stale():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=10, parallelism=2, template={"retain": "all"}))
    reconciler = Reconciler(cluster, GpuSharing(), monotonic=lambda: 0.0)
    kubelet, watch = FakeKubelet(cluster), PodWatch(cluster)
    run(reconciler.reconcile(cluster.experiment("demo")))
    kubelet.step(finish=0)
    kubelet.step(finish=1)
    run(reconciler.reconcile(cluster.experiment("demo"), watch.ended()))  # creates demo-2, never listed
    run(reconciler.reconcile(cluster.experiment("demo"), []))
    phases = {t["metadata"]["name"]: (t.get("status") or {}).get("phase", "Pending") for t in cluster.of_kind("trials")}
    assert phases["demo-2"] == "Pending" and "Failed" not in phases.values()
    # an event older than what the listing showed does not move the pod back
    ended = next(p for p in cluster.of_kind("pods") if p["status"]["phase"] == "Succeeded")
    older = json.loads(json.dumps(ended))
    older["status"] = {"phase": "Running"}
    view = next(iter(reconciler._states.values())).view
    view.observe("MODIFIED", older)
    assert view.pods[ended["metadata"]["labels"]["kubetune.io/trial"]][ended["metadata"]["name"]] == ended


class HeldResults(FakeCluster):
    """A cluster whose trial result patches wait until released, or fail while ``failing`` is set."""

    def __init__(self):
        super().__init__()
        self.released: asyncio.Event | None = None
        self.failing = False

    async def patch_status(self, kind, namespace, name, status):
        if kind == "trials" and status.get("phase") in ("Succeeded", "Failed"):
            if self.failing:
                raise ConnectionError("the API server went away")
            if self.released is not None:
                await self.released.wait()
        await super().patch_status(kind, namespace, name, status)


def write_behind(max_trials: int, **options):
    """A held-results cluster with one experiment of 3 parallel trials, a write-behind reconciler, a kubelet."""
    cluster = HeldResults()
    cluster.add_experiment(experiment_document(maxTrials=max_trials, parallelism=3))
    return cluster, Reconciler(cluster, GpuSharing(), write_behind=True, **options), FakeKubelet(cluster)


def test_results_are_written_behind_the_refills():
    cluster, reconciler, kubelet = write_behind(10)

    async def scenario():
        cluster.released = asyncio.Event()
        await reconciler.reconcile(cluster.experiment("demo"))
        kubelet.step(finish=0)
        kubelet.step(finish=1)
        # the pass returns while the result is still held
        await asyncio.wait_for(reconciler.reconcile(cluster.experiment("demo")), 10)
        assert len(cluster.of_kind("trials")) == 4 and len(cluster.active_pods()) == 3
        assert "Succeeded" not in trial_phases(cluster)
        cluster.released.set()
        await reconciler.drain()
        assert trial_phases(cluster).count("Succeeded") == 1

    run(scenario())


def test_a_result_that_could_not_be_written_is_written_after_the_next_listing():
    cluster, reconciler, kubelet = write_behind(10, monotonic=lambda: 0.0)
    watch = PodWatch(cluster)

    async def scenario():
        await reconciler.reconcile(cluster.experiment("demo"))
        kubelet.step(finish=0)
        kubelet.step(finish=1)
        cluster.failing = True
        await reconciler.reconcile(cluster.experiment("demo"), watch.ended())
        await reconciler.drain()
        assert "Succeeded" not in trial_phases(cluster) and reconciler.metrics.reconcile_errors._value.get() == 1
        cluster.failing = False
        lists = cluster.lists
        await reconciler.reconcile(cluster.experiment("demo"), [])  # lists again, although the listing is young
        await reconciler.drain()
        assert cluster.lists == lists + 2
        assert trial_phases(cluster).count("Succeeded") == 1 and len(cluster.of_kind("trials")) == 4

    run(scenario())


def test_an_experiment_ends_only_after_every_result_is_written():
    cluster, reconciler, kubelet = write_behind(6)
    result = run(drive(reconciler, cluster, kubelet))
    assert result.done and cluster.experiment("demo")["status"]["phase"] == "Succeeded"
    assert trial_phases(cluster) == ["Succeeded"] * 6


def test_an_experiment_whose_last_results_could_not_be_written_does_not_end_until_they_are():
    cluster, reconciler, kubelet = write_behind(3)

    async def scenario():
        await reconciler.reconcile(cluster.experiment("demo"))
        kubelet.step(finish=0)
        kubelet.step(finish=None)  # all three end
        cluster.failing = True
        result = await reconciler.reconcile(cluster.experiment("demo"))
        assert not result.done and cluster.experiment("demo")["status"]["phase"] == "Running"
        cluster.failing = False
        result = await reconciler.reconcile(cluster.experiment("demo"))
        assert result.done and cluster.experiment("demo")["status"]["phase"] == "Succeeded"
        assert trial_phases(cluster) == ["Succeeded"] * 3

    run(scenario())


def test_a_pod_deleted_unseen_is_found_by_the_background_listing_and_its_trial_retried():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=2, parallelism=2, template={"retries": 1}))
    now = [0.0]
    reconciler = Reconciler(cluster, GpuSharing(), monotonic=lambda: now[0])

    async def scenario():
        await reconciler.reconcile(cluster.experiment("demo"))  # lists, creates demo-0 and demo-1
        FakeKubelet(cluster).step(finish=0)
        del cluster.objects[("pods", "default", "demo-0")]  # gone, and the watch never said so
        await reconciler.reconcile(cluster.experiment("demo"), [])
        assert cluster.lists == 2  # nothing new to learn yet: no listing
        now[0] = reconcile_module.RELIST_SECONDS
        await reconciler.reconcile(cluster.experiment("demo"), [])  # starts listing the pods in the background
        await asyncio.sleep(0)
        await reconciler.reconcile(cluster.experiment("demo"), [])  # folds the listing in: demo-0 went
        return cluster.lists

    lists = run(scenario())
    assert lists == 3  # the pods only, once
    trials = {t["metadata"]["name"]: t for t in cluster.of_kind("trials")}
    assert trials["demo-0"]["status"]["history"] == ["attempt 1 failed (the trial's pod disappeared)"]
    assert ("pods", "default", "demo-0-r2") in cluster.objects


def test_a_pod_that_ended_unseen_is_looked_up_after_the_background_listing_and_its_result_recorded():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=3, parallelism=2))
    now = [0.0]
    reconciler = Reconciler(cluster, GpuSharing(), monotonic=lambda: now[0])
    kubelet = FakeKubelet(cluster)

    async def scenario():
        await reconciler.reconcile(cluster.experiment("demo"))
        kubelet.step(finish=0)
        await reconciler.reconcile(cluster.experiment("demo"), [])  # running, as far as the view knows
        kubelet.step(finish=1)  # demo-0 ends, and the watch never says so
        now[0] = reconcile_module.RELIST_SECONDS
        await reconciler.reconcile(cluster.experiment("demo"), [])  # lists the unfinished pods in the background
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await reconciler.reconcile(cluster.experiment("demo"), [])  # folds it in: demo-0 ended, with its result
        await reconciler.drain()

    run(scenario())
    assert cluster.gets == 1  # demo-0, which the listing of unfinished pods lacked, looked up alone
    trials = {t["metadata"]["name"]: t for t in cluster.of_kind("trials")}
    assert trials["demo-0"]["status"]["phase"] == "Succeeded" and trials["demo-0"]["status"]["attempts"] == 1
    assert "demo-2" in trials  # its slot refilled


def test_parameters_changed_under_running_trials_hold_the_experiment_until_they_are_restored():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document())
    reconciler = Reconciler(cluster, GpuSharing())
    kubelet = FakeKubelet(cluster)
    run(reconciler.reconcile(cluster.experiment("demo")))
    kubelet.step(finish=1)
    original = cluster.experiment("demo")["spec"]["parameters"]
    cluster.objects[("experiments", "default", "demo")]["spec"]["parameters"] = [
        {"name": "x", "type": "double", "min": 20, "max": 30}]
    with pytest.raises(TrialsDoNotFit) as held:
        run(reconciler.reconcile(cluster.experiment("demo")))
    assert str(held.value).startswith("its trials no longer fit its spec: trial demo-0: its parameters do not fit "
                                      "spec.parameters (")
    assert "is outside [20, 30] for parameter 'x') (and 2 more); spec.parameters cannot change" in str(held.value)
    created = len(cluster.of_kind("trials"))
    # the handler says so in the Experiment's status, in one line of the log, and retries
    state = SimpleNamespace(reconciler=reconciler)
    logger = MagicMock()
    body = cluster.experiment("demo")
    run(_report_failure(state, body, SimpleNamespace(name="demo"), held.value, 5.0, logger))
    assert cluster.experiment("demo")["status"]["reason"] == "SpecChanged"
    assert "spec.parameters cannot change" in cluster.experiment("demo")["status"]["message"]
    assert logger.error.called and not logger.exception.called
    cluster.objects[("experiments", "default", "demo")]["spec"]["parameters"] = original
    result = run(drive(reconciler, cluster, kubelet))
    assert created == 3 and result.status["phase"] == "Succeeded" and len(cluster.of_kind("trials")) == 8
