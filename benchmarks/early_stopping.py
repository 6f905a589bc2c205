"""Early stopping with asynchronous workers: training steps and simulated time to reach a regret, kubetune's
rules (none, median, ASHA) against Optuna's pruners and Ray Tune's ASHA scheduler.

Each run has 8 simulated workers and a fixed budget of training steps (epochs). Every trial reports after
each epoch (one epoch costs one unit of simulated time); a trial a rule stops frees its worker at once and
the worker asks for a new point, with no barrier; a trial that reaches the last epoch completes. The run ends
when the budget is spent. What a run has found at any moment is the best final (last-epoch) value of the
trials that completed: a stopped trial's early values are not a result. The regret to reach is what random
search without stopping reaches with its whole budget (the median over seeds of its final regret); each run
records the steps and the time at which it first came within it. How well early epochs predict the last on
each problem (:func:`fidelity`) goes to ``early_stopping_fidelity.json`` and explains the results.

Runs are grouped by (problem, seed) so that one process runs every method on the same seed and shares the
learning curves it has computed (kubetune's random-search rows and Ray's draw the same points for a seed).

    python -m benchmarks.early_stopping [--seeds 20] [--budget-trials 50] [--jobs 2] [--methods ...]
    python -m benchmarks.early_stopping --quick      # a small smoke run, written to a temporary folder
    python -m benchmarks.early_stopping --report-only
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from benchmarks.learning_curves import CURVE_PROBLEMS, MAX_EPOCHS  # noqa: E402
from benchmarks.stopping_methods import STOPPING_METHODS  # noqa: E402

RESULTS = Path(__file__).parent / "results"
WORKERS = 8
_CURVES: dict[tuple, list] = {}  # (problem, stream, params) -> [the epoch function, the values so far]


def curve(problem: str, params: dict[str, Any], stream: int) -> Callable[[int], float]:
    """The trial's learning curve, computed once per (problem, point, stream) in this process."""
    key = (problem, stream, tuple(sorted(params.items())))
    if key not in _CURVES:
        _CURVES[key] = [CURVE_PROBLEMS[problem].start(params, stream), []]
    entry = _CURVES[key]

    def value(epoch: int) -> float:
        while len(entry[1]) < epoch:
            entry[1].append(entry[0](len(entry[1]) + 1))
        return float(entry[1][epoch - 1])

    return value


@dataclass
class _Running:
    token: Any
    value: Callable[[int], float]
    epoch: int = 0


def simulate(problem: str, method_name: str, seed: int, budget: int, workers: int = WORKERS) -> dict:
    """One run of ``budget`` training steps; ``hits`` lists (steps, time, best) whenever the best completed
    trial improves."""
    method = STOPPING_METHODS[method_name](CURVE_PROBLEMS[problem].parameters, seed)
    slots: list[_Running | None] = [None] * workers
    steps = clock = started = stopped = completed = 0
    best = float("inf")
    hits: list[tuple[int, int, float]] = []
    wall = time.perf_counter()
    while steps < budget:
        for w, slot in enumerate(slots):
            if slot is None:
                token, params = method.ask()
                slots[w] = _Running(token, curve(problem, params, seed * 100_003 + started))
                started += 1
        clock += 1
        for w, run in enumerate(slots):
            if steps >= budget:
                break
            if run is None:
                continue
            run.epoch += 1
            steps += 1
            value = run.value(run.epoch)
            if run.epoch == MAX_EPOCHS:
                method.complete(run.token, value)
                completed += 1
                slots[w] = None
                if value < best:
                    best = value
                    hits.append((steps, clock, value))
            elif method.report(run.token, run.epoch, value):
                stopped += 1
                slots[w] = None
    return {"problem": problem, "method": method_name, "seed": seed, "budget": budget, "hits": hits,
            "best": best, "started": started, "stopped": stopped, "completed": completed,
            "wall": time.perf_counter() - wall}


def fidelity(problem: str, configs: int = 200, repeats: int = 5, seed: int = 123) -> dict:
    """How well early epochs predict the last on ``problem``, for ``configs`` random points: Spearman's rank
    correlation of the value at each rung (1, 3, 9) with the final value, over every point and over the best
    quarter; the share of the best tenth (by final value) that is in the top third at each rung (what a rung
    of ASHA keeps); and the noise of the final value itself (its standard deviation over ``repeats`` streams,
    the median over the best ten points)."""
    import numpy as np
    from scipy.stats import spearmanr

    from kubetune import Optimizer

    spec = CURVE_PROBLEMS[problem]
    points = [s.params for s in Optimizer(spec.parameters, algorithm="random", seed=seed).ask(configs)]
    values = np.array([[epoch(t) for t in range(1, MAX_EPOCHS + 1)]
                       for epoch in (spec.start(p, 10_000 + i) for i, p in enumerate(points))])
    final = values[:, -1]
    best_quarter, best_tenth = final <= np.quantile(final, 0.25), final <= np.quantile(final, 0.1)
    rungs = {}
    for rung in (1, 3, 9):
        early = values[:, rung - 1]
        rungs[str(rung)] = {
            "rho": float(spearmanr(early, final).statistic),
            "rho_best_quarter": float(spearmanr(early[best_quarter], final[best_quarter]).statistic),
            "best_tenth_kept": float(np.mean(early[best_tenth] <= np.quantile(early, 1 / 3))),
        }
    noise = []
    for index in np.argsort(final)[:10]:
        finals = [[spec.start(points[index], 20_000 + 100 * index + r)(t) for t in range(1, MAX_EPOCHS + 1)][-1]
                  for r in range(repeats)]
        noise.append(float(np.std(finals)))
    return {"problem": problem, "configs": configs, "rungs": rungs, "final_noise": float(np.median(noise))}


def run_group(task: tuple[str, int, int, list[str]]) -> list[dict]:
    """Every method on one (problem, seed), sharing the learning curves computed along the way."""
    problem, seed, budget, methods = task
    _CURVES.clear()
    results = [simulate(problem, method, seed, budget) for method in methods]
    _CURVES.clear()
    return results


def run(tasks: list[tuple], jobs: int, raw: Path) -> list[dict]:
    done: list[dict] = json.loads(raw.read_text()) if raw.exists() else []
    have = {(r["problem"], r["method"], r["seed"], r["budget"]) for r in done}
    todo = []
    for problem, seed, budget, methods in tasks:
        missing = [m for m in methods if (problem, m, seed, budget) not in have]
        if missing:
            todo.append((problem, seed, budget, missing))
    print(f"{len(todo)} (problem, seed) groups to run ({raw})", flush=True)
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        for results in pool.imap_unordered(run_group, todo):
            done += results
            raw.write_text(json.dumps(done))
            for r in results:
                print(f"{r['problem']:>16} seed={r['seed']:<3} {r['method']:<42} best={r['best']:.4g} "
                      f"trials={r['started']:<4} stopped={r['stopped']:<4} wall={r['wall']:.1f}s", flush=True)
    return done


def main() -> None:
    from benchmarks.early_stopping_report import report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budget-trials", type=int, default=50,
                        help="the budget in full trials: budget-trials x 27 training steps")
    parser.add_argument("--methods", nargs="*", default=list(STOPPING_METHODS))
    parser.add_argument("--problems", nargs="*", default=list(CURVE_PROBLEMS))
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, help="where results go (default benchmarks/results; a temporary "
                        "folder with --quick)")
    parser.add_argument("--quick", action="store_true", help="2 seeds, a 12-trial budget, no Gaussian process")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.budget_trials = 2, 12
        args.methods = [m for m in args.methods if " gp " not in m]
        args.out = args.out or Path(tempfile.mkdtemp(prefix="early_stopping-"))
    out = args.out or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    raw = out / "early_stopping.json"
    budget = args.budget_trials * MAX_EPOCHS
    if not args.report_only:
        tasks = [(problem, seed, budget, args.methods) for seed in range(args.seeds) for problem in args.problems]
        run(tasks, args.jobs, raw)
    fidelity_raw = out / "early_stopping_fidelity.json"
    if not args.report_only or not fidelity_raw.exists():
        configs = 30 if args.quick else 200
        fidelity_raw.write_text(json.dumps([fidelity(p, configs) for p in args.problems]))
    report(raw, out, budget, quick=args.quick)


if __name__ == "__main__":
    main()
