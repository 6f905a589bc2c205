"""The table of trials: one row per trial (its latest attempt) with its parameters, metrics, state and
duration. The rows travel as inline JSON and the page's script builds and sorts the table, which keeps a
report of 10,000 trials small; the same rows give the plots' hover text."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from kubetune.results.report.data import Frame, Section

PAGE = 200  # rows a page; the page's script uses the same number


def columns(frame: Frame) -> list[str]:
    metric = frame.results.metric
    return ["#", "trial", "state", metric, *[p.name for p in frame.params], *_metric_names(frame),
            "attempts", "duration (s)", "started", "message"]


def _metric_names(frame: Frame) -> list[str]:
    names: list[str] = []
    for trial in frame.trials:
        names += [k for k in trial.metrics if k not in names and k != frame.results.metric]
    return names


def rows(frame: Frame) -> list[list[Any]]:
    metrics = _metric_names(frame)
    out = []
    durations = np.round(frame.finished - frame.started, 3)
    for i, trial in enumerate(frame.trials):
        duration = float(durations[i])
        out.append([
            trial.number, trial.id, frame.states[i], _clean(trial.value),
            *[_clean(trial.params.get(p.name)) for p in frame.params],
            *[_clean(trial.metrics.get(name)) for name in metrics],
            trial.attempts, duration if math.isfinite(duration) else None,
            (trial.started or "").replace("T", " ").rstrip("Z")[:19], (trial.message or "")[:300]])
    return out


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.8g}") if math.isfinite(value) else None
    return value


def data(frame: Frame) -> str:
    """The rows as JSON to place in a <script type="application/json">."""
    text = json.dumps({"columns": columns(frame), "rows": rows(frame), "params": len(frame.params),
                       "page": PAGE},
                      separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/")


def render(frame: Frame) -> Section:
    note = (f"{frame.n} trials, one row each (the latest attempt), {PAGE} rows a page (a browser lays out a table of "
            "thousands of rows slowly). Click a column's header to sort every row by it; click again to reverse.")
    body = ('<div class="pager" id="pager"><button data-go="-1">◀ previous</button><button data-go="1">next ▶</button>'
            '<span></span></div><div class="tablewrap"><table id="trials"><thead></thead><tbody></tbody></table></div>')
    return Section("table", "Trials", note, body)
