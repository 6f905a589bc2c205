"""The optimization history: each trial's objective against the time it finished and against its number,
with the best value so far as a step line."""

from __future__ import annotations

import numpy as np

from kubetune.results.report.data import Frame, Section
from kubetune.results.report.svg import Figure, Scale, points, polyline, state_class, state_colour

WIDTH, HEIGHT = 580, 320
HOVER_HISTORY = 20_000  # the history keeps hover on every point up to this many


def render(frame: Frame) -> Section:
    idx = frame.scored()
    metric = frame.results.metric
    if not len(idx):
        return Section("history", "Optimization history", "No trial has reported a value yet.", "")
    log = _log_axis(frame.values[idx])
    by_time = _plot(frame, idx, frame.finished, "time since the first start (s)", log, "history-time")
    by_number = _plot(frame, idx, frame.numbers, "trial number", log, "history-number")
    direction = "highest" if frame.maximize else "lowest"
    note = (f"{metric} of each trial with a value ({len(idx)} of {frame.n}), coloured by state; the line is the "
            f"{direction} value so far among Succeeded trials.{' Log y axis: the values span many decades.' * log}")
    return Section("history", "Optimization history", note, f'<div class="row">{by_time}{by_number}</div>')


def _log_axis(values: np.ndarray) -> bool:
    return bool(np.all(values > 0) and values.max() / values.min() > 1e3)


def _plot(frame: Frame, idx: np.ndarray, xdata: np.ndarray, xlabel: str, log: bool, name: str) -> str:
    fig = Figure(WIDTH, HEIGHT)
    x = Scale.fit(xdata[idx], fig.x0, fig.x1)
    y = Scale.fit(frame.values[idx], fig.y0, fig.y1, log=log)
    body = fig.axes(x, y, xlabel, frame.results.metric)
    body += _best_line(frame, xdata, x, y)
    groups = [(f"pt {state_class(frame.states[i])}", state_colour(frame.states[i])) for i in idx]
    body += points(x(xdata[idx]), y(frame.values[idx]), idx, groups, hover=len(idx) <= HOVER_HISTORY)
    return fig.svg(body, name)


def _best_line(frame: Frame, xdata: np.ndarray, x: Scale, y: Scale) -> str:
    ok = frame.succeeded()
    ok = ok[np.isfinite(xdata[ok])]
    if not len(ok):
        return ""
    order = ok[np.argsort(xdata[ok], kind="stable")]
    values = frame.values[order]
    best = np.maximum.accumulate(values) if frame.maximize else np.minimum.accumulate(values)
    xs = np.append(np.repeat(xdata[order], 2)[1:], np.nanmax(np.append(xdata[frame.scored()], xdata[order[-1]])))
    ys = np.append(np.repeat(best, 2)[:-1], best[-1])
    return polyline(x(xs), y(ys), "best")
