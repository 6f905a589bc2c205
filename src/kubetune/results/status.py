"""What ``kubetune status`` shows of an experiment, from a run folder or a cluster: its phase, counts by
state, the best trial, and the trials holding a slot now with how long they have run (:class:`Snapshot`),
and that snapshot drawn as rich tables (:func:`render`).

On a cluster the snapshot costs the running trials, not all of them (:func:`cluster_snapshot`): counts and
best come from the Experiment's status, which the operator keeps, and the running trials from the pods that
are Pending or Running (metadata only), with the Trials of only the ones shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kubetune.results.model import Results

if TYPE_CHECKING:
    from rich.console import RenderableType

    from kubetune.results.cluster import ClusterReader

SHOWN_RUNNING = 20  # running trials listed, longest-running first; the rest are counted
# Experiment.status.trials fields, as the states they count (``created`` is the total).
COUNT_FIELDS = {"pending": "Pending", "running": "Running", "succeeded": "Succeeded", "failed": "Failed",
                "metricsUnavailable": "MetricsUnavailable", "killed": "Killed", "earlyStopped": "EarlyStopped"}


@dataclass
class Running:
    id: str
    state: str  # Queued, Pending or Running
    started: str | None  # ISO-8601: when the current attempt started
    params: dict[str, Any] = field(default_factory=dict)
    attempt: int | None = None


@dataclass
class Snapshot:
    name: str
    source: str
    phase: str
    metric: str
    direction: str
    total: int
    counts: dict[str, int]  # trials by state
    best: tuple[str, float, dict[str, Any]] | None  # trial, value, params
    running: list[Running]  # at most SHOWN_RUNNING, longest-running first
    running_total: int  # every trial holding a slot now
    message: str = ""


def snapshot_of(results: Results, shown: int = SHOWN_RUNNING) -> Snapshot:
    """The snapshot of results read in full (a run folder)."""
    best = results.best()
    running = [Running(t.id, str(t.state), _text(t.started), dict(t.params), t.attempts) for t in results.running()]
    message = results.summary.get("message") if isinstance(results.summary, dict) else None
    return Snapshot(name=results.name, source=results.source, phase=results.phase, metric=results.metric,
                    direction=results.direction, total=len(results.trials), counts=results.counts(),
                    best=(best.id, best.value, dict(best.params)) if best and best.value is not None else None,
                    running=_longest_first(running)[:shown], running_total=len(running),
                    message=_text(message) or "")


def cluster_snapshot(reader: ClusterReader, name: str, shown: int = SHOWN_RUNNING) -> Snapshot:
    """The snapshot of the Experiment ``name``: one GET of it, one listing of its pods that hold a slot
    (metadata only), and a GET of each of the ``shown`` longest-running trials."""
    experiment = reader.experiment(name)
    status = _mapping(experiment.get("status"))
    spec = _mapping(experiment.get("spec"))
    tally = _mapping(status.get("trials"))
    counts = {state: int(tally[key]) for key, state in COUNT_FIELDS.items() if _count(tally.get(key))}
    best_status = _mapping(status.get("best"))
    best = None
    if isinstance(best_status.get("value"), int | float):
        best = (str(best_status.get("trial")), float(best_status["value"]), _mapping(best_status.get("params")))
    pods = _longest_first([Running(p.trial, p.phase, p.created, attempt=p.attempt) for p in _slots(reader, name)])
    trials = {_mapping(t.get("metadata")).get("name"): t for t in reader.trials_named([p.id for p in pods[:shown]])}
    for pod in pods[:shown]:
        pod.params = _mapping(_mapping(trials.get(pod.id, {}).get("spec")).get("params"))
    objective = _mapping(spec.get("objective"))
    return Snapshot(name=name, source=f"{reader.namespace}/{name}", phase=str(status.get("phase") or "Created"),
                    metric=str(objective.get("metric", "objective")),
                    direction=str(objective.get("direction", "minimize")),
                    total=int(tally["created"]) if _count(tally.get("created")) else sum(counts.values()),
                    counts=counts, best=best, running=pods[:shown], running_total=len(pods),
                    message=_text(status.get("message")) or "")


def _slots(reader: ClusterReader, name: str) -> list[Any]:
    """The trials holding a slot: from their pods, or, where RBAC lets the user read Trials but not pods,
    from every Trial (slower at thousands of trials, but right)."""
    from kubetune.results.cluster import Forbidden

    try:
        return reader.running_pods(name)
    except Forbidden:
        return reader.running_trials(name)


# -- drawing --------------------------------------------------------------------------------------------------
def render(snapshot: Snapshot, now: datetime) -> RenderableType:
    """The snapshot as the terminal shows it: a headline, counts, the best trial, the running trials."""
    from rich.console import Group
    from rich.text import Text

    colour = {"Succeeded": "green", "Running": "cyan", "Failed": "red"}.get(snapshot.phase, "yellow")
    headline = Text.assemble((snapshot.name, "bold"), f" ({snapshot.source}): ", (snapshot.phase, colour))
    if snapshot.message:
        headline.append(f": {snapshot.message}")
    parts: list[RenderableType] = [headline, _counts(snapshot), _best_line(snapshot)]
    if snapshot.running_total:
        parts.append(_running_table(snapshot, now))
    return Group(*parts)


def _counts(snapshot: Snapshot) -> RenderableType:
    from rich.table import Table
    from rich.text import Text

    if not snapshot.counts:
        return Text("Trials: none yet")
    counts = Table(title=f"Trials: {snapshot.total}", title_justify="left")
    for state in snapshot.counts:
        counts.add_column(state, justify="right")
    counts.add_row(*(str(n) for n in snapshot.counts.values()))
    return counts


def _best_line(snapshot: Snapshot) -> RenderableType:
    from rich.text import Text

    if snapshot.best is None:
        return Text(f"Best: none yet ({snapshot.direction} {snapshot.metric})")
    trial, value, params = snapshot.best
    return Text.assemble("Best: ", (trial, "bold"), f" {snapshot.metric}={_short(value)} ({snapshot.direction})",
                         f"  {_params(params)}" if params else "")


def _running_table(snapshot: Snapshot, now: datetime) -> RenderableType:
    from rich.table import Table

    more = snapshot.running_total - len(snapshot.running)
    title = f"Running: {snapshot.running_total}" + (f" (the {len(snapshot.running)} longest shown)" if more else "")
    table = Table(title=title, title_justify="left")
    for column in ("trial", "state", "attempt", "running for", "params"):
        table.add_column(column, justify="right" if column in ("attempt", "running for") else "left")
    for trial in snapshot.running:
        table.add_row(trial.id, trial.state, str(trial.attempt or "-"), _duration(trial.started, now),
                      _params(trial.params))
    return table


# -- helpers --------------------------------------------------------------------------------------------------
def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 time as kubetune and the API server write it (``...Z``), or None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _duration(started: str | None, now: datetime) -> str:
    moment = parse_time(started)
    if moment is None:
        return "-"
    seconds = max(0, int((now - moment).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m{rest % 60:02d}s" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _longest_first(trials: list[Running]) -> list[Running]:
    far_future = datetime.max.replace(tzinfo=UTC)
    return sorted(trials, key=lambda t: (parse_time(t.started) or far_future, t.id))


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_short(v)}" for k, v in params.items())


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
