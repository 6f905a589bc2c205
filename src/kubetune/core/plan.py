"""The scheduling decision, shared by every runner and the operator: given the experiment's limits and
its trials as they are now, what should happen next?

It is a pure function of the present state (level-triggered, as a Kubernetes controller must be): the
caller lists its trials, calls :func:`decide`, and carries out the decision. Nothing is remembered between
calls, so a restarted runner or operator decides exactly as the one before it would have.

The trial states and their sets are those of :mod:`kubetune.core.lifecycle`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, Protocol

from kubetune.core.lifecycle import ACTIVE, FAILED, STARTED, TrialState
from kubetune.core.spec import ExperimentSpec


class ExperimentPhase(StrEnum):
    CREATED = "Created"
    RUNNING = "Running"
    SUSPENDED = "Suspended"  # spec.suspend: no trial starts; those running go on
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"

    @property
    def is_over(self) -> bool:
        return self in (ExperimentPhase.SUCCEEDED, ExperimentPhase.FAILED)


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


class TrialView(Protocol):
    """What a decision reads of a trial (a :class:`~kubetune.core.lifecycle.TrialRecord` is one)."""

    @property
    def id(self) -> str: ...

    @property
    def state(self) -> TrialState: ...

    @property
    def value(self) -> float | None: ...


@dataclass(frozen=True)
class Trial:
    """A bare :class:`TrialView`."""

    id: str
    state: TrialState
    value: float | None = None


@dataclass(frozen=True)
class Decision:
    phase: ExperimentPhase
    reason: str
    message: str
    start: list[str] = field(default_factory=list)  # queued trials to start now
    create: int = 0  # new trials to ask the optimizer for and start now
    room: int = 0  # how many more trials may be created after these (what a shell may ask for ahead)
    stop: list[str] = field(default_factory=list)  # started trials to stop now (early stopping's seam)
    stop_running: bool = False  # the experiment is over: stop what still runs


@dataclass
class Tally:
    """What a decision needs to know of an experiment's trials: how many are in each state, the best value,
    and the queued ones in order. A shell may keep one up to date as trials change state
    (:meth:`moved`) rather than count thousands of trials for every decision."""

    direction: Literal["minimize", "maximize"]
    counts: dict[TrialState, int] = field(default_factory=dict)
    best: float | None = None
    queued: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, trials: Iterable[TrialView], direction: Literal["minimize", "maximize"]) -> Tally:
        tally = cls(direction)
        for trial in trials:
            tally.moved(trial.id, None, trial.state, trial.value)
        return tally

    def moved(self, trial: str, before: TrialState | None, after: TrialState, value: float | None = None) -> None:
        """Trial ``trial`` went from state ``before`` (None: it is new) to ``after``, with ``value`` once
        Succeeded. A Succeeded trial is final: it never moves again."""
        if before is not None:
            self.counts[before] -= 1
            if before == TrialState.QUEUED:
                self.queued.remove(trial)
        self.counts[after] = self.counts.get(after, 0) + 1
        if after == TrialState.QUEUED:
            self.queued.append(trial)
        if after == TrialState.SUCCEEDED and value is not None and (self.best is None or self.improves(value)):
            self.best = value

    def improves(self, value: float) -> bool:
        assert self.best is not None
        return value > self.best if self.direction == "maximize" else value < self.best

    def count(self, states: Iterable[TrialState]) -> int:
        return sum(self.counts.get(state, 0) for state in states)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def decide(limits: Limits, trials: Iterable[TrialView] | Tally, exhausted: bool = False) -> Decision:
    """What to do now, from the trials or their :class:`Tally`. ``exhausted``: the optimizer has no new
    assignment to give."""
    tally = trials if isinstance(trials, Tally) else Tally.of(trials, limits.direction)
    counts = tally.counts
    failed = tally.count(FAILED)
    started = tally.count(STARTED)
    active = tally.count(ACTIVE)
    best = tally.best

    if best is not None and limits.reaches_target(best):
        return Decision(ExperimentPhase.SUCCEEDED, "TargetReached",
                        f"objective {best} reached the target {limits.target}",
                        stop_running=True)
    if failed > limits.max_failed_trials:
        return Decision(ExperimentPhase.FAILED, "MaxFailedTrialsReached",
                        f"{failed} trials failed, more than maxFailedTrials ({limits.max_failed_trials})",
                        stop_running=True)
    remaining = limits.max_trials - tally.total
    if active == 0 and (remaining <= 0 or exhausted):
        reason = "MaxTrialsReached" if remaining <= 0 else "SearchSpaceExhausted"
        if counts.get(TrialState.SUCCEEDED, 0) == 0:
            return Decision(ExperimentPhase.FAILED, "NoSuccessfulTrial", f"{reason}: no trial reported the objective")
        return Decision(ExperimentPhase.SUCCEEDED, reason, f"{tally.total} trials finished; best objective {best}")
    if limits.suspend:
        return Decision(ExperimentPhase.SUSPENDED, "Suspended", f"suspended with {started} trials still running")
    free = max(limits.parallelism - started, 0)
    start = tally.queued[:free]
    create = 0 if exhausted else max(min(free - len(start), remaining), 0)
    return Decision(ExperimentPhase.RUNNING, "TrialsRunning", f"{started + len(start) + create} trials running",
                    start=start, create=create, room=max(remaining - create, 0))
