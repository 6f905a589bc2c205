"""Search quality with hundreds to thousands of asynchronous workers: kubetune ``gp`` with its scalable model,
its exact model and the default (``auto``), against random search and Optuna TPE (``constant_liar=True``).

The operator's pattern is simulated: ``workers`` trials start at once; every simulated second the trials
that ended are told and as many new ones asked for in one call (Optuna's one ``study.ask`` at a time);
trial durations are lognormal (median 10 s, sigma 0.3), so a pass asks for about a tenth of the workers.
A run ends when ``rounds * workers`` trials have been asked for and all of them have reported. Regret is the
best value found minus the known optimum of Hartmann-6 (``problems.PROBLEMS``).

Results go to ``results/many_workers.jsonl`` (one line per run, with the best value after every pass), the
table to ``results/many_workers.md``. Runs already in the file are not run again.

    python -m benchmarks.many_workers --workers 500 --rounds 8 --seeds 6 --methods scalable exact auto
    python -m benchmarks.many_workers --report-only
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import heapq  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.problems import PROBLEMS  # noqa: E402
from kubetune import Optimizer  # noqa: E402

RESULTS = Path(__file__).parent / "results"
RAW = RESULTS / "many_workers.jsonl"
MEDIAN_DURATION = 10.0
SIGMA = 0.3
LEVELS = (1e-2, 1e-4, 1e-6)
# method -> gp settings (None: not kubetune's gp)
METHODS: dict[str, dict | None] = {"scalable": {"model": "scalable"}, "exact": {"model": "exact"}, "auto": {},
                                   "random": None, "Optuna TPE (constant liar)": None}


def _kubetune(method: str, parameters: list[dict], seed: int) -> tuple[Callable, Callable]:
    settings = METHODS[method]
    algorithm = "random" if settings is None else "gp"
    optimizer = Optimizer(parameters, algorithm=algorithm, seed=seed, settings=settings)
    return (lambda n: [(s.id, s.params) for s in optimizer.ask(n)]), optimizer.tell


def _optuna_tpe(parameters: list[dict], seed: int) -> tuple[Callable, Callable]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True))
    distributions = {p["name"]: optuna.distributions.FloatDistribution(p["min"], p["max"]) for p in parameters}

    def ask(n: int) -> list[tuple[Any, dict]]:
        return [(trial, trial.params) for trial in (study.ask(distributions) for _ in range(n))]

    return ask, study.tell


def simulate(method: str, workers: int, seed: int, rounds: float, problem: str = "hartmann6") -> dict:
    spec = PROBLEMS[problem]
    rng = np.random.default_rng(1000 + seed)
    if method == "Optuna TPE (constant liar)":
        ask, tell = _optuna_tpe(spec.parameters, seed)
    else:
        ask, tell = _kubetune(method, spec.parameters, seed)
    budget = int(rounds * workers)
    running: list[tuple[float, int, Any, dict]] = []
    asked, spent, slowest = 0, 0.0, 0.0

    def launch(now: float, count: int) -> None:
        nonlocal asked, spent, slowest
        count = min(count, budget - asked)
        if count <= 0:
            return
        started = time.process_time()
        suggestions = ask(count)
        took = time.process_time() - started
        spent, slowest = spent + took, max(slowest, took)
        for token, params in suggestions:
            heapq.heappush(running, (now + rng.lognormal(np.log(MEDIAN_DURATION), SIGMA), asked, token, params))
            asked += 1

    launch(0.0, workers)
    best, curve, now = np.inf, [], 0
    while running:
        now += 1
        ended = []
        while running and running[0][0] <= now:
            ended.append(heapq.heappop(running))
        started = time.process_time()
        for _, _, token, params in ended:
            value = spec.objective(params)
            best = min(best, value)
            tell(token, value)
        spent += time.process_time() - started
        if ended:
            launch(now, len(ended))
            curve.append((now, asked, best))
    return {"problem": problem, "method": method, "workers": workers, "seed": seed, "rounds": rounds,
            "regret": best - spec.optimum, "curve": curve, "cpu_seconds": spent, "slowest_ask_cpu": slowest}


def report(raw: Path) -> list[str]:
    runs = [json.loads(line) for line in raw.read_text().splitlines()]
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["problem"], r["workers"], r["rounds"], r["method"]), []).append(r)
    lines = ["| problem | workers | evaluations | method | seeds | median regret [quartiles] | evaluations to "
             + " / ".join(f"{level:g}" for level in LEVELS) + " (median) | CPU s in ask+tell per run | slowest ask, "
             "CPU s |", "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    order = list(METHODS)
    for (problem, workers, rounds, method), group in sorted(
            groups.items(), key=lambda item: (*item[0][:3], order.index(item[0][3]) if item[0][3] in order else 99)):
        regrets = np.array([r["regret"] for r in group])
        optimum = PROBLEMS[problem].optimum
        hits = [np.median([_first(r, level, optimum) for r in group]) for level in LEVELS]
        lines.append(
            f"| {problem} | {workers:,} | {int(rounds * workers):,} | {method} | {len(group)} | "
            f"{np.median(regrets):.2g} [{np.quantile(regrets, 0.25):.2g}, {np.quantile(regrets, 0.75):.2g}] | "
            + " / ".join("never" if not np.isfinite(h) else f"{h:,.0f}" for h in hits)
            + f" | {np.mean([r['cpu_seconds'] for r in group]):.0f} | "
            f"{max(r['slowest_ask_cpu'] for r in group):.2f} |")
    return lines


def _first(run: dict, level: float, optimum: float) -> float:
    """Evaluations asked for when the best value first came within ``level`` of the optimum."""
    return next((asked for _, asked, best in run["curve"] if best - optimum <= level), float("inf"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="*", default=[500])
    parser.add_argument("--rounds", type=float, default=8)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--methods", nargs="*", default=["scalable", "exact", "auto", "random"])
    parser.add_argument("--raw", type=Path, default=RAW)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    if not args.report_only:
        args.raw.parent.mkdir(parents=True, exist_ok=True)
        done = {(r["method"], r["workers"], r["seed"], r["rounds"]) for r in
                map(json.loads, args.raw.read_text().splitlines())} if args.raw.exists() else set()
        for workers in args.workers:
            for seed in range(args.seeds):
                for method in args.methods:
                    if (method, workers, seed, args.rounds) in done:
                        continue
                    result = simulate(method, workers, seed, args.rounds)
                    print(f"{method:>28} workers={workers:<5} seed={seed} regret={result['regret']:.3g} "
                          f"cpu={result['cpu_seconds']:.0f}s", flush=True)
                    with args.raw.open("a") as out:
                        out.write(json.dumps(result) + "\n")
    lines = ["# Search quality with hundreds to thousands of workers", "",
             f"`python -m benchmarks.many_workers`, {time.strftime('%Y-%m-%d')}, {platform.machine()}, "
             f"{os.cpu_count()} cores (times are CPU seconds of one BLAS thread). "
             + __doc__.split("\n\n")[1].replace("\n", " "), "", *report(args.raw), "",
             "`auto` is the exact model below 512 trials in flight and the scalable one from there: with 500 "
             "workers its runs are the exact model's, with 2,000 they would be the scalable model's.", ""]
    (RESULTS / "many_workers.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
