"""What is kept of a trial's intermediate reports: small and bounded whatever the number of reports.

Each report is a value of the objective at a resource level (``step`` by default: epochs, iterations).
Kept: the number of reports, the latest, the best and the running average of the values, a learning curve
thinned to at most :data:`CURVE_POINTS` points (every other point is dropped when it is full, so it keeps
an even spread over the steps seen), and, for ASHA, the value at each rung the trial reached. Values are
oriented by the caller: ``better(a, b)`` is the experiment's direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

CURVE_POINTS = 64


def rung_key(rung: float) -> str:
    """A rung as the text that names it in a record (``1``, ``3``, ``9``, ``2.5``)."""
    return f"{rung:g}"


@dataclass
class Progress:
    reports: int = 0
    step: float | None = None  # the resource level of the latest report
    value: float | None = None  # the latest value
    best: float | None = None
    mean: float | None = None  # the running average of the values so far
    curve: list[tuple[float, float, float]] = field(default_factory=list)  # (step, value, running average)
    rungs: dict[str, float] = field(default_factory=dict)  # rung (resource level, as text) -> value there
    stride: int = 1  # the curve keeps every stride-th report

    def add(self, step: float, value: float, maximize: bool) -> bool:
        """Records one report; False (and nothing recorded) for a value that is not finite or a step that
        goes back."""
        if not math.isfinite(value) or not math.isfinite(step) or (self.step is not None and step < self.step):
            return False
        self.reports += 1
        self.step, self.value = step, value
        if self.best is None or (value > self.best if maximize else value < self.best):
            self.best = value
        self.mean = value if self.mean is None else self.mean + (value - self.mean) / self.reports
        if (self.reports - 1) % self.stride == 0:
            self.curve.append((step, value, self.mean))
            if len(self.curve) > CURVE_POINTS:
                self.curve = self.curve[::2]
                self.stride *= 2
        return True

    def mean_at(self, step: float) -> float | None:
        """The running average as it was at the last kept point at or before ``step``."""
        known = [mean for at, _, mean in self.curve if at <= step]
        return known[-1] if known else None

    def to_dict(self) -> dict[str, Any]:
        return {"reports": self.reports, "step": self.step, "value": self.value, "best": self.best,
                "mean": self.mean, "curve": [list(point) for point in self.curve], "rungs": self.rungs,
                "stride": self.stride}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Progress:
        if not data:
            return cls()
        return cls(reports=int(data.get("reports", 0)), step=data.get("step"), value=data.get("value"),
                   best=data.get("best"), mean=data.get("mean"),
                   curve=[(float(a), float(b), float(c)) for a, b, c in data.get("curve") or []],
                   rungs={str(k): float(v) for k, v in (data.get("rungs") or {}).items()},
                   stride=int(data.get("stride", 1)))
