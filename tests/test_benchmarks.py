"""The benchmark harness itself: problems have the optima they claim, the asynchronous simulation keeps q
trials in flight and reports a monotone best-so-far curve, the pass pattern asks once per pass for at most a
batch and counts every evaluation, the tabular problem serves rows of its table, and the early-stopping
benchmark's simulated workers spend exactly their budget of training steps and report from its results; the
Ray benchmark runs each of its systems on a real Ray cluster."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from benchmarks import tabular
from benchmarks.early_stopping import run_group
from benchmarks.early_stopping import simulate as simulate_stopping
from benchmarks.gpu_packing import manifest, most_at_once
from benchmarks.learning_curves import CURVE_PROBLEMS, HARTMANN3_OPTIMUM, MAX_EPOCHS, hartmann3
from benchmarks.methods import GP_MODELS, METHODS, refusal
from benchmarks.passes import Case, checkpoints, pass_interval, simulate_passes
from benchmarks.problems import PROBLEMS, ackley, branin, hartmann6, six_hump_camel
from benchmarks.quality import simulate
from kubetune import Optimizer
from kubetune.core.manifest import load_experiment


def test_known_optima():
    assert branin({"x1": math.pi, "x2": 2.275}) == pytest.approx(PROBLEMS["branin"].optimum, abs=1e-6)
    assert six_hump_camel({"x": 0.0898, "y": -0.7126}) == pytest.approx(PROBLEMS["six-hump-camel"].optimum, abs=1e-4)
    point = [0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]
    assert hartmann6({f"x{i}": v for i, v in enumerate(point)}) == pytest.approx(PROBLEMS["hartmann6"].optimum,
                                                                                 abs=1e-4)
    assert ackley({f"x{i}": 0.0 for i in range(20)}) == pytest.approx(PROBLEMS["ackley20"].optimum, abs=1e-12)
    assert ackley({f"x{i}": 1.0 for i in range(20)}) > 3


@pytest.mark.parametrize("method", ["kubetune gp", "random", "kubetune tpe", "kubetune cmaes"])
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


def test_suggestion_cost_at_scale_follows_the_operators_pass_pattern():
    from benchmarks.suggest_scale import ScaleCase, run

    result = run(ScaleCase(3, 40, 60), "kubetune gp (scalable)", told=30, single=1, trace=True)
    assert result["told"] >= 30 and result["passes"] >= 1 and result["max_batch"] <= 40
    assert result["per_trial_cpu"] > 0 and result["single_cpu_max"] > 0 and result["peak_mib"] >= result["held_mib"]


def test_many_workers_simulation_keeps_the_workers_busy_until_the_budget():
    from benchmarks.many_workers import simulate

    result = simulate("scalable", workers=20, seed=0, rounds=2)
    asked = [a for _, a, _ in result["curve"]]
    best = [b for _, _, b in result["curve"]]
    assert asked[-1] == 40 and asked == sorted(asked)
    assert best == sorted(best, reverse=True) and result["regret"] >= 0


def test_pass_pattern_quick_path(tmp_path):
    """A tiny case of the operator's pass pattern end to end (40 workers, 100 evaluations, batches capped at 8,
    kubetune random and gp, through the benchmark's process pool), then the report made from its results file."""
    pytest.importorskip("matplotlib")
    from benchmarks.quality_scale import run
    from benchmarks.quality_scale_report import report

    raw = tmp_path / "quality_scale.json"
    run([Case("hartmann6", method, 40, 8, 0, 100) for method in ("random", "kubetune gp")], jobs=1, raw=raw)
    results = json.loads(raw.read_text())
    assert sorted(r["method"] for r in results) == ["kubetune gp", "random"]
    for r in results:
        sizes = {int(size): count for size, count in r["batch_sizes"].items()}
        assert r["evaluations"] == 100 and sum(size * count for size, count in sizes.items()) == 100
        assert max(sizes) == 8 and sizes[8] > sum(sizes.values()) / 2  # capped, and the cap binds on most asks
        assert r["interval"] == pytest.approx(pass_interval(40, 8)) and r["passes"] > 100 // 8
        assert 0 < r["occupancy"] <= 1
        assert r["checkpoints"] == checkpoints(40, 100) and {40, 80, 100} <= set(r["checkpoints"])
        assert len(r["best"]) == len(r["time"]) == len(r["checkpoints"])
        assert r["best"] == sorted(r["best"], reverse=True) and r["time"] == sorted(r["time"])
    # the passes' asks depend on the trial durations only, which every method shares at a seed
    assert results[0]["batch_sizes"] == results[1]["batch_sizes"]
    text = report(raw, tmp_path)
    for section in ("## Median simple regret", "## (a)", "## (b)", "## (c)", "## The batches the passes asked for"):
        assert section in text
    assert "| 40 | 8 | final |" in text and (tmp_path / "quality_scale.png").exists()


def test_a_pass_asks_once_for_every_free_slot_up_to_the_batch():
    """Every ask of a run is one call (the method sees no other ask) of at most ``batch`` points, never more than
    the slots that are free."""
    calls: list[int] = []

    class Recording:
        def __init__(self, parameters, seed):
            from benchmarks.methods import KubetuneMethod

            self.inner = KubetuneMethod(parameters, seed, "random")

        def ask_batch(self, n):
            calls.append(n)
            return self.inner.ask_batch(n)

        def tell(self, token, params, value):
            self.inner.tell(token, params, value)

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(METHODS, "recording", Recording)
        result = simulate_passes(Case("branin", "recording", 20, 6, 1, 50))
    assert calls[:3] == [6, 6, 6] and sum(calls) == 50 and max(calls) == 6
    assert result["batch_sizes"] == {str(n): calls.count(n) for n in sorted(set(calls))}


def test_methods_with_settings_kubetune_refuses_are_skipped_in_one_line(capsys):
    from benchmarks.quality_scale import runnable

    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(GP_MODELS, "kubetune gp (no such)", {"noSuchSetting": 1})
        assert refusal("kubetune gp (no such)").startswith("skipping kubetune gp (no such): the installed kubetune "
                                                             "refuses algorithm.settings")
        assert runnable(["random", "kubetune gp (no such)"]) == ["random"]
    shown = capsys.readouterr().out.strip().splitlines()
    assert len(shown) == 1 and "noSuchSetting" in shown[0]
    assert refusal("random") is None


def test_the_scale_benchmark_refuses_bad_options_naming_them(capsys):
    from benchmarks.quality_scale import _parse

    for argv, named in ((["--methods", "nope"], "--methods"), (["--problems", "nope"], "--problems"),
                        (["--batch", "0"], "--batch"), (["--seeds", "500:x"], "--seeds"), (["--jobs", "0"], "--jobs")):
        with pytest.raises(SystemExit) as exit_:
            _parse(argv)
        assert exit_.value.code == 2 and named in capsys.readouterr().err


def test_the_tabular_problem_serves_exactly_the_rows_of_its_table():
    problem = PROBLEMS["svc-tabular"]
    rows = tabular.table()
    assert len(rows) == len(tabular.grid()) == 30_420
    assert problem.optimum == min(rows.values()) and 0 < problem.optimum < 0.05
    suggestions = Optimizer(problem.parameters, algorithm="sobol", seed=0).ask(200)
    values = [problem.objective(s.params) for s in suggestions]
    assert all(0 <= v <= 1 for v in values) and len(set(values)) > 10
    with pytest.raises(KeyError, match="not a row"):
        problem.objective({**suggestions[0].params, "C": 0.5})


def test_optuna_asks_discrete_values_by_their_order():
    pytest.importorskip("optuna")
    from benchmarks.methods import OptunaMethod

    method = OptunaMethod(PROBLEMS["svc-tabular"].parameters, 0, "tpe")
    batch = method.ask_batch(20)
    assert len(batch) == 20
    for token, params in batch:
        assert isinstance(PROBLEMS["svc-tabular"].objective(params), float)
        method.tell(token, params, PROBLEMS["svc-tabular"].objective(params))
    assert method.distributions["C"].low == 0 and method.distributions["C"].high == 12


def test_replace_runs_the_cases_asked_for_again_and_keeps_the_others(tmp_path):
    from benchmarks.quality_scale import run

    raw = tmp_path / "quality_scale.json"
    asked = Case("branin", "random", 12, 4, 0, 30)
    stale = {"problem": "branin", "method": "random", "workers": 12, "batch": 4, "seed": 0, "stale": True}
    kept = {"problem": "branin", "method": "random", "workers": 12, "batch": 6, "seed": 0, "kept": True}
    raw.write_text(json.dumps([stale, kept]))
    run([asked], jobs=1, raw=raw)
    assert json.loads(raw.read_text()) == [stale, kept]  # already there: not run again
    run([asked], jobs=1, raw=raw, replace=True)
    results = json.loads(raw.read_text())
    assert kept in results and stale not in results and len(results) == 2
    assert next(r for r in results if r["batch"] == 4)["evaluations"] == asked.budget


def test_regrets_closer_than_the_problems_resolution_are_the_same_result():
    from benchmarks.quality_scale_report import order, ratio

    resolution = PROBLEMS["svc-tabular"].resolution
    assert ratio(0.0, 0.0) == 1.0 and ratio(1.0, 0.0) == math.inf and ratio(0.3, 0.1) == pytest.approx(3.0)
    assert ratio(1.55e-5, 0.0, resolution) == 1.0  # the two best rows misclassify as many samples
    assert ratio(2 / 569, 0.0, resolution) == pytest.approx(4.0)
    tied = {"1x": 0.004, "2x": 0.002, "final": 0.0}
    assert order(tied, {**tied, "final": 1.55e-5}, resolution) == 0
    assert order(tied, {**tied, "final": 1.55e-5}) == -1
    assert order(tied, {**tied, "1x": 0.001}, resolution) == 1  # equal finals: the earlier checkpoints decide


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
