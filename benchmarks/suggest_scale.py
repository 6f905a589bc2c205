"""Suggestion cost with thousands of trials in flight: the cases of ``python -m benchmarks.suggest`` that drive
each method the way the operator does.

A case starts from ``completed`` finished trials (a noisy quadratic in the unit cube) and ``in_flight``
running ones, loaded into a fresh optimizer as a restarted operator would. Then, pass after pass (one pass
per simulated second), the trials that ended are told and as many new ones asked for in one call; trial
durations are lognormal (median :data:`MEDIAN_DURATION` passes, sigma 0.3), and a running trial at the start
has a uniform share of its duration left, so batches are what a steady operator sees (in_flight /
MEDIAN_DURATION a pass on average). Measured:

- **tell+ask per trial**: CPU seconds (one BLAS thread) of every ``tell`` and ``ask`` over the passes, divided
  by the trials told, until at least ``told`` were (hyperparameter refits and model rebuilds included);
- **slowest ask of 100**: then ``single`` rounds of telling the next 100 trials to end and asking for 100;
  the slowest and the median, in CPU and wall seconds (a refit falls in these rounds);
- **memory**: the optimizer's own memory, measured by tracemalloc (numpy's arrays included) as what the
  process holds after the run over what it held before the optimizer was built (the trial records it was
  built from are freed), and the peak over that baseline during the run.

Every method runs in a fresh process. Optuna TPE (``constant_liar=True``) asks one suggestion at a time
(``study.ask``), as its users do; it is measured on fewer trials (its cost per suggestion grows with the
trials so far, so its first hundred are representative of the next). Results are kept in
``results/suggest_scale.json`` as they come, and a run goes on from there (``--fresh``: from scratch).

    python -m benchmarks.suggest_scale [--quick] [--cases 0 1] [--methods ...] [--fresh]
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import heapq  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
import warnings  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

warnings.filterwarnings("ignore")

MEDIAN_DURATION = 60.0
SIGMA = 0.3


@dataclass(frozen=True)
class ScaleCase:
    dims: int
    in_flight: int
    completed: int

    @property
    def label(self) -> str:
        return f"d={self.dims}, {self.in_flight:,} in flight, {self.completed:,} completed"


SCALE_CASES = [ScaleCase(6, 2000, 10000), ScaleCase(20, 2000, 10000), ScaleCase(6, 10000, 20000),
               ScaleCase(20, 10000, 20000)]
QUICK_SCALE_CASES = [ScaleCase(6, 300, 1000)]
# How many trials each method is told in the pass pattern, and its rounds of 100 told and 100 asked.
BUDGETS = {"kubetune gp (scalable)": (1500, 11), "kubetune gp (exact)": (600, 4),
           "Optuna TPE (constant liar)": (100, 1)}
QUICK_BUDGETS = {method: (150, 2) for method in BUDGETS}
# The memory runs (tracemalloc slows every allocation, so they are runs of their own): trials told, rounds of
# 100. Optuna's memory is its study's, which its first asks show.
MEMORY_BUDGETS = {"kubetune gp (scalable)": (300, 2), "kubetune gp (exact)": (300, 2),
                  "Optuna TPE (constant liar)": (20, 0)}
# Results so far, so that a run cut short goes on where it stopped (``--fresh`` starts again).
RAW = Path(__file__).parent / "results" / "suggest_scale.json"
# The exact model's posterior holds every trial in flight: at 10,000 its factor alone is 0.8 GB and one
# factorization takes minutes on this machine, so it runs only up to this many.
EXACT_MAX_IN_FLIGHT = 2000


def loss(x: np.ndarray, rng: np.random.Generator) -> float:
    return float(np.sum((x - 0.3) ** 2) + 0.01 * rng.normal())


class _Kubetune:
    def __init__(self, case: ScaleCase, model: str, records: list[dict]):
        from kubetune import Optimizer

        parameters = [{"name": f"x{i}", "type": "double", "min": 0, "max": 1} for i in range(case.dims)]
        self.optimizer = Optimizer(parameters, algorithm="gp", seed=0, settings={"model": model}, trials=records)

    def ask(self, n: int) -> list[tuple[Any, np.ndarray]]:
        return [(s.id, np.fromiter(s.params.values(), dtype=float)) for s in self.optimizer.ask(n)]

    def tell(self, token: Any, value: float) -> None:
        self.optimizer.tell(token, value)


class _OptunaTPE:
    def __init__(self, case: ScaleCase, records: list[dict]):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.names = [f"x{i}" for i in range(case.dims)]
        self.distributions = {k: optuna.distributions.FloatDistribution(0.0, 1.0) for k in self.names}
        sampler = optuna.samplers.TPESampler(seed=0, constant_liar=True)
        self.study = optuna.create_study(sampler=sampler, direction="minimize")
        trials = []
        for record in records:
            done = record["state"] == "Succeeded"
            state = optuna.trial.TrialState.COMPLETE if done else optuna.trial.TrialState.RUNNING
            trials.append(optuna.trial.create_trial(params=record["params"], distributions=self.distributions,
                                                    value=record.get("value"), state=state))
        self.study.add_trials(trials)  # numbered in order: a record's id is its trial number

    def ask(self, n: int) -> list[tuple[Any, np.ndarray]]:
        out = []
        for _ in range(n):
            trial = self.study.ask(self.distributions)
            out.append((trial, np.array([trial.params[k] for k in self.names])))
        return out

    def tell(self, token: Any, value: float) -> None:
        self.study.tell(int(token) if isinstance(token, str) else token, value)


def _records(case: ScaleCase, rng: np.random.Generator) -> tuple[list[dict], list[tuple[str, np.ndarray]]]:
    X = rng.random((case.completed, case.dims))
    records = [{"id": str(i), "params": {f"x{j}": float(v) for j, v in enumerate(x)}, "state": "Succeeded",
                "value": loss(x, rng)} for i, x in enumerate(X)]
    running = [(str(case.completed + i), 0.2 + 0.2 * rng.random(case.dims)) for i in range(case.in_flight)]
    records += [{"id": token, "params": {f"x{j}": float(v) for j, v in enumerate(x)}, "state": "Running"}
                for token, x in running]
    return records, running


def _build(case: ScaleCase, method: str, records: list[dict]) -> _Kubetune | _OptunaTPE:
    if method == "Optuna TPE (constant liar)":
        return _OptunaTPE(case, records)
    return _Kubetune(case, {"kubetune gp (scalable)": "scalable", "kubetune gp (exact)": "exact"}[method], records)


class _Operator:
    """The operator's pass pattern over one method: trials end at their simulated times, and each pass
    tells the ended ones and asks for as many."""

    def __init__(self, method: Any, running: list[tuple[str, np.ndarray]], rng: np.random.Generator):
        self.method, self.rng, self.now, self.count = method, rng, 0.0, 0
        self.ends: list[tuple[float, int, Any, np.ndarray]] = []
        for token, x in running:  # in steady state: a uniform share of each duration is left
            self._push(rng.uniform(0, 1) * self._duration(), token, x)

    def _duration(self) -> float:
        return float(self.rng.lognormal(np.log(MEDIAN_DURATION), SIGMA))

    def _push(self, end: float, token: Any, x: np.ndarray) -> None:
        self.count += 1
        heapq.heappush(self.ends, (end, self.count, token, x))

    def next_pass(self) -> list[tuple[Any, np.ndarray]]:
        """The trials that end by the next pass with any (the clock moves a second at a time)."""
        ended: list[tuple[Any, np.ndarray]] = []
        while not ended:
            self.now += 1.0
            while self.ends and self.ends[0][0] <= self.now:
                ended.append(heapq.heappop(self.ends)[2:])
        return ended

    def next_to_end(self, count: int) -> list[tuple[Any, np.ndarray]]:
        popped = [heapq.heappop(self.ends) for _ in range(min(count, len(self.ends)))]
        self.now = max(self.now, popped[-1][0])
        return [entry[2:] for entry in popped]

    def tell_and_ask(self, ended: list[tuple[Any, np.ndarray]]) -> tuple[float, float]:
        """Tells the ended trials, asks for as many; CPU and wall seconds of those calls."""
        cpu, wall = time.process_time(), time.perf_counter()
        for token, x in ended:
            self.method.tell(token, loss(x, self.rng))
        asked = self.method.ask(len(ended))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        for token, x in asked:
            self._push(self.now + self._duration(), token, x)
        return cpu, wall


def run(case: ScaleCase, method: str, told: int, single: int, trace: bool = False) -> dict:
    """One method on one case, in this process; see the module docstring. With ``trace``, memory is
    measured (and the times, slowed by the tracing, are not the ones to report)."""
    rng = np.random.default_rng(0)
    records, running = _records(case, rng)
    gc.collect()
    if trace:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.process_time()
    operator = _Operator(_build(case, method, records), running, rng)
    build_seconds = time.process_time() - started
    del records, running
    gc.collect()
    passes: list[tuple[int, float, float]] = []  # batch, CPU, wall
    while sum(batch for batch, _, _ in passes) < told:
        ended = operator.next_pass()
        passes.append((len(ended), *operator.tell_and_ask(ended)))
    singles = [operator.tell_and_ask(operator.next_to_end(100)) for _ in range(single)]
    gc.collect()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    batches, cpu, wall = (np.array(column) for column in zip(*passes, strict=True))
    single_cpu, single_wall = (np.array(column) for column in zip(*singles, strict=True)) if singles else ([], [])
    return {"case": asdict(case), "method": method, "told": int(batches.sum()), "passes": len(batches),
            "median_batch": float(np.median(batches)), "max_batch": int(batches.max()),
            "per_trial_cpu": float(cpu.sum() / batches.sum()), "per_trial_wall": float(wall.sum() / batches.sum()),
            "slowest_pass_wall": float(wall.max()), "single_cpu_max": float(max(single_cpu, default=np.nan)),
            "single_wall_max": float(max(single_wall, default=np.nan)),
            "single_cpu_median": float(np.median(single_cpu)) if len(single_cpu) else float("nan"),
            "held_mib": (current - before) / 2**20, "peak_mib": (peak - before) / 2**20, "build_cpu": build_seconds}


def run_in_subprocess(case: ScaleCase, method: str, told: int, single: int, trace: bool = False) -> dict:
    code = ("import json, sys; from benchmarks.suggest_scale import ScaleCase, run; "
            f"print(json.dumps(run(ScaleCase({case.dims}, {case.in_flight}, {case.completed}), {method!r}, "
            f"{told}, {single}, {trace})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(cases: list[ScaleCase], methods: list[str], quick: bool, fresh: bool = False) -> list[dict]:
    budgets, memory_budgets = (QUICK_BUDGETS, QUICK_BUDGETS) if quick else (BUDGETS, MEMORY_BUDGETS)
    raw = None if quick else RAW
    kept = [] if fresh or raw is None or not raw.exists() else json.loads(raw.read_text())
    results = []
    for case in cases:
        for method in methods:
            earlier = [r for r in kept if r["case"] == asdict(case) and r["method"] == method]
            if earlier:
                results.append(earlier[0])
                continue
            if method == "kubetune gp (exact)" and case.in_flight > EXACT_MAX_IN_FLIGHT:
                results.append({"case": asdict(case), "method": method, "not_run": True})
                continue
            result = run_in_subprocess(case, method, *budgets[method])
            memory = run_in_subprocess(case, method, *memory_budgets[method], trace=True)
            result.update(held_mib=memory["held_mib"], peak_mib=memory["peak_mib"])
            results.append(result)
            if raw is not None:
                raw.write_text(json.dumps(results + [r for r in kept if r not in results], indent=1))
            print(f"  {case.label}: {method}: {result['per_trial_cpu'] * 1e3:.2f} ms a trial (CPU), slowest ask "
                  f"of 100 {result['single_cpu_max']:.2f} s CPU ({result['single_wall_max']:.2f} s wall), held "
                  f"{result['held_mib']:.0f} MiB, peak {result['peak_mib']:.0f} MiB", flush=True)
    return results


def table(results: list[dict]) -> list[str]:
    lines = [
        "| case | method | tell+ask per trial, CPU ms (wall ms) | trials told (passes, median batch) | slowest ask "
        "of 100, CPU s (wall s) | median ask of 100, CPU s | memory held (peak), MiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        case = ScaleCase(**r["case"])
        if r.get("not_run"):
            lines.append(f"| {case.label} | {r['method']} | not run: its posterior would hold all "
                         f"{case.in_flight:,} trials in flight (a factor of "
                         f"{(case.in_flight + 1000) ** 2 * 8 / 2**30:.1f} GiB, minutes per factorization) | | | | |")
            continue
        lines.append(
            f"| {case.label} | {r['method']} | {r['per_trial_cpu'] * 1e3:.2f} ({r['per_trial_wall'] * 1e3:.2f}) | "
            f"{r['told']:,} ({r['passes']}, {r['median_batch']:.0f}) | {r['single_cpu_max']:.3f} "
            f"({r['single_wall_max']:.3f}) | {r['single_cpu_median']:.3f} | {r['held_mib']:.0f} "
            f"({r['peak_mib']:.0f}) |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cases", type=int, nargs="*", help="indices into SCALE_CASES")
    parser.add_argument("--methods", nargs="*", default=list(BUDGETS))
    parser.add_argument("--fresh", action="store_true", help="measure again what results/suggest_scale.json has")
    args = parser.parse_args()
    cases = QUICK_SCALE_CASES if args.quick else [SCALE_CASES[i] for i in (args.cases or range(len(SCALE_CASES)))]
    print("\n".join(table(measure(cases, args.methods, args.quick, args.fresh))))


if __name__ == "__main__":
    main()
