"""Suggestion latency: kubetune's ``gp`` against scikit-optimize (``cl_min``), Optuna's GPSampler and Optuna's
TPESampler with ``constant_liar=True``, on the same machine in one run.

Each case loads ``n`` completed trials (a noisy quadratic in the unit cube) and ``pending`` running trials
into a fresh optimizer, as a restarted runner or operator would, and asks for ``q`` suggestions. kubetune is
measured cold (the first ask includes the hyperparameter fit and factorisation) and warm (a second ask).
Peers that would take minutes are measured on fewer suggestions and their total for ``q`` is extrapolated
from the time per suggestion; the table says which. The steady-state row is what the operator does each
time a trial ends: one ``tell`` and one ``ask(1)``.

The cases with thousands of trials in flight (2,000 and 10,000, the operator's pass pattern, kubetune's
scalable and exact models beside Optuna TPE) are :mod:`benchmarks.suggest_scale`'s; their table is part of
the same report. The report records the machine's load average before and after, since other work may
share it: CPU seconds (one BLAS thread) are the figures to compare, wall seconds show what sharing cost.

    python -m benchmarks.suggest [--quick] [--scale-only | --no-scale] [--out benchmarks/results/suggest.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import suggest_scale
from kubetune import Optimizer

warnings.filterwarnings("ignore")


@dataclass(frozen=True)
class Case:
    dims: int
    completed: int
    pending: int
    q: int
    peers: bool = True

    @property
    def label(self) -> str:
        return f"d={self.dims}, n={self.completed}, pending={self.pending}, q={self.q}"


CASES = [
    Case(6, 50, 0, 8),
    Case(6, 500, 64, 64),
    Case(10, 2000, 1000, 256),
    Case(10, 10000, 5000, 100, peers=False),
]
QUICK = [Case(6, 50, 0, 8), Case(6, 500, 64, 64)]
# At most this many suggestions are measured for a peer; its total for q is extrapolated from them.
PEER_MEASURED = {"scikit-optimize cl_min": 4, "Optuna GPSampler": 3, "Optuna TPE (constant liar)": 32}
# scikit-optimize refits its GP for every lie, O(n^3) each: at n=500 one suggestion already takes about 30 s.
PEER_MAX_COMPLETED = {"scikit-optimize cl_min": 500, "Optuna GPSampler": 2000, "Optuna TPE (constant liar)": 10**9}


def history(case: Case, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.random((case.completed, case.dims))
    y = np.sum((X - 0.3) ** 2, axis=1) + 0.01 * rng.normal(size=case.completed)
    return X, y, rng.random((case.pending, case.dims))


def names(dims: int) -> list[str]:
    return [f"x{i}" for i in range(dims)]


# -- kubetune -------------------------------------------------------------------------------------------------
def kubetune_optimizer(case: Case) -> Optimizer:
    X, y, P = history(case)
    keys = names(case.dims)
    trials = [{"id": str(i), "params": dict(zip(keys, map(float, x), strict=True)), "state": "Succeeded",
               "value": float(v)} for i, (x, v) in enumerate(zip(X, y, strict=True))]
    trials += [{"id": str(len(X) + i), "params": dict(zip(keys, map(float, x), strict=True)), "state": "Running"}
               for i, x in enumerate(P)]
    parameters = [{"name": k, "type": "double", "min": 0, "max": 1} for k in keys]
    return Optimizer(parameters, direction="minimize", algorithm="gp", seed=0, trials=trials)


def time_kubetune(case: Case) -> dict:
    opt = kubetune_optimizer(case)
    started = time.perf_counter()
    opt.ask(case.q)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    opt.ask(case.q)
    warm = time.perf_counter() - started
    return {"cold": cold, "warm": warm}


def time_steady_state(case: Case, rounds: int) -> float:
    """Mean seconds of one tell followed by ask(1), pending trials finishing oldest first."""
    opt = kubetune_optimizer(case)
    opt.ask(1)
    started = time.perf_counter()
    for _ in range(rounds):
        trial = opt.pending[0]
        x = np.array(list(opt.params_of(trial).values()))
        opt.tell(trial, float(np.sum((x - 0.3) ** 2)))
        opt.ask(1)
    return (time.perf_counter() - started) / rounds


# -- peers ----------------------------------------------------------------------------------------------------
def time_skopt(case: Case, measured: int) -> float:
    from skopt import Optimizer as SkoptOptimizer

    X, y, P = history(case)
    opt = SkoptOptimizer([(0.0, 1.0)] * case.dims, base_estimator="GP", random_state=0, n_initial_points=1)
    opt.tell(X.tolist(), y.tolist())
    if len(P):  # skopt has no notion of trials still running; the fairest is to tell them as lies
        opt.tell(P.tolist(), [float(np.min(y))] * len(P))
    started = time.perf_counter()
    opt.ask(n_points=measured, strategy="cl_min")
    return (time.perf_counter() - started) / measured


def optuna_study(case: Case, sampler):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    X, y, P = history(case)
    keys = names(case.dims)
    distributions = {k: optuna.distributions.FloatDistribution(0.0, 1.0) for k in keys}
    study = optuna.create_study(sampler=sampler, direction="minimize")
    study.add_trials([
        optuna.trial.create_trial(params=dict(zip(keys, map(float, x), strict=True)), distributions=distributions,
                                  value=float(v))
        for x, v in zip(X, y, strict=True)
    ])
    # running trials, as an Optuna user with parallel workers has them
    study.add_trials([
        optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, distributions=distributions,
                                  params=dict(zip(keys, map(float, x), strict=True)))
        for x in P
    ])
    return study, distributions


def time_optuna(case: Case, sampler, measured: int) -> float:
    study, distributions = optuna_study(case, sampler)
    started = time.perf_counter()
    for _ in range(measured):
        study.ask(distributions)  # each stays RUNNING, so the next one sees it (constant liar for TPE)
    return (time.perf_counter() - started) / measured


def peers(case: Case) -> dict[str, tuple[float, int]]:
    """Per-suggestion seconds and how many suggestions were measured, for each peer that can run."""
    import optuna

    samplers = {
        "scikit-optimize cl_min": lambda m: time_skopt(case, m),
        "Optuna GPSampler": lambda m: time_optuna(case, optuna.samplers.GPSampler(seed=0), m),
        "Optuna TPE (constant liar)": lambda m: time_optuna(
            case, optuna.samplers.TPESampler(seed=0, constant_liar=True, n_startup_trials=1), m),
    }
    results = {}
    for name, run in samplers.items():
        if case.completed > PEER_MAX_COMPLETED[name]:
            continue
        measured = min(case.q, PEER_MEASURED[name])
        results[name] = (run(measured), measured)
    return results


def warm_up() -> None:
    """One tiny run of every method first, so that one-time imports and table loading are not timed."""
    tiny = Case(2, 12, 2, 2)
    time_kubetune(tiny)
    peers(tiny)


def peak_rss_of(case: Case) -> tuple[float, float]:
    """Runs one cold ask in a fresh process; returns (seconds, peak RSS in MiB)."""
    # VmHWM, not getrusage: Linux carries a parent's peak RSS over fork and exec into the child's ru_maxrss.
    code = (
        "import json, re; from benchmarks.suggest import Case, time_kubetune; "
        f"r = time_kubetune(Case({case.dims}, {case.completed}, {case.pending}, {case.q})); "
        "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1); "
        "print(json.dumps([r['cold'], int(hwm) / 1024]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, rss = json.loads(out.stdout.strip().splitlines()[-1])
    return seconds, rss


# -- report ---------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the two small cases only")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "suggest.md")
    parser.add_argument("--scale-only", action="store_true", help="only the cases with thousands in flight")
    parser.add_argument("--no-scale", action="store_true", help="without the cases with thousands in flight")
    parser.add_argument("--fresh", action="store_true", help="measure the scale cases again (see suggest_scale.RAW)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows, steady, steady_case = [], float("nan"), Case(10, 2000, 1000, 1)
    if not args.scale_only:
        rows, steady, steady_case = small_cases(args.quick)
    scale: list[dict] = []
    if not args.no_scale:
        print("cases with thousands of trials in flight", flush=True)
        cases = suggest_scale.QUICK_SCALE_CASES if args.quick else suggest_scale.SCALE_CASES
        scale = suggest_scale.measure(cases, list(suggest_scale.BUDGETS), args.quick, args.fresh)
    write_report(args.out, rows, steady, steady_case, scale, (load_before, os.getloadavg()))


def small_cases(quick: bool) -> tuple[list, float, Case]:
    """The latency cases of a single ask (and the steady state of tell + ask(1))."""
    cases = QUICK if quick else CASES
    warm_up()
    rows: list = []
    for case in cases:
        print(f"case {case.label}", flush=True)
        if case.peers:
            k = time_kubetune(case)
            rss = None
        else:
            cold, rss = peak_rss_of(case)
            k = {"cold": cold, "warm": float("nan")}
        per = k["cold"] / case.q
        rows.append((case.label, "kubetune gp (cold)", k["cold"], case.q, per, 1.0, rss))
        if not np.isnan(k["warm"]):
            rows.append((case.label, "kubetune gp (warm)", k["warm"], case.q, k["warm"] / case.q,
                         (k["warm"] / case.q) / per, None))
        if case.peers:
            for name, (seconds, measured) in peers(case).items():
                rows.append((case.label, name, seconds * case.q, measured, seconds, seconds / per, None))
        if case.peers and case.completed > PEER_MAX_COMPLETED["scikit-optimize cl_min"]:
            rows.append((case.label, "scikit-optimize cl_min", float("nan"), 0, float("nan"), float("nan"), None))
        for row in rows[-5:]:
            print("   ", row, flush=True)
    steady_case = Case(10, 2000, 1000, 1)
    steady = time_steady_state(steady_case, rounds=10 if quick else 100)
    print(f"steady state {steady:.3f} s", flush=True)
    return rows, steady, steady_case


def write_report(path: Path, rows, steady: float, steady_case: Case, scale: list[dict],
                 load: tuple[tuple[float, ...], tuple[float, ...]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shared = ": other work shared the machine, so wall times are inflated" if max(load[0] + load[1]) > 1.5 else ""
    lines = [
        "# Suggestion latency",
        "",
        f"`python -m benchmarks.suggest`, run {time.strftime('%Y-%m-%d')} on {platform.machine()}, "
        f"{_cores()} cores, Python {platform.python_version()}, one BLAS thread; all methods in one run. "
        f"Load average (1, 5, 15 min) {_load(load[0])} at the start and {_load(load[1])} at the end{shared}.",
        "",
    ]
    if rows:
        lines += small_section(rows, steady, steady_case)
    elif path.exists():
        lines += earlier_small_section(path.read_text())
    if scale:
        lines += [SCALE_HEADING, "",
                  suggest_scale.__doc__.split("\n\n")[1].replace("\n", " "), "",
                  *suggest_scale.table(scale), ""]
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


def earlier_small_section(report: str) -> list[str]:
    """The single-ask section of an earlier report, kept (with the line that says which run it is from) when
    only the cases with thousands in flight run again."""
    lines = report.split("\n")
    end = lines.index(SCALE_HEADING) if SCALE_HEADING in lines else len(lines)
    # a report from before the two sections has the single asks' table right after its first paragraph
    body = lines[lines.index(SMALL_HEADING) + 2 : end] if SMALL_HEADING in lines else lines[4:end]
    if not body or body[0].startswith(KEPT):
        return [SMALL_HEADING, "", *body]
    return [SMALL_HEADING, "", f"{KEPT}: {lines[2]}", "", *body]


def small_section(rows, steady: float, steady_case: Case) -> list[str]:
    lines = [
        SMALL_HEADING,
        "",
        "Total seconds for the case's `q` suggestions. *measured* is how many suggestions were timed: where it "
        "is below `q` the total is extrapolated from the time per suggestion (which favours the peer, whose "
        "cost per suggestion grows with every lie). The ratio is the method's time per suggestion over "
        "kubetune's cold time per suggestion.",
        "",
        "| case | method | total s for q | measured | ms per suggestion | × kubetune (cold) | peak RSS |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for label, method, total, measured, per, ratio, rss in rows:
        rss_text = f"{rss:.0f} MiB" if rss else ""
        if measured == 0:
            lines.append(f"| {label} | {method} | not run (a GP refit per lie at this n: hours) | 0 | | | |")
            continue
        lines.append(f"| {label} | {method} | {total:.3f} | {measured} | {per * 1000:.1f} | {ratio:.1f} | {rss_text} |")
    return lines + [
        "",
        f"Steady state ({steady_case.label.replace(', q=1', '')}): one `tell` then `ask(1)`, "
        f"mean **{steady:.3f} s** over the rounds (hyperparameter refits amortized).",
        "",
    ]


SMALL_HEADING = "## Single asks"
SCALE_HEADING = "## Thousands of trials in flight"
KEPT = "Not run again (`--scale-only`); from the run described as"


def _cores() -> int:
    return os.cpu_count() or 0


def _load(averages: tuple[float, ...]) -> str:
    return ", ".join(f"{value:.1f}" for value in averages)


if __name__ == "__main__":
    main()
