"""Parameter importance by a first-order functional-ANOVA variance decomposition over binned parameters:
for each parameter, the share of the objective's variance explained by the parameter alone, estimated as
the variance of the per-bin means (weighted by the bins' sizes) over the total variance — the correlation
ratio eta squared, a binned estimate of the first-order Sobol index. Numeric parameters are cut into up to
:data:`MAX_BINS` quantile bins (so a log scale needs no special case), categories are their own bins. It
runs on the ranks of the objective so that a few diverged trials do not dominate. Its caveats: interactions
between parameters are ignored (a parameter that matters only together with another scores low), a search
that concentrates its trials near the optimum shrinks every share, and with few trials per bin the estimates
are noisy and biased upwards (expected about (bins - 1) / (n - 1) for a parameter with no effect)."""

from __future__ import annotations

import numpy as np

from kubetune.results.report.data import Frame, ParamAxis, Section
from kubetune.results.report.svg import c, esc

MAX_BINS = 10
MIN_TRIALS = 4
METHOD = ("first-order functional ANOVA on binned parameters (eta squared: the variance of the objective's mean "
          "per bin over the objective's total variance, on the objective's ranks; up to 10 quantile bins per "
          "numeric parameter, one bin per category)")
CAVEAT = ("Interactions are ignored: a parameter that matters only together with another scores low. With few "
          "trials per bin the estimates are noisy and biased upwards (a parameter with no effect scores about "
          "(bins - 1) / (trials - 1), shown as the grey tick). Trials that the search concentrated near the "
          "optimum shrink every share.")


def bins(axis: ParamAxis, idx: np.ndarray) -> np.ndarray:
    """The bin of each trial in ``idx`` along ``axis``."""
    values = axis.values[idx]
    if axis.is_category:
        return values.astype(int)
    data = np.log(values) if axis.kind == "log" else values
    count = min(MAX_BINS, max(2, len(idx) // 5))
    edges = np.unique(np.quantile(data, np.linspace(0, 1, count + 1)[1:-1]))
    return np.searchsorted(edges, data, side="right")


def eta_squared(codes: np.ndarray, y: np.ndarray) -> float:
    total = float(((y - y.mean()) ** 2).sum())
    if total <= 0:
        return 0.0
    _, inverse, sizes = np.unique(codes, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=y) / sizes
    return float((sizes * (means - y.mean()) ** 2).sum() / total)


def importances(frame: Frame) -> list[tuple[str, float, float]]:
    """(parameter, eta squared, the value expected with no effect), most important first."""
    idx = frame.succeeded()
    out = []
    for axis in frame.params:
        have = idx[np.isfinite(axis.values[idx])]
        if len(have) < MIN_TRIALS:
            continue
        y = np.argsort(np.argsort(frame.values[have], kind="stable"), kind="stable").astype(float)
        codes = bins(axis, have)
        chance = (len(np.unique(codes)) - 1) / (len(have) - 1)
        out.append((axis.name, eta_squared(codes, y), chance))
    return sorted(out, key=lambda item: -item[1])


def render(frame: Frame) -> Section:
    scores = importances(frame)
    used = len(frame.succeeded())
    note = f"On the {used} Succeeded trials. Method: {METHOD}. Caveat: {CAVEAT}"
    if not scores:
        return Section("importance", "Parameter importance",
                       f"Needs at least {MIN_TRIALS} Succeeded trials. {note}", "")
    width, row = 640, 28
    height = 20 + row * len(scores) + 20
    left, right = 150, width - 60
    parts = []
    for k, (name, score, chance) in enumerate(scores):
        y = 14 + k * row
        w = (right - left) * score
        parts.append(f'<text class="label" x="{left - 8}" y="{y + 15}" text-anchor="end">{esc(name)}</text>'
                     f'<rect class="bar" x="{left}" y="{y + 2}" width="{c(max(w, 1))}" height="{row - 8}">'
                     f'<title>{esc(name)}: {score:.3f}</title></rect>'
                     f'<line class="chance" x1="{c(left + (right - left) * chance)}" '
                     f'x2="{c(left + (right - left) * chance)}" y1="{y}" y2="{y + row - 4}"/>'
                     f'<text class="tick" x="{c(left + w + 6)}" y="{y + 15}">{score:.3f}</text>')
    parts.append(f'<line class="axis" x1="{left}" x2="{left}" y1="10" y2="{height - 16}"/>')
    svg = (f'<svg class="plot" data-plot="importance" viewBox="0 0 {width} {height}" width="{width}" '
           f'height="{height}">{"".join(parts)}</svg>')
    return Section("importance", "Parameter importance", note, svg)
