"""The scheduling decision."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kubetune.core.lifecycle import TrialState
from kubetune.core.plan import Limits, Tally, Trial, decide

LIMITS = Limits(parallelism=3, max_trials=5, max_failed_trials=1, direction="maximize", target=0.9)


def trials(*states_values):
    return [Trial(str(i), TrialState(s), v) for i, (s, v) in enumerate(states_values)]


def test_fills_free_slots_up_to_max_trials():
    assert decide(LIMITS, []).create == 3
    d = decide(LIMITS, trials(("Running", None), ("Succeeded", 0.5)))
    assert (d.phase, d.create) == ("Running", 2)
    d = decide(LIMITS, trials(("Running", None), ("Succeeded", 0.5), ("Succeeded", 0.1), ("Running", None)))
    assert d.create == 1  # maxTrials 5 caps it, not parallelism


def test_queued_trials_start_before_new_ones():
    d = decide(LIMITS, trials(("Queued", None), ("Running", None)))
    assert d.start == ["0"] and d.create == 1


def test_target_reached_stops_everything():
    d = decide(LIMITS, trials(("Running", None), ("Succeeded", 0.95)))
    assert (d.phase, d.reason, d.stop_running) == ("Succeeded", "TargetReached", True)


def test_too_many_failures_fail_the_experiment():
    d = decide(LIMITS, trials(("Failed", None), ("Running", None)))
    assert d.phase == "Running"
    d = decide(LIMITS, trials(("Failed", None), ("MetricsUnavailable", None), ("Running", None)))
    assert (d.phase, d.reason, d.stop_running) == ("Failed", "MaxFailedTrialsReached", True)


def test_finishes_when_all_trials_are_done():
    done = trials(*[("Succeeded", 0.1)] * 4, ("Killed", None))
    d = decide(LIMITS, done)
    assert (d.phase, d.reason) == ("Succeeded", "MaxTrialsReached")
    d = decide(LIMITS, trials(("Succeeded", 0.1), ("Running", None), *[("Succeeded", 0.2)] * 3))
    assert (d.phase, d.create) == ("Running", 0)


def test_exhausted_space_ends_the_experiment():
    d = decide(LIMITS, trials(("Succeeded", 0.1)), exhausted=True)
    assert (d.phase, d.reason) == ("Succeeded", "SearchSpaceExhausted")
    d = decide(LIMITS, trials(("MetricsUnavailable", None)), exhausted=True)
    assert (d.phase, d.reason) == ("Failed", "NoSuccessfulTrial")


def test_suspended_starts_nothing():
    limits = Limits(parallelism=3, max_trials=5, max_failed_trials=1, direction="maximize", suspend=True)
    d = decide(limits, trials(("Running", None)))
    assert (d.phase, d.reason, d.create, d.start) == ("Suspended", "Suspended", 0, [])


def test_minimize_target():
    limits = Limits(parallelism=1, max_trials=5, max_failed_trials=1, direction="minimize", target=0.1)
    assert decide(limits, trials(("Succeeded", 0.2))).phase == "Running"
    assert decide(limits, trials(("Succeeded", 0.05))).reason == "TargetReached"


LIFECYCLES = st.lists(st.tuples(
    st.sampled_from([("Queued", "Running"), ("Pending", "Running"), ("Pending",), ("Queued",), ()]),
    st.sampled_from(["Succeeded", "Failed", "MetricsUnavailable", "Killed", None]),
    st.floats(-10, 10, allow_nan=False)), max_size=30)


@given(LIFECYCLES, st.sampled_from(["minimize", "maximize"]))
def test_a_tally_kept_as_trials_move_is_the_tally_of_where_they_ended(lifecycles, direction):
    """Trials moved one state at a time, interleaved, tally the same as counting them at the end; and decide
    reads both alike."""
    kept, final = Tally(direction), []
    moves = [(str(i), steps + ((end,) if end else ()), value) for i, (steps, end, value) in enumerate(lifecycles)]
    for trial, states, value in moves:
        before = None
        for state in states:
            kept.moved(trial, before, TrialState(state), value if state == "Succeeded" else None)
            before = state
        if states:
            final.append(Trial(trial, TrialState(states[-1]), value if states[-1] == "Succeeded" else None))
    counted = Tally.of(final, direction)
    assert {k: v for k, v in kept.counts.items() if v} == {k: v for k, v in counted.counts.items() if v}
    assert kept.best == counted.best and kept.total == counted.total and kept.queued == counted.queued
    limits = Limits(parallelism=4, max_trials=40, max_failed_trials=3, direction=direction, target=5.0)
    assert decide(limits, kept) == decide(limits, final)
