"""The benchmark harness itself: problems have the optima they claim, and the asynchronous simulation
keeps q trials in flight and reports a monotone best-so-far curve."""

from __future__ import annotations

import math

import pytest

from benchmarks.gpu_packing import manifest, most_at_once
from benchmarks.problems import PROBLEMS, branin, hartmann6, six_hump_camel
from benchmarks.quality import simulate
from kubetune.core.manifest import load_experiment


def test_known_optima():
    assert branin({"x1": math.pi, "x2": 2.275}) == pytest.approx(PROBLEMS["branin"].optimum, abs=1e-6)
    assert six_hump_camel({"x": 0.0898, "y": -0.7126}) == pytest.approx(PROBLEMS["six-hump-camel"].optimum, abs=1e-4)
    point = [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]
    assert hartmann6({f"x{i}": v for i, v in enumerate(point)}) == pytest.approx(PROBLEMS["hartmann6"].optimum,
                                                                                 abs=1e-4)


@pytest.mark.parametrize("method", ["kubetune gp", "random"])
def test_asynchronous_simulation(method):
    result = simulate("branin", method, q=3, seed=0, budget=12)
    assert len(result["best"]) == 12
    assert all(a >= b for a, b in zip(result["best"], result["best"][1:], strict=False))
    assert result["time"] == sorted(result["time"])
    # three workers: the twelve unit-ish trials finish in about a third of the sequential time
    assert result["time"][-1] < 0.6 * 12


def test_a_run_with_a_level_stops_once_it_is_reached():
    full = simulate("branin", "kubetune gp", q=2, seed=0, budget=30)
    level = full["best"][9]
    stopped = simulate("branin", "kubetune gp", q=2, seed=0, budget=30, stop_at=level)
    first = next(i for i, best in enumerate(full["best"]) if best <= level)
    assert stopped["best"] == full["best"][: first + 1]
    assert stopped["time"] == full["time"][: first + 1]


def test_gpu_packing_counts_the_trials_that_overlap():
    assert most_at_once([]) == 0
    assert most_at_once([(0, 2), (1, 3), (2, 4)]) == 2  # the first ends as the third starts
    assert most_at_once([(0, 10), (1, 2), (3, 4), (5, 9), (6, 7)]) == 3


def test_gpu_packing_runs_the_example_with_one_share_and_the_same_trials():
    experiment = load_experiment(manifest(share=0.125, trials=12, parallelism=8, epochs=40))
    spec = experiment.spec
    assert spec.trial_template.resources.gpu == 0.125
    assert (spec.algorithm.name, spec.seed, spec.parallelism, spec.max_trials) == ("sobol", 0, 8, 12)
    assert spec.trial_template.spec["containers"][0]["args"][-1] == "--epochs=40"
