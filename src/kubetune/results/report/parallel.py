"""Parallel coordinates: one vertical axis per parameter and one for the objective, one line per trial
coloured by the objective's rank (best bright). Past :data:`MAX_LINES` trials it draws the best
:data:`BEST_LINES` and a seeded random sample of the rest, and says so."""

from __future__ import annotations

import numpy as np

from kubetune.results.report.data import Frame, ParamAxis, Section
from kubetune.results.report.svg import Scale, c, colour, esc, fmt, polyline, state_class

MAX_LINES, BEST_LINES = 1000, 200
HEIGHT, TOP, BOTTOM = 380, 30, 40


def sample(frame: Frame, idx: np.ndarray) -> np.ndarray:
    """The trials drawn: all of ``idx`` up to MAX_LINES, else the best BEST_LINES and a random rest."""
    if len(idx) <= MAX_LINES:
        return idx
    ranked = frame.best_first(idx)
    rest = np.random.default_rng(0).choice(ranked[BEST_LINES:], MAX_LINES - BEST_LINES, replace=False)
    return np.concatenate([ranked[:BEST_LINES], rest])


def render(frame: Frame) -> Section:
    idx = frame.scored()
    if not len(idx) or not frame.params:
        return Section("parallel", "Parallel coordinates", "No trial has reported a value yet.", "")
    drawn = sample(frame, idx)
    axes = [*frame.params, ParamAxis(frame.results.metric, "linear", frame.values)]
    width = max(640, min(1160, 180 * len(axes)))
    xs = np.linspace(70, width - 70, len(axes))
    scales = [_scale(axis, drawn) for axis in axes]
    good = frame.goodness(idx)
    rank = dict(zip(idx.tolist(), good.tolist(), strict=True))
    order = sorted(drawn.tolist(), key=lambda i: rank[i])  # best drawn last, on top
    ys = np.array([scale(axis.values[order]) for axis, scale in zip(axes, scales, strict=True)]).T
    lines = "".join(_line(frame, i, row, xs, rank[i]) for i, row in zip(order, ys, strict=True))
    body = lines + "".join(_axis(axis, scale, x) for axis, scale, x in zip(axes, scales, xs, strict=True))
    svg = (f'<svg class="plot" data-plot="parallel" viewBox="0 0 {width} {HEIGHT}" width="{width}" '
           f'height="{HEIGHT}">{body}</svg>')
    shown = (f"all {len(idx)} trials with a value" if len(drawn) == len(idx) else
             f"{len(drawn)} of {len(idx)} trials with a value: the best {BEST_LINES} and a random sample of "
             f"{len(drawn) - BEST_LINES} others (drawing every line would make the page slow and unreadable)")
    note = (f"One line per trial, {shown}; colour: rank of {frame.results.metric}, best bright yellow, worst dark "
            "purple. Log-scale parameters on log axes, categories as categories.")
    return Section("parallel", "Parallel coordinates", note, svg)


def _scale(axis: ParamAxis, drawn: np.ndarray) -> Scale:
    if axis.is_category:
        return Scale.bands(axis.categories, HEIGHT - BOTTOM, TOP)
    return Scale.fit(axis.values[drawn], HEIGHT - BOTTOM, TOP, log=axis.kind == "log")


def _line(frame: Frame, i: int, ys: np.ndarray, xs: np.ndarray, good: float) -> str:
    extra = f' stroke="{colour(good)}" data-i="{i}"'
    return polyline(xs, ys, f"pc {state_class(frame.states[i])}", extra)


def _axis(axis: ParamAxis, scale: Scale, x: float) -> str:
    parts = [f'<line class="axis" x1="{c(x)}" x2="{c(x)}" y1="{TOP}" y2="{HEIGHT - BOTTOM}"/>']
    for py, label in scale.ticks(4):
        parts.append(f'<text class="tick" x="{c(x - 4)}" y="{c(py + 4)}" text-anchor="end">{esc(label)}</text>')
    name = axis.name + (" (log)" if axis.kind == "log" else "")
    parts.append(f'<text class="label" x="{c(x)}" y="{HEIGHT - BOTTOM + 18}" text-anchor="middle">{esc(name)}</text>')
    if not axis.is_category and scale.lo == scale.hi:
        parts.append(f'<text class="tick" x="{c(x)}" y="{TOP - 8}">{fmt(scale.lo)}</text>')
    return "".join(parts)
