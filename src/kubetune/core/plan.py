"""The scheduling decision, shared by every runner and the operator: given the experiment's limits and
its trials as they are now, what should happen next?

It is a pure function of the present state (level-triggered, as a Kubernetes controller must be): the
caller lists its trials, calls :func:`decide`, and carries out the decision. Nothing is remembered between
calls, so a restarted runner or operator decides exactly as the one before it would have.

States: ``Queued`` (created, not started: a trial re-run after an interruption), ``Pending`` and
``Running`` (started), ``Succeeded``, ``Failed``, ``MetricsUnavailable`` and ``Killed``. Both ``Failed`` and
``MetricsUnavailable`` count towards ``maxFailedTrials``: a trial that never reports its metric is as
useless to the search as one that crashed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from kubetune.core.spec import ExperimentSpec

Phase = Literal["Running", "Succeeded", "Failed"]
STARTED = ("Pending", "Running")
ACTIVE = ("Queued", *STARTED)
FAILED = ("Failed", "MetricsUnavailable")


@dataclass(frozen=True)
class Limits:
    parallelism: int
    max_trials: int
    max_failed_trials: int
    direction: Literal["minimize", "maximize"]
    target: float | None = None
    retries: int = 0
    suspend: bool = False

    @classmethod
    def from_spec(cls, spec: ExperimentSpec) -> Limits:
        return cls(
            parallelism=spec.parallelism,
            max_trials=spec.max_trials,
            max_failed_trials=spec.max_failed_trials,
            direction=spec.objective.direction,
            target=spec.objective.target,
            retries=spec.trial_template.retries,
            suspend=spec.suspend,
        )

    def reaches_target(self, value: float) -> bool:
        if self.target is None:
            return False
        return value >= self.target if self.direction == "maximize" else value <= self.target


@dataclass(frozen=True)
class TrialView:
    id: str
    state: str
    value: float | None = None


@dataclass(frozen=True)
class Decision:
    phase: Phase
    reason: str
    message: str
    start: list[str] = field(default_factory=list)  # queued trials to start now
    create: int = 0  # new trials to ask the optimizer for and start now
    stop_running: bool = False  # the experiment is over: stop what still runs


def decide(limits: Limits, trials: Iterable[TrialView], exhausted: bool = False) -> Decision:
    """What to do now. ``exhausted``: the optimizer has no new assignment to give."""
    trials = list(trials)
    counts = count_states(trials)
    failed = sum(counts.get(s, 0) for s in FAILED)
    started = sum(counts.get(s, 0) for s in STARTED)
    active = started + counts.get("Queued", 0)
    best = best_value(trials, limits.direction)

    if best is not None and limits.reaches_target(best):
        return Decision("Succeeded", "TargetReached", f"objective {best} reached the target {limits.target}",
                        stop_running=True)
    if failed > limits.max_failed_trials:
        return Decision("Failed", "MaxFailedTrialsReached",
                        f"{failed} trials failed, more than maxFailedTrials ({limits.max_failed_trials})",
                        stop_running=True)
    remaining = limits.max_trials - len(trials)
    if active == 0 and (remaining <= 0 or exhausted):
        reason = "MaxTrialsReached" if remaining <= 0 else "SearchSpaceExhausted"
        if counts.get("Succeeded", 0) == 0:
            return Decision("Failed", "NoSuccessfulTrial", f"{reason}: no trial reported the objective")
        return Decision("Succeeded", reason, f"{len(trials)} trials finished; best objective {best}")
    if limits.suspend:
        return Decision("Running", "Suspended", f"suspended with {started} trials still running")
    free = max(limits.parallelism - started, 0)
    start = [t.id for t in trials if t.state == "Queued"][:free]
    create = 0 if exhausted else max(min(free - len(start), remaining), 0)
    return Decision("Running", "TrialsRunning", f"{started + len(start) + create} trials running",
                    start=start, create=create)


def should_retry(state: str, attempts: int, retries: int) -> bool:
    """A trial whose attempt ``attempts`` (1-based) ended in ``state`` runs again in its own slot."""
    return state == "Failed" and attempts <= retries


def count_states(trials: Iterable[TrialView]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state] = counts.get(t.state, 0) + 1
    return counts


def best_value(trials: Iterable[TrialView], direction: str) -> float | None:
    values = [t.value for t in trials if t.state == "Succeeded" and t.value is not None]
    if not values:
        return None
    return max(values) if direction == "maximize" else min(values)
