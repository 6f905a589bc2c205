"""The operator's pass pattern at thousands of workers, simulated: how a method's search quality holds up when
suggestions come in large batches from one call.

``workers`` trial slots; trial durations lognormal (median 1 time unit, sigma 0.3; the same sequence for every
method at a seed). Every ``pass_interval(workers, batch)`` units of simulated time a pass tells the method every
trial that ended since the previous pass (in the order they ended), then asks it for all free slots in ONE call,
at most ``batch`` of them; slots left over wait for the next pass. The batch size is thus a property of the
case, not of how fast the machine running the benchmark is.

The interval is ``PASS_LOAD * batch / workers``: with every slot busy, ``workers / 1.046`` trials end per unit
(1.046 is the mean duration), so about ``PASS_LOAD / 1.046 = 1.05`` batches end between two passes and the cap
binds on nearly every pass; the price is that about one slot in twenty waits a pass. At the start all slots are
free and the cap fills them over ``workers / batch`` passes, about one trial duration.

A run ends after ``budget`` evaluations. It records the best value at checkpoints (every hundredth of the budget,
and after ``workers`` and ``2 * workers`` evaluations), every batch size asked for, the slots in use, and the
seconds the method spent in ask and tell, the slowest ask, and the run's seconds. Every figure but ``wall`` is CPU
time of the run's process (one BLAS thread), which other jobs on a shared machine hardly inflate.
"""

from __future__ import annotations

import heapq
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass

from benchmarks.methods import METHODS, lognormal_durations
from benchmarks.problems import PROBLEMS

# Trial endings per pass, in batches, with every slot busy (times the mean duration, 1.046): see the docstring.
PASS_LOAD = 1.1
CURVE_POINTS = 100


@dataclass(frozen=True)
class Case:
    problem: str
    method: str
    workers: int
    batch: int
    seed: int
    budget: int

    @property
    def key(self) -> tuple:
        return (self.problem, self.method, self.workers, self.batch, self.seed)


def pass_interval(workers: int, batch: int) -> float:
    return PASS_LOAD * batch / workers


def checkpoints(workers: int, budget: int) -> list[int]:
    """Evaluation counts at which the best value is kept: every hundredth of the budget, ``workers`` and
    ``2 * workers`` (the intermediate points the report shows) and the budget itself."""
    marks = {math.ceil(k * budget / CURVE_POINTS) for k in range(1, CURVE_POINTS + 1)}
    marks |= {m for m in (workers, 2 * workers, budget) if 0 < m <= budget}
    return sorted(marks)


class _Curve:
    """The best value so far, kept at the checkpoints only (a run has up to tens of thousands of evaluations)."""

    def __init__(self, marks: list[int]):
        self.marks = marks
        self.best_at: list[float] = []
        self.time_at: list[float] = []
        self.best = math.inf
        self.evaluations = 0

    def add(self, value: float, now: float) -> None:
        self.best = min(self.best, value)
        self.evaluations += 1
        if len(self.best_at) < len(self.marks) and self.marks[len(self.best_at)] == self.evaluations:
            self.best_at.append(self.best)
            self.time_at.append(now)


@dataclass
class _Slots:
    """The trials in flight as a heap of (end time, number, token, params), and what the passes asked for."""

    running: list[tuple[float, int, object, dict]]
    sizes: Counter
    busy_after_ramp: list[int]

    def ended_by(self, now: float) -> list[tuple[float, int, object, dict]]:
        ended = []
        while self.running and self.running[0][0] <= now:
            ended.append(heapq.heappop(self.running))
        return ended


def simulate_passes(case: Case) -> dict:
    """One run of the pass pattern; the result is plain JSON (see the module docstring)."""
    problem = PROBLEMS[case.problem]
    method = METHODS[case.method](problem.parameters, case.seed)
    trial_durations = lognormal_durations(case.seed, case.budget)
    interval = pass_interval(case.workers, case.batch)
    ramp_passes = math.ceil(case.workers / case.batch)
    slots = _Slots([], Counter(), [])
    curve = _Curve(checkpoints(case.workers, case.budget))
    asked, passes, suggest_seconds, slowest_ask = 0, 0, 0.0, 0.0
    started, started_cpu = time.perf_counter(), time.process_time()
    while asked < case.budget or slots.running:
        now = passes * interval
        asking = asked < case.budget
        for end, _, token, params in slots.ended_by(now):
            value = problem.objective(params)
            t0 = time.process_time()
            method.tell(token, params, value)
            suggest_seconds += time.process_time() - t0
            curve.add(value, end)
        wanted = min(case.workers - len(slots.running), case.batch, case.budget - asked)
        if wanted > 0:
            t0 = time.process_time()
            suggestions = method.ask_batch(wanted)
            spent = time.process_time() - t0
            suggest_seconds, slowest_ask = suggest_seconds + spent, max(slowest_ask, spent)
            slots.sizes[len(suggestions)] += 1
            for token, params in suggestions:
                heapq.heappush(slots.running, (now + float(trial_durations[asked]), asked, token, params))
                asked += 1
            if not suggestions and not slots.running:
                break  # a finite space with nothing new left
        if asking and passes >= ramp_passes:
            slots.busy_after_ramp.append(len(slots.running))
        passes += 1
    return {**asdict(case), "interval": interval, "evaluations": curve.evaluations,
            "checkpoints": curve.marks[:len(curve.best_at)],  # all of them unless a finite space ran out
            "best": curve.best_at, "time": curve.time_at, "passes": passes,
            "batch_sizes": {str(size): count for size, count in sorted(slots.sizes.items())},
            "occupancy": (sum(slots.busy_after_ramp) / (len(slots.busy_after_ramp) * case.workers)
                          if slots.busy_after_ramp else float("nan")),
            "wall": time.perf_counter() - started, "cpu": time.process_time() - started_cpu,
            "suggest_seconds": suggest_seconds, "slowest_ask_seconds": slowest_ask}
