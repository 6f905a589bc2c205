"""Small SVG drawing helpers for the report: scales (linear, log, categories) with their ticks, a figure
with axes, number formatting and the colour ramp. Every coordinate is rounded to a tenth of a pixel to keep
the file small."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

import numpy as np

# viridis at five stops: worst (0) to best (1)
RAMP = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=float)


def colour(t: float) -> str:
    t = min(max(t, 0.0), 1.0) * (len(RAMP) - 1)
    i = min(int(t), len(RAMP) - 2)
    r, g, b = RAMP[i] + (RAMP[i + 1] - RAMP[i]) * (t - i)
    return f"#{int(r):02x}{int(g):02x}{int(b):02x}"


def fmt(x: float) -> str:
    if not math.isfinite(x):
        return ""
    if x == 0:
        return "0"
    if abs(x) >= 1e5 or abs(x) < 1e-3:
        return f"{x:.2g}"
    return f"{x:.4g}"


def esc(text: object) -> str:
    return escape(str(text), quote=True)


def c(x: float) -> str:
    """A coordinate as short text."""
    return f"{x:.1f}".rstrip("0").rstrip(".")


@dataclass
class Scale:
    """Maps data ``[lo, hi]`` to pixels ``[a, b]``; ``log`` maps on log10; ``categories`` maps index ``k`` to
    the middle of its band."""

    lo: float
    hi: float
    a: float
    b: float
    log: bool = False
    categories: tuple[str, ...] = ()

    @classmethod
    def fit(cls, data: np.ndarray, a: float, b: float, log: bool = False) -> Scale:
        finite = data[np.isfinite(data)]
        if log:
            finite = finite[finite > 0]
        if not len(finite):
            return cls(0.0, 1.0, a, b, log=False)
        lo, hi = float(finite.min()), float(finite.max())
        if log:
            lo, hi = math.log10(lo), math.log10(hi)
        pad = (hi - lo) * 0.04 or (abs(lo) * 0.1 or 1.0)
        return cls(lo - pad, hi + pad, a, b, log=log)

    @classmethod
    def bands(cls, categories: list[str], a: float, b: float) -> Scale:
        return cls(-0.5, max(len(categories), 1) - 0.5, a, b, categories=tuple(categories))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if self.log:
            with np.errstate(divide="ignore", invalid="ignore"):
                x = np.log10(x)
        return np.asarray(self.a + (x - self.lo) / (self.hi - self.lo) * (self.b - self.a))

    def at(self, x: float) -> float:
        if self.log:
            x = math.log10(x) if x > 0 else math.nan
        return self.a + (x - self.lo) / (self.hi - self.lo) * (self.b - self.a)

    def ticks(self, count: int = 5) -> list[tuple[float, str]]:
        """(pixel, label) pairs."""
        if self.categories:
            step = max(1, math.ceil(len(self.categories) / 12))
            return [(self.at(k), _short(name)) for k, name in enumerate(self.categories) if k % step == 0]
        if self.log:
            exps = range(math.ceil(self.lo), math.floor(self.hi) + 1)
            picked = list(exps)[:: max(1, math.ceil(len(exps) / count))] or [round(self.lo)]
            return [(self.a + (e - self.lo) / (self.hi - self.lo) * (self.b - self.a), fmt(10.0**e)) for e in picked]
        values = _nice(self.lo, self.hi, count)
        return [(self.at(v), fmt(v)) for v in values]


def _short(name: str) -> str:
    return name if len(name) <= 12 else name[:11] + "…"


def _nice(lo: float, hi: float, count: int) -> list[float]:
    raw = (hi - lo) / max(count, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step) + 1)]


@dataclass
class Figure:
    """An SVG plot area: ``x`` and ``y`` scales inside margins, axes drawn by :meth:`axes`."""

    width: int
    height: int
    left: int = 60
    right: int = 16
    top: int = 14
    bottom: int = 40

    @property
    def x0(self) -> float:
        return self.left

    @property
    def x1(self) -> float:
        return self.width - self.right

    @property
    def y0(self) -> float:
        return self.height - self.bottom

    @property
    def y1(self) -> float:
        return self.top

    def axes(self, x: Scale, y: Scale, xlabel: str, ylabel: str) -> str:
        parts = [f'<rect class="frame" x="{self.x0}" y="{self.y1}" width="{c(self.x1 - self.x0)}" '
                 f'height="{c(self.y0 - self.y1)}"/>']
        for px, label in x.ticks():
            parts.append(f'<line class="grid" x1="{c(px)}" x2="{c(px)}" y1="{self.y1}" y2="{self.y0}"/>'
                         f'<text class="tick" x="{c(px)}" y="{c(self.y0 + 14)}" text-anchor="middle">'
                         f'{esc(label)}</text>')
        for py, label in y.ticks():
            parts.append(f'<line class="grid" y1="{c(py)}" y2="{c(py)}" x1="{self.x0}" x2="{self.x1}"/>'
                         f'<text class="tick" x="{c(self.x0 - 5)}" y="{c(py + 4)}" text-anchor="end">'
                         f'{esc(label)}</text>')
        parts.append(f'<text class="label" x="{c((self.x0 + self.x1) / 2)}" y="{self.height - 6}" '
                     f'text-anchor="middle">{esc(xlabel)}</text>')
        parts.append(f'<text class="label" transform="translate(12,{c((self.y0 + self.y1) / 2)}) rotate(-90)" '
                     f'text-anchor="middle">{esc(ylabel)}</text>')
        return "".join(parts)

    def svg(self, body: str, name: str) -> str:
        return (f'<svg class="plot" data-plot="{esc(name)}" viewBox="0 0 {self.width} {self.height}" '
                f'width="{self.width}" height="{self.height}">{body}</svg>')


def coords(values: np.ndarray) -> list[str]:
    """Pixel coordinates as short text, to the half pixel ('' where not finite)."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    halves = np.round(np.where(finite, values, 0.0) * 2).astype(np.int64).tolist()
    return [(str(h // 2) if h % 2 == 0 else f"{h / 2:g}") if ok else "" for h, ok in zip(halves, finite.tolist(),
                                                                                         strict=True)]


def points(xs: np.ndarray, ys: np.ndarray, idx: np.ndarray, groups: list[tuple[str, str]], r: float = 2.5,
           hover: bool = True) -> str:
    """Points grouped by (class, colour). With ``hover`` each is a circle carrying its trial position in
    ``data-i`` (the page's hover reads the trial from it); without, a group is one path of round dots, about
    a fifth of the size, for plots of many thousand points."""
    keep = np.isfinite(xs) & np.isfinite(ys)
    cx, cy, ids = coords(xs), coords(ys), np.asarray(idx).tolist()
    by_group: dict[tuple[str, str], list[int]] = {}
    for k in np.flatnonzero(keep).tolist():
        by_group.setdefault(groups[k], []).append(k)
    out = []
    outline = "" if len(ids) <= HOVER_POINTS else ";stroke:none"  # outlines cost a browser dearly by the 10,000
    for (cls, fill), members in by_group.items():
        if hover:
            dots = "".join(f'<circle cx="{cx[k]}" cy="{cy[k]}" r="{r}" data-i="{ids[k]}"/>' for k in members)
            out.append(f'<g class="{cls}" style="fill:{fill}{outline}">{dots}</g>')
        else:
            d = "".join(f"M{cx[k]} {cy[k]}h0" for k in members)
            style = f"stroke:{fill};stroke-width:{2 * r}"
            out.append(f'<path class="dots {cls.replace("pt ", "")}" d="{d}" style="{style}"/>')
    return "".join(out)


def polyline(xs: np.ndarray, ys: np.ndarray, cls: str, extra: str = "") -> str:
    pts = " ".join(f"{x},{y}" for x, y in zip(coords(xs), coords(ys), strict=True) if x and y)
    return f'<polyline class="{cls}" points="{pts}"{extra}/>' if pts else ""


STATE_COLOURS = {"Succeeded": "#2a6fdb", "EarlyStopped": "#e8871e", "Failed": "#d62728",
                 "MetricsUnavailable": "#9467bd", "Killed": "#8c8c8c", "Running": "#2ca02c",
                 "Pending": "#98df8a", "Queued": "#c7c7c7"}
HOVER_POINTS = 2000  # past this many points a plot draws them as dots without hover


def state_colour(state: str) -> str:
    return STATE_COLOURS.get(state, "#555555")


def state_class(state: str) -> str:
    return f"s-{state}"
