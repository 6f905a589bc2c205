"""Reading the metrics a trial reports, and choosing its objective value.

Two line formats are understood, wherever they appear in a trial's output or metrics file:

- ``name=value`` pairs, as many per line as wanted (the Katib StdOut format): ``epoch 3: loss=0.21 acc=0.93``
- a JSON object per line: ``{"accuracy": 0.93, "step": 3}`` (what :func:`kubetune.report` prints)

Only the metrics the experiment asks for are kept, so stray ``lr=0.1`` log lines do no harm. A value that
is NaN or infinite is kept as reported; :func:`objective_value` then decides whether the trial has a usable
objective (``latest`` that is not finite means none; ``min``/``max`` choose among the finite values).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

Strategy = Literal["latest", "min", "max"]

_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:nan|inf(?:inity)?)"
KEY_VALUE = re.compile(rf"(?<![\w./-])([A-Za-z_][\w./-]*)\s*=\s*({_NUMBER})(?![\w.])", re.IGNORECASE)
STEP_KEYS = ("step", "epoch")


@dataclass
class MetricLog:
    """Every reported value of the wanted metrics, in the order they were reported."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)


def _reported(line: str) -> list[tuple[str, float]]:
    """Every ``(name, value)`` pair one line reports, in order: the numbers of a JSON object, else the
    ``name=value`` pairs."""
    stripped = line.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        try:
            document = json.loads(stripped)
        except ValueError:
            document = None
        if isinstance(document, dict):
            return [(str(k), as_float(v)) for k, v in document.items()
                    if isinstance(v, int | float) and not isinstance(v, bool)]
    return [(m.group(1), float(m.group(2))) for m in KEY_VALUE.finditer(line)]


def as_float(number: int | float) -> float:
    """``number`` as a float; an integer too large for one is infinite, as its decimal text would read."""
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def finite_number(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (not a boolean), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = as_float(value)
    return number if math.isfinite(number) else None


def parse_line(line: str) -> list[tuple[str, float]]:
    """The ``(name, value)`` pairs one line reports, in order (a JSON object's step or epoch is not one)."""
    stripped = line.strip()
    is_json = stripped.startswith("{") and stripped.endswith("}")
    return [(name, value) for name, value in _reported(line) if not (is_json and name in STEP_KEYS)]


def parse_lines(lines: Iterable[str], names: Iterable[str]) -> MetricLog:
    wanted = set(names)
    log = MetricLog()
    for line in lines:
        for name, value in parse_line(line):
            if name in wanted:
                log.add(name, value)
    return log


def parse_text(text: str, names: Iterable[str]) -> MetricLog:
    return parse_lines(text.splitlines(), names)


def objective_value(log: MetricLog, metric: str, strategy: Strategy) -> float | None:
    """The value that counts for the objective, or None when the trial gave no usable one."""
    values = log.values.get(metric, [])
    if not values:
        return None
    if strategy == "latest":
        value = values[-1]
        return value if math.isfinite(value) else None
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    return min(finite) if strategy == "min" else max(finite)


def final_metrics(log: MetricLog, objective: str, strategy: Strategy) -> dict[str, float | None]:
    """One value per reported metric for the trial's record: the objective by ``strategy``, the others
    their latest value; values that are not finite become None (JSON has no NaN)."""
    result: dict[str, float | None] = {}
    for name, values in log.values.items():
        if name == objective:
            result[name] = objective_value(log, name, strategy)
        else:
            result[name] = values[-1] if math.isfinite(values[-1]) else None
    return result


def progress_report(line: str, resource: str, metric: str) -> tuple[float, float] | None:
    """``(resource level, objective value)`` when ``line`` reports both (a JSON object or ``name=value`` pairs,
    e.g. ``{"step": 3, "loss": 0.4}`` or ``epoch 3: step=3 loss=0.4``), else None."""
    values = dict(_reported(line))
    if resource in values and metric in values:
        return values[resource], values[metric]
    return None
