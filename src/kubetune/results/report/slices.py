"""A slice plot per parameter: the objective against the parameter's value, one point per trial coloured by
trial number (early dark, late bright); log axes for log-scale parameters, categories as bands with a little
jitter so their points do not hide each other."""

from __future__ import annotations

import numpy as np

from kubetune.results.report.data import Frame, ParamAxis, Section
from kubetune.results.report.svg import HOVER_POINTS, Figure, Scale, colour, points, state_class

WIDTH, HEIGHT = 400, 260
SHADES = 16  # trial-number colours, so points group into few paths


def render(frame: Frame) -> Section:
    idx = frame.scored()
    if not len(idx) or not frame.params:
        return Section("slices", "Slices", "No trial has reported a value yet.", "")
    log = bool(np.all(frame.values[idx] > 0) and frame.values[idx].max() / frame.values[idx].min() > 1e3)
    order = frame.numbers[idx]
    span = float(order.max() - order.min()) or 1.0
    shades = [colour(k / (SHADES - 1)) for k in range(SHADES)]
    fills = [shades[round((frame.numbers[i] - order.min()) / span * (SHADES - 1))] for i in idx]
    plots = "".join(_plot(frame, axis, idx, fills, log) for axis in frame.params)
    hover = "Hover over a point for its trial." if len(idx) <= HOVER_POINTS else (
        f"With more than {HOVER_POINTS:,} points these plots have no hover: the table lists every trial.")
    note = (f"{frame.results.metric} against each parameter ({len(idx)} trials with a value); colour: trial number, "
            "early dark to late bright. Log-scale parameters on log axes; categories spread a little sideways. "
            + hover)
    return Section("slices", "Slices", note, f'<div class="grid">{plots}</div>')


def _plot(frame: Frame, axis: ParamAxis, idx: np.ndarray, fills: list[str], log: bool) -> str:
    fig = Figure(WIDTH, HEIGHT, left=56)
    data = axis.values[idx]
    if axis.is_category:
        x = Scale.bands(axis.categories, fig.x0, fig.x1)
        jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(idx))
        data = data + jitter
    else:
        x = Scale.fit(data, fig.x0, fig.x1, log=axis.kind == "log")
    y = Scale.fit(frame.values[idx], fig.y0, fig.y1, log=log)
    body = fig.axes(x, y, f"{axis.name}{' (log)' if axis.kind == 'log' else ''}", frame.results.metric)
    groups = [(f"pt {state_class(frame.states[i])}", fills[k]) for k, i in enumerate(idx)]
    body += points(x(data), y(frame.values[idx]), idx, groups, r=2.2, hover=len(idx) <= HOVER_POINTS)
    return fig.svg(body, f"slice-{axis.name}")
