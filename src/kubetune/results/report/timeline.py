"""The timeline: one bar per trial attempt from its start to its end, coloured by the attempt's state, each
on a lane (the lowest lane free when it started), so the number of busy lanes at any moment is the number
of attempts running then and the gaps show idle slots."""

from __future__ import annotations

import heapq

import numpy as np

from kubetune.core.lifecycle import TrialRecord
from kubetune.results.report.data import Frame, Section, seconds
from kubetune.results.report.svg import Figure, Scale, c, coords, esc, fmt, state_class

WIDTH = 1200
LANE_MAX, LANE_MIN = 24, 2


def attempts(frame: Frame) -> list[TrialRecord]:
    """Every ended attempt, then the attempts still running; the latest records when attempts are unknown."""
    ended = list(frame.results.attempts) or [t for t in frame.trials if t.state.is_finished]
    return ended + [t for t in frame.trials if t.state.is_active and t.started]


def lanes(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """A lane per interval, the lowest free one when it starts (intervals sorted by start)."""
    lane = np.zeros(len(starts), dtype=int)
    busy: list[tuple[float, int]] = []  # (end, lane)
    free: list[int] = []
    used = 0
    for k in np.argsort(starts, kind="stable"):
        while busy and busy[0][0] <= starts[k]:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            lane[k] = heapq.heappop(free)
        else:
            lane[k], used = used, used + 1
        heapq.heappush(busy, (float(ends[k]), int(lane[k])))
    return lane


def render(frame: Frame) -> Section:
    runs = attempts(frame)
    starts = seconds([a.started for a in runs], frame.origin)
    ends = seconds([a.finished for a in runs], frame.origin)
    end_of_view = float(np.nanmax(np.concatenate([starts, ends, [0.0]])))
    ends = np.where(np.isnan(ends), end_of_view, ends)  # still running: up to the latest known moment
    keep = np.flatnonzero(np.isfinite(starts))
    if not len(keep):
        return Section("timeline", "Timeline", "No attempt has a start time.", "")
    starts, ends, runs = starts[keep], ends[keep], [runs[k] for k in keep]
    lane = lanes(starts, ends)
    count = int(lane.max()) + 1
    step = max(LANE_MIN, min(LANE_MAX, 600 // count))
    fig = Figure(WIDTH, 40 + 14 + step * count)
    x = Scale.fit(np.concatenate([starts, ends]), fig.x0, fig.x1)
    y = Scale.bands([str(k + 1) for k in range(count)], fig.y1, fig.y0)
    body = fig.axes(x, y, "time since the first start (s)", "lane")
    position = {t.id: i for i, t in enumerate(frame.trials)}
    states = ["Running" if run.state.is_active else ("Failed" if run.retry else str(run.state)) for run in runs]
    x0, x1, ys = coords(x(starts)), x(ends) - x(starts), coords(y(lane.astype(float)))
    widths = coords(np.maximum(x1, 0.8))
    bars: dict[str, list[str]] = {}
    for k, run in enumerate(runs):
        bars.setdefault(states[k], []).append(
            f'<path d="M{x0[k]} {ys[k]}h{widths[k]}" data-i="{position.get(run.id, -1)}"/>')
    width = c(max(step - 1.0, 1.0))
    body += "".join(f'<g class="tl {state_class(s)}" stroke-width="{width}">{"".join(b)}</g>' for s, b in bars.items())
    return Section("timeline", "Timeline", _note(starts, ends, count, frame.results.spec.get("parallelism")),
                   fig.svg(body, "timeline"))


def _note(starts: np.ndarray, ends: np.ndarray, lanes_used: int, parallelism: object) -> str:
    span = float(ends.max() - starts.min()) or 1.0
    busy = float((ends - starts).sum())
    text = (f"{len(starts)} attempts on {lanes_used} lanes over {fmt(span)} s; on average {busy / span:.2f} ran at "
            "once")
    if isinstance(parallelism, int) and parallelism > 0:
        text += f", {100 * busy / span / parallelism:.0f}% of the {parallelism} parallel slots kept busy"
    return esc(text + ". Colour: the attempt's state (a Failed attempt that was retried is Failed).")

