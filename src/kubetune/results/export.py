"""``kubetune export``: one flat row per trial (its latest attempt), for pandas and spreadsheets, written as
CSV (the csv module) or JSON Lines.

Columns, in this order: ``id``, ``number``, ``state``, ``value`` (the objective), ``param.<name>`` for each
parameter, ``metric.<name>`` for each metric reported, ``started`` and ``finished`` (ISO-8601 UTC),
``duration_s`` (finished minus started, empty while the trial runs), ``attempts``, ``reason``. Parameters and
metrics appear in the order trials first name them. In JSON Lines every row has every key (null when
empty) and numbers stay numbers; in CSV an empty cell is a missing value and a parameter that is not a
number or a string is written as JSON.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from typing import Any, TextIO

from kubetune.core.lifecycle import TrialRecord
from kubetune.results.model import Results
from kubetune.results.status import parse_time

FORMATS = ("csv", "jsonl")
LEADING = ("id", "number", "state", "value")
TRAILING = ("started", "finished", "duration_s", "attempts", "reason")


def columns(trials: Iterable[TrialRecord]) -> list[str]:
    params: dict[str, None] = {}
    metrics: dict[str, None] = {}
    for trial in trials:
        params.update(dict.fromkeys(str(name) for name in trial.params))
        metrics.update(dict.fromkeys(str(name) for name in trial.metrics))
    return [*LEADING, *(f"param.{p}" for p in params), *(f"metric.{m}" for m in metrics), *TRAILING]


def row(trial: TrialRecord) -> dict[str, Any]:
    started, finished = parse_time(trial.started), parse_time(trial.finished)
    duration = (finished - started).total_seconds() if started and finished else None
    return {
        "id": trial.id, "number": trial.number, "state": str(trial.state), "value": _number(trial.value),
        **{f"param.{name}": value for name, value in trial.params.items()},
        **{f"metric.{name}": _number(value) for name, value in trial.metrics.items()},
        "started": _text(trial.started), "finished": _text(trial.finished),
        "duration_s": round(duration, 3) if duration is not None else None, "attempts": trial.attempts,
        "reason": _text(trial.reason),
    }


def write(results: Results, format: str, out: TextIO) -> int:
    """Writes one row per trial of ``results`` to ``out``; returns how many."""
    names = columns(results.trials)
    if format == "csv":
        writer = csv.DictWriter(out, fieldnames=names, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for trial in results.trials:
            writer.writerow({key: _cell(value) for key, value in row(trial).items()})
    else:
        for trial in results.trials:
            values = row(trial)
            out.write(json.dumps({key: values.get(key) for key in names}, default=str) + "\n")
    return len(results.trials)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str | int | float):
        return value
    return json.dumps(value, default=str)


def _number(value: Any) -> Any:
    """A metric or value as a number (None for NaN and infinities, which neither CSV readers nor JSON agree
    on); anything else a trial reported is kept as it is."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
