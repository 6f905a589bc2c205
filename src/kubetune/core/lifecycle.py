"""The trial lifecycle, once for every shell: the trial states, the one trial record, and the rules that move
a trial along.

A trial is *queued* (known, waiting for a slot), *started* (``Pending`` until its process or pod runs,
then ``Running``), and ends ``Succeeded``, ``Failed``, ``MetricsUnavailable`` or ``Killed``. Each start is an
*attempt*, numbered from 1 (logs and pods are named by it). When an attempt ends, :func:`settle` turns it
into a retry (a ``Failed`` attempt while the trial's ``retries`` last; ``MetricsUnavailable`` is never
retried, the same command would report nothing again) or the trial's result. :func:`kill` ends a trial that
the experiment's end, or the user, cut short; a trial cut short by an interruption of the runner is queued
again by :func:`resumed` with the same number and parameters. :func:`inform` tells the optimizer what a
finished trial gave. The local runner writes a record as a row of ``trials.jsonl`` (:meth:`TrialRecord.row`),
the operator as the status of a ``Trial`` resource (:meth:`TrialRecord.status`): the same record, two
renderings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from kubetune.core.metrics import finite_number
from kubetune.core.stopping import Progress

if TYPE_CHECKING:  # the engine loads numpy and scipy: a reader of trial records (kubetune status) needs neither
    from kubetune.core.engine import Optimizer
    from kubetune.core.spec import ExperimentSpec


class TrialState(StrEnum):
    QUEUED = "Queued"
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    KILLED = "Killed"
    EARLY_STOPPED = "EarlyStopped"  # stopped by the early-stopping rule: not a failure, counts towards maxTrials

    @property
    def is_active(self) -> bool:
        """Queued or started: the trial still holds, or waits for, a slot."""
        return self in ACTIVE

    @property
    def is_finished(self) -> bool:
        return self not in ACTIVE

    @property
    def is_failure(self) -> bool:
        """Counts towards ``maxFailedTrials``: a trial that never reports its metric is as useless to the
        search as one that crashed."""
        return self in FAILED


STARTED = frozenset({TrialState.PENDING, TrialState.RUNNING})
ACTIVE = STARTED | {TrialState.QUEUED}
FAILED = frozenset({TrialState.FAILED, TrialState.METRICS_UNAVAILABLE})
FINISHED = frozenset(TrialState) - ACTIVE

INTERRUPTED = "Interrupted"  # the reason of a trial killed because the runner itself was stopped
# What the optimizer is told of an early-stopped trial: its last value (True), or nothing, its point never
# suggested again (False). False, by benchmarks/early_stopping.py: with the GP, 1.23x and 1.16x fewer steps
# to random search's regret on its two problems and a 40x lower final regret on one (a value from an early
# rung is a low-fidelity observation the GP would take for a final one); random search is unaffected.
TELL_EARLY_STOPPED = False
HISTORY_NOTE_LIMIT = 500


@dataclass
class AttemptResult:
    """How an attempt stands: still going (``Pending``/``Running``), or ended with its result."""

    state: TrialState
    value: float | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    reason: str | None = None  # one word: ExitCode, Timeout, Evicted, MetricsUnavailable, StartError...
    message: str | None = None
    exit_code: int | None = None

    @property
    def ended(self) -> bool:
        return self.state.is_finished


@dataclass
class TrialRecord:
    """Everything kept of one trial. ``attempts`` counts the attempts started; ``history`` holds a note per
    earlier failed attempt, and its length is what retries are counted against (an attempt cut short by an
    interruption of the runner is neither a failure nor in the history)."""

    id: str  # "<experiment>-<number>"
    number: int
    params: dict[str, Any]
    state: TrialState = TrialState.QUEUED
    value: float | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    attempts: int = 0
    history: list[str] = field(default_factory=list)
    reason: str | None = None
    message: str | None = None
    exit_code: int | None = None
    started: str | None = None  # when the latest attempt started (ISO-8601 UTC)
    finished: str | None = None
    retry: bool = False  # this attempt failed and another follows
    devices: list[str] = field(default_factory=list)
    pod: str | None = None
    progress: Progress = field(default_factory=Progress)  # the intermediate reports of the latest attempt

    # -- moves ----------------------------------------------------------------------------------------------
    def start(self, now: datetime) -> None:
        """A new attempt starts."""
        self.state, self.attempts, self.retry = TrialState.PENDING, self.attempts + 1, False
        self.started, self.finished = iso(now), None
        self.reason = self.message = self.exit_code = None
        self.progress = Progress()

    # -- renderings -----------------------------------------------------------------------------------------
    def row(self) -> dict[str, Any]:
        """The row of ``trials.jsonl`` for the attempt that just ended (its state is the attempt's: ``Failed``
        with ``retry`` when another attempt follows)."""
        row: dict[str, Any] = {
            "id": self.id, "number": self.number, "attempt": self.attempts, "params": self.params,
            "state": str(TrialState.FAILED if self.retry else self.state), "value": self.value,
            "metrics": self.metrics, "started": self.started, "finished": self.finished, "reason": self.reason,
            "message": self.message, "exit_code": self.exit_code, "retry": self.retry or None,
            "history": self.history or None, "devices": self.devices or None,
            "progress": self.progress.to_dict() if self.progress.reports else None,
        }
        return {key: value for key, value in row.items() if value is not None}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TrialRecord:
        """A record from a ``trials.jsonl`` row; raises ValueError or TypeError for a row that is not one."""
        if not isinstance(row, dict):
            raise TypeError("a row must be a JSON object")
        record = cls(id=str(row["id"]), number=int(row["number"]), params=dict(row["params"]),
                     state=TrialState(row["state"]), value=finite_number(row.get("value")),
                     metrics=dict(row.get("metrics") or {}),
                     attempts=int(row.get("attempt") or row.get("attempts") or 1),
                     history=[str(note) for note in row.get("history") or []],
                     reason=row.get("reason"), message=row.get("message"), exit_code=row.get("exit_code"),
                     started=row.get("started"), finished=row.get("finished"), retry=bool(row.get("retry")),
                     devices=[str(d) for d in row.get("devices") or []],
                     progress=Progress.from_dict(row.get("progress")))
        return record

    def status(self) -> dict[str, Any]:
        """The ``status`` of the trial's ``Trial`` resource (:class:`kubetune.core.cluster.resources.TrialStatus`)."""
        status: dict[str, Any] = {
            "phase": "Pending" if self.state is TrialState.QUEUED else str(self.state), "value": self.value,
            "metrics": self.metrics or None, "attempts": self.attempts, "history": self.history or None,
            "pod": self.pod, "reason": self.reason, "message": self.message, "exitCode": self.exit_code,
            "startTime": self.started, "completionTime": self.finished,
            "progress": self.progress.to_dict() if self.progress.reports else None,
        }
        return {key: value for key, value in status.items() if value is not None}

    @classmethod
    def from_trial(cls, trial: dict[str, Any]) -> TrialRecord:
        """A record from a ``Trial`` object as the API server serves it."""
        spec, status = trial["spec"], trial.get("status") or {}
        return cls(id=trial["metadata"]["name"], number=int(spec["number"]), params=spec["params"],
                   state=TrialState(status.get("phase", "Pending")), value=status.get("value"),
                   metrics=dict(status.get("metrics") or {}), attempts=int(status.get("attempts", 0)),
                   history=list(status.get("history") or []), reason=status.get("reason"),
                   message=status.get("message"), exit_code=status.get("exitCode"),
                   started=status.get("startTime"), finished=status.get("completionTime"), pod=status.get("pod"),
                   progress=Progress.from_dict(status.get("progress")))


def settle(record: TrialRecord, result: AttemptResult, retries: int, now: datetime) -> bool:
    """Applies the ended attempt ``result`` to ``record``. True when the trial runs again (the caller starts
    the next attempt in the same slot), False when the record now holds the trial's result."""
    note = f"attempt {record.attempts} " + (
        "succeeded" if result.state is TrialState.SUCCEEDED else f"failed ({result.message or result.reason})")
    record.reason, record.message, record.exit_code = result.reason, result.message, result.exit_code
    record.finished = iso(now)
    if result.state is TrialState.FAILED and len(record.history) < retries:
        record.history.append(note[:HISTORY_NOTE_LIMIT])
        record.state, record.retry = TrialState.QUEUED, True
        return True
    record.state, record.value, record.metrics, record.retry = result.state, result.value, result.metrics, False
    if record.history:  # why the trial needed more than one attempt stays in its result
        record.message = "; ".join([*record.history, note])
    return False


def kill(record: TrialRecord, reason: str, now: datetime) -> None:
    """Ends a trial that was cut short: by the end of its experiment (``reason`` says why) or, with reason
    ``Interrupted``, by the runner being stopped (:func:`resumed` queues it again)."""
    record.state, record.reason, record.retry = TrialState.KILLED, reason, False
    record.message = "the run was interrupted" if reason == INTERRUPTED else f"experiment ended: {reason}"
    record.finished = iso(now)


def stop_early(record: TrialRecord, rule: str, now: datetime) -> AttemptResult:
    """The result of an attempt the early-stopping ``rule`` stopped: its latest reported value and where."""
    progress = record.progress
    return AttemptResult(TrialState.EARLY_STOPPED, value=progress.value,
                         metrics=dict(record.metrics), reason="EarlyStopped",
                         message=f"stopped by the {rule} rule at step {progress.step:g} (value {progress.value:g})"
                         if progress.step is not None and progress.value is not None else f"stopped by the {rule} rule")


def resumed(record: TrialRecord) -> TrialRecord:
    """The record as a resumed run takes it: a trial that was cut short (interrupted, still running when the
    runner died, or failed with a retry to come) is queued again, with its number, parameters, attempts and
    history."""
    cut_short = record.state is TrialState.KILLED and record.reason == INTERRUPTED
    if record.state.is_active or cut_short or record.retry:
        record.state = TrialState.QUEUED
    return record


class Informed(Protocol):
    """What :func:`inform` tells: an :class:`~kubetune.core.engine.Optimizer`, or a shell's handle on one kept
    elsewhere (the operator keeps its optimizers in a worker process)."""

    def is_pending(self, trial_id: str) -> bool: ...
    def tell(self, trial_id: str, value: float) -> None: ...
    def fail(self, trial_id: str) -> None: ...


def inform(optimizer: Informed, record: TrialRecord) -> None:
    """Tells the optimizer what a finished trial gave: its value, or that it gave none (its point is never
    suggested again)."""
    number = str(record.number)
    if not optimizer.is_pending(number):
        return
    told = record.state is TrialState.SUCCEEDED or (record.state is TrialState.EARLY_STOPPED and TELL_EARLY_STOPPED)
    if told and record.value is not None:
        optimizer.tell(number, record.value)
    else:
        optimizer.fail(number)


def build_optimizer(spec: ExperimentSpec, records: list[TrialRecord]) -> Optimizer:
    """The experiment's optimizer, knowing every trial so far (active ones as pending)."""
    from kubetune.core.engine import Optimizer

    past = [{"id": str(r.number), "params": r.params, "state": _told_state(r), "value": r.value} for r in records]
    return Optimizer(spec.parameters, direction=spec.objective.direction, algorithm=spec.algorithm.name,
                     settings=spec.algorithm.settings, seed=spec.seed, trials=past)


def fitting(spec: ExperimentSpec, records: list[TrialRecord]) -> tuple[list[TrialRecord], list[str]]:
    """The records an optimizer of ``spec`` can be built from, and why each other one cannot: parameters that
    do not fit ``spec.parameters`` (a run folder edited by hand, an Experiment whose parameters were changed
    while it ran), or a trial number an earlier record already has."""
    from kubetune.core.space import Space

    space = Space(spec.parameters)
    kept: list[TrialRecord] = []
    numbers: set[int] = set()
    problems: list[str] = []
    for record in records:
        try:
            space.validate(dict(record.params))
        except (ValueError, TypeError) as exc:
            problems.append(f"trial {record.id}: its parameters do not fit spec.parameters ({exc})")
            continue
        if record.number < 0:
            problems.append(f"trial {record.id}: its number {record.number} is negative")
            continue
        if record.number in numbers:
            problems.append(f"trial {record.id}: its number {record.number} is an earlier trial's")
            continue
        numbers.add(record.number)
        kept.append(record)
    return kept, problems


def first_of(problems: list[str]) -> str:
    """The first problem, and how many more there are."""
    return problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")


def _told_state(record: TrialRecord) -> str:
    """The trial's state as the optimizer knows it: what :func:`inform` told it (an early-stopped trial is
    told as a completed one with its last value, or as a failed one)."""
    if record.state.is_active:
        return "pending"
    if record.state is TrialState.EARLY_STOPPED:
        told = TELL_EARLY_STOPPED and record.value is not None
        return str(TrialState.SUCCEEDED if told else TrialState.FAILED)
    return str(record.state)


def trial_name(experiment: str, number: int) -> str:
    return f"{experiment}-{number}"


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
