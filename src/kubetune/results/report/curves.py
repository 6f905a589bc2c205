"""Learning curves: the intermediate values each trial reported (the thinned curve kept with its progress),
against the step. Early-stopped trials are drawn dashed in their own colour and end in a cross, so where
the rule stopped them shows. Past :data:`MAX_CURVES` trials it draws the best and a random sample."""

from __future__ import annotations

import numpy as np

from kubetune.results.report.data import Frame, Section
from kubetune.results.report.svg import Figure, Scale, c, polyline, state_class

MAX_CURVES, BEST_CURVES = 300, 60
WIDTH, HEIGHT = 900, 380


def render(frame: Frame) -> Section:
    having = np.array([i for i, t in enumerate(frame.trials) if t.progress.curve], dtype=int)
    if not len(having):
        return Section("curves", "Learning curves", "No trial reported intermediate values.", "")
    drawn = _sample(frame, having)
    steps = np.concatenate([[p[0] for p in frame.trials[i].progress.curve] for i in drawn])
    values = np.concatenate([[p[1] for p in frame.trials[i].progress.curve] for i in drawn])
    fig = Figure(WIDTH, HEIGHT)
    log = bool(np.all(values > 0) and values.max() / values.min() > 1e3)
    x = Scale.fit(steps, fig.x0, fig.x1)
    y = Scale.fit(values, fig.y0, fig.y1, log=log)
    body = fig.axes(x, y, "step", frame.results.metric)
    for i in sorted(drawn.tolist(), key=lambda i: frame.states[i] == "EarlyStopped"):  # stopped ones on top
        curve = np.array(frame.trials[i].progress.curve)
        state = frame.states[i]
        body += polyline(x(curve[:, 0]), y(curve[:, 1]), f"lc {state_class(state)}", f' data-i="{i}"')
        if state == "EarlyStopped":
            px, py = x.at(curve[-1, 0]), y.at(curve[-1, 1])
            body += (f'<path class="stop" d="M{c(px - 4)} {c(py - 4)}l8 8m0 -8l-8 8" data-i="{i}"/>')
    stopped = sum(frame.states[i] == "EarlyStopped" for i in having)
    shown = f"all {len(having)}" if len(drawn) == len(having) else (
        f"{len(drawn)} of {len(having)} (the best {BEST_CURVES} by their last value and a random sample)")
    note = (f"Intermediate values of {shown} trials that reported them; {stopped} were stopped early: dashed "
            "orange, ending in a cross where the rule stopped them. Curves are thinned to at most 64 points.")
    return Section("curves", "Learning curves", note, fig.svg(body, "curves"))


def _sample(frame: Frame, having: np.ndarray) -> np.ndarray:
    if len(having) <= MAX_CURVES:
        return having
    last = np.array([frame.trials[i].progress.curve[-1][1] for i in having])
    order = having[np.argsort(-last if frame.maximize else last, kind="stable")]
    rest = np.random.default_rng(0).choice(order[BEST_CURVES:], MAX_CURVES - BEST_CURVES, replace=False)
    return np.concatenate([rest, order[:BEST_CURVES]])
