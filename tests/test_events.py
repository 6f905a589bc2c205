"""The operator's Event recorder against the in-memory cluster: an Event repeated is one Event counted, a burst
of similar ones is combined and rate-limited, and nothing it meets makes it raise."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fake_cluster import FakeCluster, FakeKubelet
from test_reconcile import HeldResults, drive, experiment_document, run

from kubetune.core.cluster.gpu_sharing import GpuSharing
from kubetune.operator import events as events_module
from kubetune.operator.api import ApiError, Unavailable
from kubetune.operator.events import COMPONENT, NORMAL, WARNING, EventRecorder, Note, hold_lifted, reference
from kubetune.operator.reconcile import Reconciler

EXPERIMENT = reference({"apiVersion": "kubetune.io/v1alpha1", "kind": "Experiment",
                        "metadata": {"name": "demo", "namespace": "team-a", "uid": "0b5e-11"}})


class Clock:
    """A clock the test moves: ``now()`` for timestamps, ``seconds()`` for the rate limits."""

    def __init__(self) -> None:
        self.at = 0.0

    def now(self) -> datetime:
        return datetime(2026, 12, 8, 10, 0, tzinfo=UTC) + timedelta(seconds=self.at)

    def seconds(self) -> float:
        return self.at


def recorder(cluster: Any, clock: Clock | None = None) -> tuple[EventRecorder, list[str]]:
    clock = clock or Clock()
    outcomes: list[str] = []
    return EventRecorder(cluster, instance="kubetune-operator-7d9f-abcde", clock=clock.now,
                         monotonic=clock.seconds, count=outcomes.append), outcomes


def posted(cluster: FakeCluster) -> list[dict[str, Any]]:
    return sorted(cluster.of_kind("events"), key=lambda event: event["metadata"]["name"])


def test_the_same_event_twice_is_one_event_counted_twice():
    cluster, clock = FakeCluster(), Clock()
    events, outcomes = recorder(cluster, clock)
    note = Note(NORMAL, "Suspended", "suspended with 2 trials still running")
    asyncio.run(events.record(EXPERIMENT, note))
    clock.at = 30
    asyncio.run(events.record(EXPERIMENT, note))
    [event] = posted(cluster)
    assert event["count"] == 2 and outcomes == ["posted", "updated"]
    assert event["firstTimestamp"] == "2026-12-08T10:00:00Z" and event["lastTimestamp"] == "2026-12-08T10:00:30Z"
    assert event["source"] == {"component": COMPONENT} and event["reportingComponent"] == COMPONENT
    assert event["reportingInstance"] == "kubetune-operator-7d9f-abcde"
    assert event["involvedObject"] == {"apiVersion": "kubetune.io/v1alpha1", "kind": "Experiment", "name": "demo",
                                       "namespace": "team-a", "uid": "0b5e-11"}
    assert event["metadata"]["namespace"] == "team-a" and event["metadata"]["name"].startswith("demo.")
    assert (event["type"], event["reason"], event["message"]) == (NORMAL, note.reason, note.message)


def test_another_message_type_or_object_is_another_event():
    cluster = FakeCluster()
    events, _ = recorder(cluster)
    other = {**EXPERIMENT, "name": "other", "uid": "77"}

    async def record_all() -> None:
        await events.record(EXPERIMENT, Note(WARNING, "Forbidden", "cannot create pods"))
        await events.record(EXPERIMENT, Note(WARNING, "Forbidden", "cannot delete pods"))
        await events.record(EXPERIMENT, Note(NORMAL, "Forbidden", "cannot create pods"))
        await events.record(other, Note(WARNING, "Forbidden", "cannot create pods"))

    asyncio.run(record_all())
    assert [event["count"] for event in posted(cluster)] == [1, 1, 1, 1]
    assert len({event["metadata"]["name"] for event in posted(cluster)}) == 4


def test_five_thousand_failing_trials_are_combined_and_rate_limited():
    cluster, clock = FakeCluster(), Clock()
    events, outcomes = recorder(cluster, clock)

    async def fail(first: int, last: int) -> None:
        for number in range(first, last):
            await events.record(EXPERIMENT, Note(WARNING, "TrialFailed", f"trial demo-{number} failed: Error"))

    asyncio.run(fail(0, 5000))
    found = posted(cluster)
    writes = cluster.writes["create events"] + cluster.writes["patch events"]
    assert len(found) == events_module.SIMILAR_LIMIT + 1 and writes == events_module.BURST
    combined = [event for event in found if event["message"].startswith("(combined from similar events): ")]
    assert len(combined) == 1 and outcomes.count("deferred") == 5000 - events_module.BURST
    # once the bucket holds a token again, the next occurrence writes the count of those held back
    clock.at = events_module.REFILL_SECONDS
    asyncio.run(fail(5000, 5001))
    [combined_now] = [e for e in posted(cluster) if e["message"].startswith("(combined from similar events): ")]
    assert combined_now["count"] == 5001 - events_module.SIMILAR_LIMIT
    assert combined_now["message"].endswith("trial demo-5000 failed: Error")
    # a burst of one reason leaves the others alone
    asyncio.run(events.record(EXPERIMENT, Note(WARNING, "MaxFailedTrialsReached", "3 trials failed")))
    assert any(event["reason"] == "MaxFailedTrialsReached" for event in posted(cluster))


class SlowCluster(FakeCluster):
    """Each write yields to the event loop first, as a real request does."""

    async def create(self, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0)
        return await super().create(kind, namespace, body)

    async def patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        await super().patch(kind, namespace, name, patch)


def test_occurrences_while_an_event_is_being_written_are_written_after_it_never_beside_it():
    cluster = SlowCluster()
    events, _ = recorder(cluster)
    note = Note(WARNING, "SpecChanged", "its trials no longer fit its spec")

    async def at_once() -> None:
        await asyncio.gather(*(events.record(EXPERIMENT, note) for _ in range(3)))

    asyncio.run(at_once())
    [event] = posted(cluster)
    assert event["count"] == 3
    assert cluster.writes["create events"] == 1 and cluster.writes["patch events"] == 1


class FailingCluster(FakeCluster):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error: Exception | None = error

    async def create(self, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        return await super().create(kind, namespace, body)


def test_a_refused_or_broken_post_is_counted_and_logged_never_raised(caplog):
    for error in (Unavailable("the API server could not be reached"), ApiError("forbidden"), KeyError("bug")):
        cluster = FailingCluster(error)
        events, outcomes = recorder(cluster)
        note = Note(NORMAL, "Started", "2 trials running")
        asyncio.run(events.record(EXPERIMENT, note))
        assert outcomes == ["failed"] and posted(cluster) == []
        cluster.error = None
        asyncio.run(events.record(EXPERIMENT, note))  # posted by the next occurrence, counting both
        assert [event["count"] for event in posted(cluster)] == [2]
    lines = [record.getMessage() for record in caplog.records if record.name == "kubetune.operator.events"]
    assert len(lines) == 3 and all("could not post the Event Started about Experiment demo" in line for line in lines)
    assert all(record.exc_info is None for record in caplog.records)


def test_an_expired_event_is_posted_again_with_its_count():
    cluster = FakeCluster()
    events, _ = recorder(cluster)
    note = Note(WARNING, "Forbidden", "cannot create pods")
    asyncio.run(events.record(EXPERIMENT, note))
    cluster.objects = {key: obj for key, obj in cluster.objects.items() if key[0] != "events"}  # its hour is up
    asyncio.run(events.record(EXPERIMENT, note))
    [event] = posted(cluster)
    assert event["count"] == 2 and event["message"] == "cannot create pods"


def test_the_caches_stay_bounded(monkeypatch):
    monkeypatch.setattr(events_module, "CACHE_SIZE", 50)
    events, _ = recorder(FakeCluster())

    async def many() -> None:
        for number in range(200):
            experiment = {**EXPERIMENT, "name": f"e{number}", "uid": str(number)}
            await events.record(experiment, Note(NORMAL, "Started", "running"))

    asyncio.run(many())
    assert len(events._events) == len(events._similar) == len(events._buckets) == 50


# -- the Events of the reconciler's decisions ---------------------------------------------------------------
def reconciler_with_events(cluster: FakeCluster) -> Reconciler:
    return Reconciler(cluster, GpuSharing(), events=EventRecorder(cluster, instance="operator-0"))


def said(cluster: FakeCluster) -> list[tuple[str, str, str]]:
    """(type, reason, message) of each Event posted, in the order posted."""
    return [(e["type"], e["reason"], e["message"]) for e in posted(cluster)]


def test_a_failed_trial_and_its_retry_are_events_about_the_experiment_naming_the_trial():
    cluster = FakeCluster()
    experiment = cluster.add_experiment(experiment_document(maxTrials=2, parallelism=2, maxFailedTrials=5,
                                                            template={"retries": 1}))
    run(drive(reconciler_with_events(cluster), cluster, FakeKubelet(cluster, lambda params, pod: "fail")))
    events = said(cluster)
    retried = sorted(message for kind, reason, message in events if reason == "TrialRetried")
    failed = sorted(message for kind, reason, message in events if reason == "TrialFailed" and kind == WARNING)
    assert retried == [f"trial demo-{n}: attempt 1 failed (ExitCode: exited with status 2 (Error): Traceback: "
                       "boom); starting attempt 2" for n in (0, 1)]
    assert [message.split(":")[0] for message in failed] == ["trial demo-0 failed", "trial demo-1 failed"]
    assert "attempt 2 failed (exited with status 2" in failed[0]
    assert events[-1][:2] == (WARNING, "NoSuccessfulTrial")
    assert {e["involvedObject"]["uid"] for e in posted(cluster)} == {experiment["metadata"]["uid"]}


def test_start_suspend_resume_and_the_end_are_each_one_event():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=4, parallelism=2))
    reconciler = reconciler_with_events(cluster)
    kubelet = FakeKubelet(cluster)
    run(reconciler.reconcile(cluster.experiment("demo")))
    cluster.objects[("experiments", "default", "demo")]["spec"]["suspend"] = True
    for _ in range(3):
        run(reconciler.reconcile(cluster.experiment("demo")))
    cluster.objects[("experiments", "default", "demo")]["spec"]["suspend"] = False
    result = run(drive(reconciler, cluster, kubelet))
    run(reconciler.reconcile(cluster.experiment("demo")))  # an ended experiment says nothing more
    assert result.status["phase"] == "Succeeded"
    assert [(kind, reason) for kind, reason, _ in said(cluster)] == [
        (NORMAL, "Started"), (NORMAL, "Suspended"), (NORMAL, "Resumed"), (NORMAL, "MaxTrialsReached")]
    assert all(event["count"] == 1 for event in posted(cluster))
    assert said(cluster)[1][2] == "suspended with 2 trials still running"


def test_an_invalid_spec_is_a_warning():
    document = experiment_document()
    document["spec"]["parameters"][0].update(min=10, max=1)
    cluster = FakeCluster()
    cluster.add_experiment(document)
    run(reconciler_with_events(cluster).reconcile(cluster.experiment("demo")))
    [(kind, reason, message)] = said(cluster)
    assert (kind, reason) == (WARNING, "InvalidSpec") and "must be greater than min" in message


def test_a_hold_retried_is_one_warning_counted():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document())
    reconciler = reconciler_with_events(cluster)
    for _ in range(2):
        run(reconciler.report_problem(cluster.experiment("demo"), "Forbidden", "cannot create pods"))
    [event] = [e for e in posted(cluster) if e["reason"] == "Forbidden"]
    assert event["type"] == WARNING and event["count"] == 2 and event["message"] == "cannot create pods"



def test_an_experiment_that_ends_while_suspended_posts_its_end_and_no_resume():
    cluster = HeldResults()
    cluster.add_experiment(experiment_document(maxTrials=3, parallelism=3))
    reconciler = Reconciler(cluster, GpuSharing(), write_behind=True, events=EventRecorder(cluster))
    kubelet = FakeKubelet(cluster)
    run(reconciler.reconcile(cluster.experiment("demo")))
    kubelet.step(finish=0)  # all three running
    cluster.objects[("experiments", "default", "demo")]["spec"]["suspend"] = True
    run(reconciler.reconcile(cluster.experiment("demo")))
    kubelet.step()  # all three end: the experiment is over, but their results cannot be written yet
    cluster.failing = True
    assert not run(reconciler.reconcile(cluster.experiment("demo"))).done
    cluster.failing = False
    result = run(drive(reconciler, cluster, kubelet))
    assert result.status["reason"] == "MaxTrialsReached"
    assert [reason for _, reason, _ in said(cluster)] == ["Started", "Suspended", "MaxTrialsReached"]


@pytest.mark.parametrize("hold", ["SpecChanged", "Forbidden", "PodRefused"])
def test_the_end_of_a_hold_is_an_event_and_nothing_else_is(hold):
    lifted = hold_lifted(hold, "TrialsRunning")
    assert lifted is not None and lifted.type == NORMAL and lifted.reason == "HoldLifted" and hold in lifted.message
    assert hold_lifted(hold, hold) is None and hold_lifted("TrialsRunning", "TrialsRunning") is None
    assert hold_lifted(None, "TrialsRunning") is None
