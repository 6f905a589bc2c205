"""Early stopping in the operator: the reports trial pods pushed (:mod:`kubetune.operator.reports`), folded
into each running trial's progress at the next pass, and the rule's verdicts.

What is kept per experiment (:class:`ReportQueue`) is a cache: the reports not yet folded, and each trial's
:class:`~kubetune.core.stopping.Progress` parsed from its Trial status. The truth is the Trial status, where a
trial's progress is written when it reaches an ASHA rung, every :data:`PERSIST_EVERY_REPORTS` reports
otherwise, with its Running mark and with its result. A restarted operator reads it back from there, so it
judges as the one before it did; reports that arrived after the last write are lost with the old operator
(the trial is judged on the reports that were kept and those that follow).

:func:`fold` is free of I/O: it says which trials stop and which need their progress written; the reconciler
does the writing and the stopping.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from kubetune.core.lifecycle import STARTED, TrialRecord, TrialState
from kubetune.core.spec import Experiment
from kubetune.core.stopping import Progress, StoppingRule, build_rule, judge, observe
from kubetune.operator.view import ExperimentView, phase

logger = logging.getLogger("kubetune.operator")
PERSIST_EVERY_REPORTS = 16  # without a rung reached, a trial's progress is written at least this often
MAX_QUEUED_REPORTS = 50_000  # per experiment between two passes; beyond it the oldest are dropped


@dataclass(frozen=True)
class QueuedReport:
    trial: str
    attempt: int
    values: dict[str, float]


@dataclass
class ReportQueue:
    """An experiment's reports waiting for a pass, and the progress of its trials as parsed from their
    statuses (by trial: the attempt it belongs to and the progress)."""

    reports: list[QueuedReport] = field(default_factory=list)
    progress: dict[str, tuple[int, Progress]] = field(default_factory=dict)
    persisted: dict[str, int] = field(default_factory=dict)  # trial -> reports counted when last written
    dropped: int = 0

    def add(self, report: QueuedReport) -> None:
        self.reports.append(report)
        if len(self.reports) > MAX_QUEUED_REPORTS:
            del self.reports[0]
            self.dropped += 1

    def take(self) -> list[QueuedReport]:
        taken, self.reports = self.reports, []
        return taken


@dataclass
class Folded:
    """What a pass must do after folding the reports: trials to stop (their records hold the progress that
    stopped them) and running trials whose progress to write."""

    stop: list[tuple[dict[str, Any], TrialRecord]] = field(default_factory=list)
    persist: list[tuple[dict[str, Any], TrialRecord]] = field(default_factory=list)


def rule_of(experiment: Experiment) -> StoppingRule | None:
    stopping = experiment.spec.early_stopping
    return None if stopping.rule == "none" else build_rule(stopping.rule, stopping.settings)


def fold(queue: ReportQueue, experiment: Experiment, view: ExperimentView) -> Folded:
    """Folds the queued reports into the running trials' progress and asks the rule about each trial it
    must judge now. Reports for a trial no longer running, or for an earlier attempt, are dropped."""
    reports = queue.take()
    rule = rule_of(experiment) if reports else None
    if rule is None:
        return Folded()
    folding = _Folding(queue, experiment, view, rule, _progress(queue, view))
    for report in reports:
        folding.add(report)
    return folding.finish()


@dataclass
class _Folding:
    queue: ReportQueue
    experiment: Experiment
    view: ExperimentView
    rule: StoppingRule
    progress: dict[str, Progress]
    records: dict[str, TrialRecord] = field(default_factory=dict)
    stopped: set[str] = field(default_factory=set)
    rungs_reached: set[str] = field(default_factory=set)
    completed: set[str] | None = None
    folded: Folded = field(default_factory=Folded)

    def add(self, report: QueuedReport) -> None:
        trial = self.view.trials.get(report.trial)
        if trial is None or report.trial in self.stopped or not _current(self.view, trial, report.attempt):
            return
        stopping, objective = self.experiment.spec.early_stopping, self.experiment.spec.objective
        value, step = report.values.get(objective.metric), report.values.get(stopping.resource)
        if value is None or step is None:
            return
        maximize = objective.direction == "maximize"
        record = self.records.setdefault(report.trial, _record(trial, self.progress[report.trial]))
        if not observe(record.progress, float(step), float(value), maximize, self.rule):
            return
        if self.rule.rungs():
            self.rungs_reached.add(report.trial)
        if self.completed is None:
            self.completed = {name for name, t in self.view.trials.items() if phase(t) is TrialState.SUCCEEDED}
        if judge(stopping.rule, self.rule, report.trial, self.progress, self.completed, maximize):
            self.stopped.add(report.trial)
            self.folded.stop.append((trial, record))

    def finish(self) -> Folded:
        persisted = self.queue.persisted
        for name, record in self.records.items():
            if name in self.stopped:
                continue
            if name in self.rungs_reached or record.progress.reports - persisted.get(name, 0) >= PERSIST_EVERY_REPORTS:
                persisted[name] = record.progress.reports
                self.folded.persist.append((self.view.trials[name], record))
            else:  # kept in the view: written with the trial's next change (its Running mark or its result)
                self.view.set_status(self.view.trials[name], record.status())
        return self.folded


def restore(queue: ReportQueue, view: ExperimentView) -> None:
    """Puts back into a view listed again the progress folded since it was last written (the cluster's Trials
    lack it), so a trial's Running mark and result carry it."""
    for trial in view.in_flight():
        status = trial.get("status") or {}
        cached = queue.progress.get(trial["metadata"]["name"])
        written = (status.get("progress") or {}).get("reports", 0)
        if cached is not None and cached[0] == int(status.get("attempts", 0)) and cached[1].reports > written:
            view.set_status(trial, {**status, "progress": cached[1].to_dict()})


def _current(view: ExperimentView, trial: dict[str, Any], attempt: int) -> bool:
    """The report is for the attempt the trial is running now."""
    return phase(trial) in STARTED and view.latest_pod(trial)[0] == attempt


def _record(trial: dict[str, Any], progress: Progress) -> TrialRecord:
    record = TrialRecord.from_trial(trial)
    record.progress = progress  # the cached object, so that judging other trials sees this one's reports
    return record


def _progress(queue: ReportQueue, view: ExperimentView) -> dict[str, Progress]:
    """Every trial's progress, parsed again only for a trial whose attempt changed since it was cached."""
    known: dict[str, Progress] = {}
    for name, trial in view.trials.items():
        status = trial.get("status") or {}
        attempts = int(status.get("attempts", 0))
        cached = queue.progress.get(name)
        if cached is None or cached[0] != attempts:
            cached = (attempts, Progress.from_dict(status.get("progress")))
            queue.progress[name] = cached
        known[name] = cached[1]
    return known
