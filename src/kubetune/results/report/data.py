"""The numbers every plot of the report draws, computed once from :class:`~kubetune.results.model.Results`:
per trial its objective value, state, times (seconds from the first start) and parameter values, and per
parameter an axis that knows its kind (linear, log or categories)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from kubetune.core.lifecycle import TrialRecord, TrialState
from kubetune.core.metrics import finite_number
from kubetune.results.model import Results


@dataclass
class ParamAxis:
    """One parameter: ``kind`` is ``linear``, ``log`` or ``category``; ``values`` holds each trial's value
    (NaN where it has none), for categories the index into ``categories``."""

    name: str
    kind: str
    values: np.ndarray
    categories: list[str] = field(default_factory=list)

    @property
    def is_category(self) -> bool:
        return self.kind == "category"

    def label(self, i: int) -> str:
        v = self.values[i]
        if math.isnan(v):
            return ""
        return self.categories[int(v)] if self.is_category else f"{v:.6g}"


@dataclass
class Frame:
    """The trials of a report, by position ``i`` (sorted by trial number)."""

    results: Results
    trials: list[TrialRecord]
    numbers: np.ndarray  # (n,) trial numbers
    values: np.ndarray  # (n,) objective, NaN where none
    states: list[str]
    started: np.ndarray  # (n,) seconds from the first start, NaN where unknown
    finished: np.ndarray  # (n,) seconds, NaN while running or unknown
    params: list[ParamAxis]
    maximize: bool
    origin: datetime | None

    @property
    def n(self) -> int:
        return len(self.trials)

    def succeeded(self) -> np.ndarray:
        """Positions of the trials with a result: Succeeded and a finite value."""
        ok = np.array([s == TrialState.SUCCEEDED for s in self.states], dtype=bool)
        return np.flatnonzero(ok & np.isfinite(self.values))

    def scored(self) -> np.ndarray:
        """Positions of the trials with a value to plot (Succeeded, or EarlyStopped at its last report)."""
        return np.flatnonzero(np.isfinite(self.values))

    def goodness(self, idx: np.ndarray) -> np.ndarray:
        """For positions ``idx``, 0 (worst) to 1 (best) by rank of the objective."""
        if len(idx) < 2:
            return np.ones(len(idx))
        v = self.values[idx] * (1.0 if self.maximize else -1.0)
        ranks = np.argsort(np.argsort(v, kind="stable"), kind="stable")
        return np.asarray(ranks / (len(idx) - 1), dtype=float)

    def best_first(self, idx: np.ndarray) -> np.ndarray:
        v = self.values[idx] * (-1.0 if self.maximize else 1.0)
        return np.asarray(idx[np.argsort(v, kind="stable")])


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def build_frame(results: Results) -> Frame:
    trials = sorted(results.trials, key=lambda t: t.number)
    starts = [parse_time(t.started) for t in trials] + [parse_time(a.started) for a in results.attempts]
    known = [s for s in starts if s is not None]
    origin = min(known) if known else None
    return Frame(
        results=results, trials=trials,
        numbers=np.array([t.number for t in trials], dtype=float),
        values=np.array([_num(t.value) for t in trials], dtype=float),
        states=[str(t.state) for t in trials],
        started=seconds([t.started for t in trials], origin),
        finished=seconds([t.finished for t in trials], origin),
        params=param_axes(results.spec, trials),
        maximize=results.direction == "maximize", origin=origin)


def seconds(times: list[str | None], origin: datetime | None) -> np.ndarray:
    out = np.full(len(times), np.nan)
    if origin is None:
        return out
    for i, text in enumerate(times):
        moment = parse_time(text)
        if moment is not None:
            out[i] = (moment - origin).total_seconds()
    return out


def _num(value: Any) -> float:
    number = finite_number(value)
    return math.nan if number is None else number


def param_axes(spec: dict[str, Any], trials: list[TrialRecord]) -> list[ParamAxis]:
    """An axis per parameter of the manifest's search space, then any other parameter the trials have."""
    parameters = spec.get("parameters")
    declared = [p for p in parameters if isinstance(p, dict)] if isinstance(parameters, list) else []
    names = [str(p.get("name")) for p in declared]
    for trial in trials:
        names += [k for k in trial.params if k not in names]
    kinds = {str(p.get("name")): p for p in declared}
    return [_axis(name, kinds.get(name, {}), [t.params.get(name) for t in trials]) for name in names]


def _axis(name: str, declared: dict[str, Any], raw: list[Any]) -> ParamAxis:
    numeric = all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in raw)
    if declared.get("type") == "categorical" or not numeric:
        categories = [str(v) for v in declared.get("values") or []]
        for v in raw:
            if v is not None and str(v) not in categories:
                categories.append(str(v))
        index = {c: i for i, c in enumerate(categories)}
        values = np.array([math.nan if v is None else index[str(v)] for v in raw], dtype=float)
        return ParamAxis(name, "category", values, categories)
    values = np.array([_num(v) for v in raw], dtype=float)
    log = declared.get("scale") == "log" and bool(np.all(values[np.isfinite(values)] > 0))
    return ParamAxis(name, "log" if log else "linear", values)


@dataclass
class Section:
    """One section of the page: its anchor, title, a line saying what it shows, and its HTML."""

    id: str
    title: str
    note: str
    body: str
