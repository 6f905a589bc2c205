"""The benchmark harness itself: problems have the optima they claim, the asynchronous simulation keeps q
trials in flight and reports a monotone best-so-far curve, and the early-stopping benchmark's simulated
workers spend exactly their budget of training steps and report from its results; the Ray benchmark runs
each of its systems on a real Ray cluster."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from benchmarks.early_stopping import run_group
from benchmarks.early_stopping import simulate as simulate_stopping
from benchmarks.gpu_packing import manifest, most_at_once
from benchmarks.learning_curves import CURVE_PROBLEMS, HARTMANN3_OPTIMUM, MAX_EPOCHS, hartmann3
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


def test_learning_curves_end_at_their_final_value():
    assert hartmann3(np.array([0.114614, 0.555649, 0.852547])) == pytest.approx(HARTMANN3_OPTIMUM, abs=1e-5)
    point = {"x0": 0.114614, "x1": 0.555649, "x2": 0.852547}
    epoch = CURVE_PROBLEMS["hartmann3-curves"].start(point, 7)
    values = [epoch(t) for t in range(1, MAX_EPOCHS + 1)]
    assert values[-1] == pytest.approx(HARTMANN3_OPTIMUM, abs=1e-5) and values[0] > values[-1] + 1
    sgd = CURVE_PROBLEMS["sgd-digits"].start({"alpha": 1e-4, "eta0": 1e-2, "learning_rate": "constant",
                                              "penalty": "l2"}, 0)
    assert 0 <= sgd(1) < 0.5


def test_early_stopping_workers_spend_the_budget_and_free_stopped_trials_at_once():
    budget = 2 * 8 * MAX_EPOCHS
    plain = simulate_stopping("hartmann3-curves", "kubetune random, no stopping", seed=0, budget=budget)
    assert (plain["started"], plain["completed"], plain["stopped"]) == (16, 16, 0)
    asha = simulate_stopping("hartmann3-curves", "kubetune random + asha", seed=0, budget=budget)
    assert asha["stopped"] > asha["completed"] and asha["started"] - asha["stopped"] - asha["completed"] <= 8
    for run in (plain, asha):
        steps = [h[0] for h in run["hits"]]
        bests = [h[2] for h in run["hits"]]
        assert steps == sorted(steps) and steps[-1] <= budget and bests == sorted(bests, reverse=True)
        assert run["best"] == bests[-1]
    assert plain["hits"][0][:2] == (MAX_EPOCHS * 8 - 7, MAX_EPOCHS)  # the first trial completes at epoch 27


def test_early_stopping_benchmark_quick_path(tmp_path):
    pytest.importorskip("optuna")
    pytest.importorskip("ray.tune")
    pytest.importorskip("matplotlib")
    from benchmarks.early_stopping_report import report
    from benchmarks.stopping_methods import STOPPING_METHODS

    methods = [m for m in STOPPING_METHODS if " gp " not in m]
    budget = 10 * MAX_EPOCHS  # 8 workers without stopping complete their first trials at 216
    results = run_group(("hartmann3-curves", 0, budget, methods)) + run_group(("hartmann3-curves", 1, budget, methods))
    assert {r["method"] for r in results} == set(methods)
    assert all(r["stopped"] > 0 for r in results if "no stopping" not in r["method"] and "Median" not in r["method"]
               and "median" not in r["method"])
    raw = tmp_path / "early_stopping.json"
    raw.write_text(json.dumps(results))
    outcome = report(raw, tmp_path, budget, quick=True)
    text = (tmp_path / "early_stopping.md").read_text()
    assert "## Target" in text and "kubetune random + asha" in text and (tmp_path / "early_stopping.png").exists()
    assert isinstance(outcome["target_met"], bool)


def test_ray_backend_benchmark_quick_path(ray_cluster):
    """Each system of the Ray benchmark runs a few trials on the test Ray cluster, as the benchmark runs them
    (a process per system), and the report judges the targets only at the size they are set for."""
    pytest.importorskip("ray.tune")
    from ray_cluster import RAY_ENV

    from benchmarks.ray_backend import SYSTEMS, report

    results = {}
    for system in SYSTEMS:
        shown = subprocess.run([sys.executable, "-m", "benchmarks.ray_backend", "--one", system, "--trials", "6",
                                "--parallelism", "2", "--address", ray_cluster.address], capture_output=True,
                               text=True, timeout=300, env=RAY_ENV, cwd=Path(__file__).parent.parent)
        assert shown.returncode == 0, shown.stderr[-3000:]
        results[system] = json.loads(shown.stdout.strip().splitlines()[-1])
        assert results[system]["trials"] == 6 and results[system]["wall_s"] > 0, results[system]
        sampled = [ended for ended, _ in results[system]["memory_mib"]]
        assert sampled == sorted(sampled) and all(0 < ended <= 6 for ended in sampled), results[system]
    text = report(results, 6, 2)
    assert all(f"| {system} | 6 |" in text for system in SYSTEMS)
    assert "Time per trial within 2x of Ray Tune's: **" in text
    assert "not judged (this run had 6 trials)" in text


def test_operator_scale_benchmark_quick_path():
    """The scale benchmark's stress scenario at a tenth of its size runs end to end on the real control plane
    (the operator as the chart's ServiceAccount, the test kubelet's fake nodes), so the benchmark keeps up with
    what the operator needs to start."""
    from benchmarks.operator_scale import run_scenario, scenarios

    instant = next(s for s in scenarios(10) if s.name == "instant")
    result = run_scenario(instant)
    assert result.trials == instant.trials == 500, result
    assert not result.kubelet_errors and result.operator_throttled == 0, result
    assert result.trials_per_second > 0 and result.operator_writes_per_trial >= 3, result


def test_operator_scale_benchmark_runs_gp_on_the_six_parameter_objective(tmp_path):
    """A small one-experiment scenario with gp, as the headline scenarios run it (the Hartmann-6 objective from
    the pods' KUBETUNE_PARAMS, the operator's /metrics read): every trial ends with a value, the suggestion
    calls, the passes and the event loop's lag are recorded, and the report judges the targets it can."""
    from benchmarks.operator_scale import Durations, Scenario, run_scenario
    from benchmarks.operator_scale_report import write_report

    scenario = Scenario("one-experiment", "one experiment, 20 parallel, ~2 s trials",
                        [("small", 20, 60)], Durations(low=1.0, high=3.0), timeout=300, algorithms=("gp",))
    result = run_scenario(scenario, "gp")
    assert result.trials == 60 and not result.kubelet_errors, result
    assert -3.33 < result.best < 0, result  # Hartmann-6's values
    assert result.suggestions == 60 and 1 <= result.suggestion_calls <= 60 and result.suggestion_seconds > 0
    assert result.passes >= result.suggestion_calls and result.lag["ticks"] > 0
    assert result.usage["suggestion worker"]["rss_mib"] > 0 and result.usage["operator"]["cpu_seconds"] > 0
    out = tmp_path / "operator_scale.md"
    write_report(out, [{**asdict(result), "quick": True, "date": "2026-01-01"}])
    text = out.read_text()
    calls = f"{result.suggestion_calls:.0f} | {result.suggestions / result.suggestion_calls:.1f} |"
    assert f"| one experiment, 20 parallel, ~2 s trials (quick) | gp | {calls}" in text  # the suggestion table
    assert "refill p95 under 1 s at 2,000 parallel ~60-s trials with gp" in text


def test_operator_profile_summary_attributes_samples_to_kubetune_work_and_leaves_the_worker_apart(tmp_path):
    from benchmarks.operator_profile import summarize

    operator = 'process 1:"python -m kubetune.cli operator"'
    worker = 'process 2:"python -m kubetune.operator.suggestion_worker"'
    raw = tmp_path / "profile.txt"
    raw.write_text("\n".join([
        f"{operator};run_operator (kubetune/operator/startup.py);_run_once (asyncio/base_events.py);"
        "Reconciler._settle (kubetune/operator/reconcile.py);phase (kubetune/operator/view.py) 3",
        f"{operator};run_operator (kubetune/operator/startup.py);_run_once (asyncio/base_events.py);"
        "process_resource_event (kopf/_core/reactor/processing.py);raw_decode (json/decoder.py) 1",
        f"{operator};{worker};main (kubetune/operator/suggestion_worker.py);ask (kubetune/core/engine/optimizer.py) 4",
    ]) + "\n")
    summary = summarize(raw)
    assert summary["operator"]["samples"] == 4 and summary["suggestion worker"]["samples"] == 4
    assert summary["operator"]["kubetune"] == [("phase (kubetune/operator/view.py)", 0.75),
                                               ("(no kubetune frame) kopf", 0.25)]
    assert dict(summary["operator"]["package"]) == {"kubetune": 0.75, "json": 0.25}
