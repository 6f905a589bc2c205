"""From what a trial left behind to its attempt's result: the metrics collectors, shared by every shell.

A trial that exited 0 has a result only if it reported the objective. Where that report is read depends on
``trialTemplate.metricsCollector``: ``stdout`` reads the trial's output (locally stdout, then stderr when
stdout does not hold the objective; in the cluster the container's log, which holds both), ``file`` the
file the trial wrote (locally; in the cluster the SDK leaves the same summary in the termination message).
In the cluster the summary :func:`kubetune.report` leaves in the termination message is read first, as it
spares the operator a log read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kubetune.core.lifecycle import AttemptResult, TrialState
from kubetune.core.metrics import MetricLog, final_metrics, finite_number, objective_value, parse_text
from kubetune.core.spec import MetricsCollector, Objective


@dataclass(frozen=True)
class Source:
    """One place a trial's metrics may be read from: ``text`` as read, ``where`` for messages."""

    where: str
    text: str


class Collector(Protocol):
    @property
    def path(self) -> str | None:
        """The file the trial writes its metrics to (placeholders not yet substituted), if any."""

    def sources(self, stdout: str, stderr: str, file: str | None) -> list[Source]:
        """Where a trial run as a process left its metrics, in the order they are read."""


@dataclass(frozen=True)
class OutputCollector:
    """``kind: stdout``: the trial's output."""

    path: None = None

    def sources(self, stdout: str, stderr: str, file: str | None) -> list[Source]:
        return [Source("its stdout", stdout), Source("its stderr", stderr)]


@dataclass(frozen=True)
class FileCollector:
    """``kind: file``: a file the trial writes (``KUBETUNE_METRICS_FILE``; :func:`kubetune.report` writes it)."""

    path: str

    def sources(self, stdout: str, stderr: str, file: str | None) -> list[Source]:
        return [Source(self.path, file or "")]


def collector(spec: MetricsCollector) -> Collector:
    if spec.kind == "file" and spec.path:
        return FileCollector(spec.path)
    return OutputCollector()


def from_output(objective: Objective, sources: Sequence[Source]) -> AttemptResult:
    """The result of an attempt that exited 0, from the first source that holds the objective (or the first
    source, when none does)."""
    names = [objective.metric, *objective.additional_metrics]
    logs = [parse_text(source.text, names) for source in sources]
    log = next((log for log in logs if objective.metric in log.values), logs[0] if logs else MetricLog())
    value = objective_value(log, objective.metric, objective.strategy)
    metrics = final_metrics(log, objective.metric, objective.strategy)
    if value is not None:
        return AttemptResult(TrialState.SUCCEEDED, value=value, metrics=metrics, exit_code=0)
    reported = log.values.get(objective.metric)
    where = " or ".join(source.where for source in sources) or "its output"
    return unavailable(objective, metrics, reported[-1] if reported else None, where)


def from_summary(objective: Objective, summary: dict[str, Any]) -> AttemptResult:
    """The result of an attempt that exited 0, from the per-metric summary (count, latest, min, max) the SDK
    leaves in the termination message."""
    names = [objective.metric, *objective.additional_metrics]
    entry = summary.get(objective.metric) if isinstance(summary.get(objective.metric), dict) else None
    value = finite_number(entry.get(objective.strategy)) if entry else None
    metrics = {n: finite_number(summary[n].get("latest")) for n in names if isinstance(summary.get(n), dict)}
    if entry is not None:
        metrics[objective.metric] = value
    if value is not None:
        return AttemptResult(TrialState.SUCCEEDED, value=value, metrics=metrics, exit_code=0)
    return unavailable(objective, metrics, entry.get(objective.strategy) if entry else None,
                       "its termination message")


def unavailable(objective: Objective, metrics: dict[str, float | None], reported: Any, where: str) -> AttemptResult:
    """The one ``MetricsUnavailable`` result: the objective was reported but not finite, or not at all."""
    if reported is not None:
        message = f"{objective.metric} was reported but not finite (last value {reported})"
    else:
        message = f"the trial exited 0 without reporting {objective.metric} in {where}"
    return AttemptResult(TrialState.METRICS_UNAVAILABLE, metrics=metrics, reason="MetricsUnavailable",
                         message=message, exit_code=0)
