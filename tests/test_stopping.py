"""The early-stopping rules against worked examples: the median rule (too few completed trials, the start
step, trials that skip steps, ties), ASHA (rungs, the top third continues, too few values at a rung, ties,
determinism) and the bounded, round-tripping Progress record."""

from __future__ import annotations

import json
import math

import pytest

from kubetune.core.stopping import Progress, build_rule, judge, observe
from kubetune.core.stopping.progress import CURVE_POINTS

MEDIAN = {"minTrialsRequired": 3, "startStep": 4}
ASHA = {"minResource": 1, "maxResource": 27, "reductionFactor": 3}


def progress(reports: list[tuple[float, float]], maximize: bool = False, rule: str = "median") -> Progress:
    built = build_rule(rule, MEDIAN if rule == "median" else ASHA)
    p = Progress()
    for step, value in reports:
        observe(p, step, value, maximize, built)
    return p


def flat(value: float, steps: int = 6) -> list[tuple[float, float]]:
    return [(step, value) for step in range(1, steps + 1)]


# -- median ---------------------------------------------------------------------------------------------------
def median_stops(trial: Progress, completed: list[Progress], maximize: bool = False) -> bool:
    return build_rule("median", MEDIAN).should_stop(trial, {str(i): p for i, p in enumerate(completed)}, maximize)


COMPLETED = [progress(flat(1.0)), progress(flat(2.0)), progress(flat(3.0))]  # running averages 1, 2, 3


def test_median_needs_min_trials_required_completed_trials():
    hopeless = progress(flat(100.0, steps=5))
    assert not median_stops(hopeless, COMPLETED[:2])
    assert median_stops(hopeless, COMPLETED)


def test_median_judges_from_start_step_on():
    assert not median_stops(progress(flat(100.0, steps=3)), COMPLETED)  # step 3 < startStep 4
    assert median_stops(progress(flat(100.0, steps=4)), COMPLETED)  # judged at step 4 itself


def test_median_compares_the_best_value_so_far_with_the_median_of_running_averages():
    assert not median_stops(progress([(1, 1.0), (4, 2.5)]), COMPLETED)  # the latest is worse, the best 1.0 is not
    assert not median_stops(progress([(1, 9.0), (4, 1.5)]), COMPLETED)  # best 1.5 beats the median 2
    assert median_stops(progress([(1, 9.0), (4, 2.5)]), COMPLETED)  # best 2.5 is worse than the median 2


def test_median_tie_with_the_median_continues():
    assert not median_stops(progress([(1, 5.0), (4, 2.0)]), COMPLETED)


def test_median_maximizing():
    completed = [progress(flat(v), maximize=True) for v in (1.0, 2.0, 3.0)]
    assert median_stops(progress(flat(1.5, steps=4), maximize=True), completed, maximize=True)
    assert not median_stops(progress(flat(2.5, steps=4), maximize=True), completed, maximize=True)


def test_median_with_trials_that_skip_steps():
    # completed trials that reported only at steps 2 and 8: at step 5 their running average is the one at step 2
    sparse = [progress([(2, v), (8, v + 6)]) for v in (1.0, 2.0, 3.0)]
    assert [p.mean_at(5) for p in sparse] == [1.0, 2.0, 3.0]
    assert median_stops(progress([(5, 2.5)]), sparse)
    assert not median_stops(progress([(5, 1.5)]), sparse)
    # a running trial that jumps from step 1 to step 10 is judged at 10 on its best value
    jumper = progress([(1, 1.0), (10, 50.0)])
    assert jumper.step == 10 and jumper.best == 1.0
    assert not median_stops(jumper, sparse)  # the averages at step 8 are 4, 5, 6
    # completed trials that first reported after the running trial's step are not counted
    late = [progress([(6, v)]) for v in (1.0, 2.0, 3.0)]
    assert not median_stops(progress(flat(100.0, steps=5)), late)


def test_median_compares_only_with_completed_trials():
    rule = build_rule("median", MEDIAN)
    trials = {"a": progress(flat(1.0)), "b": progress(flat(2.0)), "c": progress(flat(3.0)),
              "running": progress(flat(0.5)), "me": progress(flat(2.5, steps=4))}
    assert judge("median", rule, "me", trials, {"a", "b", "c"}, False)
    assert not judge("median", rule, "me", trials, {"a", "b"}, False)  # a running trial does not count


# -- ASHA -----------------------------------------------------------------------------------------------------
def at_rung(value: float, rung: float = 1) -> Progress:
    return progress([(rung, value)], rule="asha")


def asha_stops(value: float, others: list[float], rung: float = 1, maximize: bool = False) -> bool:
    trials = {str(i): at_rung(v, rung) for i, v in enumerate(others)}
    trials["me"] = at_rung(value, rung)
    return judge("asha", build_rule("asha", ASHA), "me", trials, set(), maximize)


def test_asha_rungs():
    assert build_rule("asha", ASHA).rungs() == [1, 3, 9]
    assert build_rule("asha", {"maxResource": 81}).rungs() == [1, 3, 9, 27]
    assert build_rule("asha", {"minResource": 2, "maxResource": 20, "reductionFactor": 2}).rungs() == [2, 4, 8, 16]


def test_asha_judges_when_a_trial_reaches_a_new_rung():
    rule, p = build_rule("asha", ASHA), Progress()
    assert [observe(p, step, 1.0, False, rule) for step in range(1, 11)] == [
        True, False, True, False, False, False, False, False, True, False]
    assert p.rungs == {"1": 1.0, "3": 1.0, "9": 1.0}


def test_asha_a_trial_that_skips_steps_takes_its_value_to_every_rung_it_passed():
    rule, p = build_rule("asha", ASHA), Progress()
    assert observe(p, 1, 5.0, False, rule)
    assert observe(p, 10, 2.0, False, rule)
    assert p.rungs == {"1": 5.0, "3": 2.0, "9": 2.0}


def test_asha_top_third_continues_and_the_rest_stops():
    others = [1.0, 2.0, 3.0, 4.0, 5.0]  # with the trial: six values, the best two continue
    assert not asha_stops(0.5, others)
    assert not asha_stops(1.5, others)
    assert asha_stops(2.5, others)
    assert asha_stops(9.0, others)
    assert not asha_stops(9.5, [1.0, 2.0, 3.0, 4.0, 5.0], maximize=True)
    assert asha_stops(2.5, others, maximize=True)


def test_asha_judges_at_the_highest_rung_the_trial_reached():
    rule = build_rule("asha", ASHA)
    trials = {str(i): progress([(1, v), (3, v)], rule="asha") for i, v in enumerate([1.0, 2.0, 3.0])}
    trials["me"] = progress([(1, 0.0), (3, 2.5)], rule="asha")  # best at rung 1, worst of four at rung 3
    assert judge("asha", rule, "me", trials, set(), False)


def test_asha_never_stops_a_trial_that_already_reported_max_resource():
    """The runner reads reports in batches: a trial judged at rung 3 may already have reported its last
    step; stopping it then saves nothing and would record a finished trial as EarlyStopped."""
    rule = build_rule("asha", {"minResource": 1, "maxResource": 9})
    others = {str(i): progress([(1, v), (3, v)], rule="asha") for i, v in enumerate([1.0, 2.0, 3.0])}

    def stops(reports: list[tuple[float, float]]) -> bool:
        trial = Progress()
        for step, value in reports:
            observe(trial, step, value, False, rule)
        return judge("asha", rule, "me", {**others, "me": trial}, set(), False)

    assert stops([(1, 0.0), (3, 2.5), (5, 2.5)])  # worst of four at rung 3, still training
    assert not stops([(1, 0.0), (3, 2.5), (9, 2.5)])  # the same, but it has reached maxResource


def test_asha_never_stops_with_fewer_than_reduction_factor_values_at_a_rung():
    assert not asha_stops(100.0, [])
    assert not asha_stops(100.0, [1.0])
    assert asha_stops(100.0, [1.0, 2.0])  # three values: only the best continues
    assert not asha_stops(100.0, [1.0], rung=9)  # the same at any rung
    assert asha_stops(100.0, [1.0, 2.0], rung=9)


def test_asha_ties_at_the_cutoff_continue():
    assert not asha_stops(1.0, [1.0, 2.0])
    assert not asha_stops(1.0, [1.0, 1.0, 1.0, 1.0, 1.0])
    assert asha_stops(1.0, [0.0, 0.0, 0.0, 0.0, 0.0])


def test_asha_is_deterministic_whatever_the_order_of_the_trials():
    rule = build_rule("asha", ASHA)
    values = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.0]
    for order in (values, values[::-1], sorted(values)):
        trials = {f"t{i}": at_rung(v) for i, v in enumerate(order)}
        trials["me"] = at_rung(2.6)
        decisions = {judge("asha", rule, "me", trials, set(), False) for _ in range(3)}
        assert decisions == {True}  # eight values, the best two (1.0, 1.5) continue


# -- Progress -------------------------------------------------------------------------------------------------
def test_progress_stays_bounded_after_ten_thousand_reports():
    p = progress([(step, 1.0 / step) for step in range(1, 10_001)], rule="asha")
    assert p.reports == 10_000 and p.step == 10_000 and p.best == pytest.approx(1e-4)
    assert p.mean == pytest.approx(sum(1.0 / s for s in range(1, 10_001)) / 10_000)
    assert len(p.curve) <= CURVE_POINTS
    steps = [point[0] for point in p.curve]
    assert steps == sorted(steps) and steps[0] == 1 and steps[-1] > 10_000 - 2 * p.stride
    assert len(json.dumps(p.to_dict())) < 4 * 1024


def test_progress_round_trips_and_goes_on_identically():
    reports = [(step, math.sin(step) + step / 100) for step in range(1, 1_001)]
    p = progress(reports, rule="asha")
    copy = Progress.from_dict(json.loads(json.dumps(p.to_dict())))
    assert copy == p
    rule = build_rule("asha", ASHA)
    for step in range(1_001, 1_200):
        assert observe(copy, step, 0.5, False, rule) == observe(p, step, 0.5, False, rule)
    assert copy == p
    assert Progress.from_dict(None) == Progress()


def test_progress_refuses_steps_that_go_back_and_values_that_are_not_finite():
    rule, p = build_rule("asha", ASHA), Progress()
    assert observe(p, 3, 1.0, False, rule)
    assert not observe(p, 2, 0.5, False, rule)
    assert not observe(p, 4, math.nan, False, rule)
    assert not observe(p, 5, math.inf, False, rule)
    assert (p.reports, p.step, p.best) == (1, 3, 1.0)
