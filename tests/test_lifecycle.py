"""The trial lifecycle: retries, results, kills, resumes and the two renderings of one record."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from kubetune.core.cluster.resources import TrialStatus
from kubetune.core.lifecycle import (
    ACTIVE,
    FAILED,
    FINISHED,
    INTERRUPTED,
    STARTED,
    AttemptResult,
    TrialRecord,
    TrialState,
    kill,
    resumed,
    settle,
)

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
FAILURE = AttemptResult(TrialState.FAILED, reason="ExitCode", message="exited with status 3", exit_code=3)
SUCCESS = AttemptResult(TrialState.SUCCEEDED, value=0.5, metrics={"loss": 0.5}, exit_code=0)


def test_the_state_sets_partition_the_states():
    assert STARTED | {TrialState.QUEUED} == ACTIVE and not ACTIVE & FINISHED
    assert set(TrialState) == ACTIVE | FINISHED and FAILED <= FINISHED
    assert TrialState.QUEUED.is_active and TrialState.KILLED.is_finished and TrialState.METRICS_UNAVAILABLE.is_failure


def test_a_failed_attempt_is_retried_while_retries_last_and_the_history_stays():
    record = TrialRecord("demo-0", 0, {"x": 1})
    record.start(NOW)
    assert settle(record, FAILURE, retries=1, now=NOW) is True
    assert record.state is TrialState.QUEUED and record.retry and record.row()["state"] == "Failed"
    record.start(NOW)
    assert record.attempts == 2 and not record.retry
    assert settle(record, SUCCESS, retries=1, now=NOW) is False
    assert record.state is TrialState.SUCCEEDED and record.value == 0.5
    assert record.message == "attempt 1 failed (exited with status 3); attempt 2 succeeded"


def test_metrics_unavailable_and_exhausted_retries_are_final():
    unavailable = AttemptResult(TrialState.METRICS_UNAVAILABLE, reason="MetricsUnavailable", message="none")
    record = TrialRecord("demo-0", 0, {})
    record.start(NOW)
    assert settle(record, unavailable, retries=3, now=NOW) is False
    record = TrialRecord("demo-1", 1, {})
    record.start(NOW)
    assert settle(record, FAILURE, retries=0, now=NOW) is False and record.state is TrialState.FAILED


@given(st.integers(0, 4), st.integers(1, 8))
def test_a_trial_runs_at_most_retries_plus_one_times(retries, failures):
    record, runs = TrialRecord("demo-0", 0, {}), 0
    while True:
        record.start(NOW)
        runs += 1
        if not settle(record, FAILURE if runs <= failures else SUCCESS, retries, NOW):
            break
    assert runs == min(failures, retries) + 1
    assert record.state is (TrialState.SUCCEEDED if failures <= retries else TrialState.FAILED)


def test_interrupted_and_cut_short_trials_are_queued_again_finished_ones_are_not():
    interrupted = TrialRecord("demo-0", 0, {})
    interrupted.start(NOW)
    kill(interrupted, INTERRUPTED, NOW)
    assert resumed(interrupted).state is TrialState.QUEUED and interrupted.attempts == 1
    ended = TrialRecord("demo-1", 1, {})
    ended.start(NOW)
    kill(ended, "TargetReached", NOW)
    assert resumed(ended).state is TrialState.KILLED and ended.message == "experiment ended: TargetReached"
    running = TrialRecord("demo-2", 2, {}, state=TrialState.RUNNING, attempts=2)
    assert resumed(running).state is TrialState.QUEUED


def test_one_record_two_renderings():
    record = TrialRecord("demo-0", 0, {"x": 1.5})
    record.start(NOW)
    settle(record, FAILURE, retries=1, now=NOW)
    record.start(NOW)
    record.pod = "demo-0-2"
    settle(record, SUCCESS, retries=1, now=NOW)
    again = TrialRecord.from_row(record.row())
    assert (again.state, again.value, again.attempts, again.history) == (record.state, 0.5, 2, record.history)
    status = TrialStatus.model_validate(record.status())  # the Trial resource accepts it
    assert status.phase == "Succeeded" and status.attempts == 2 and status.history == record.history
    trial = {"metadata": {"name": "demo-0"}, "spec": {"number": 0, "params": {"x": 1.5}}, "status": record.status()}
    assert TrialRecord.from_trial(trial).status() == record.status()
