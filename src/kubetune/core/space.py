"""The search space: parameter values <-> points of the unit hypercube.

Every strategy works on the unit cube ``[0, 1]^D`` and converts to parameter values only at the edge, so the
GP engine, random and Sobol sampling share one encoding:

========== ======== ==========================================================================
type       columns  encoding
========== ======== ==========================================================================
double     1        ``(x - min) / (max - min)``, on ``log x`` for log scale
int        1        as double over ``[min - 0.5, max + 0.5]``; decoding rounds, so every int owns
                    an equal slice of the axis and ``decode(encode(v)) == v``
discrete   1        the index of the value among the sorted values, one equal slice each
categorical k        one-hot; decoding takes the argmax
========== ======== ==========================================================================

``decode(encode(params)) == params`` for every valid assignment; ``snap(u) = encode(decode(u))`` maps any
point to the canonical point of the assignment it stands for, which is how duplicates are recognised.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kubetune.core.spec import Parameter, Scalar

Params = dict[str, Any]


@dataclass(frozen=True)
class Dimension:
    """One parameter and the columns it owns in the unit-cube encoding."""

    parameter: Parameter
    start: int  # first column
    width: int  # number of columns

    @property
    def name(self) -> str:
        return self.parameter.name

    @property
    def kind(self) -> str:
        return self.parameter.type

    # -- finite choices ---------------------------------------------------------------------------------
    def choices(self) -> list[Scalar] | None:
        """The finite list of values, or None for a double."""
        p = self.parameter
        if p.type == "int":
            return list(range(int(p.min), int(p.max) + 1))
        if p.type == "discrete":
            return sorted(p.values)
        if p.type == "categorical":
            return list(p.values)
        return None

    def size(self) -> float:
        choices = self.choices()
        return math.inf if choices is None else len(choices)

    def grid(self, default_steps: int | None) -> list[Scalar]:
        """Values a grid search visits along this dimension: ``steps`` evenly spaced (geometrically on log
        scale) between min and max, every int when an int parameter has no steps, all listed values."""
        p = self.parameter
        steps = p.steps or default_steps
        if p.type in ("discrete", "categorical") or (p.type == "int" and p.steps is None and steps is None):
            return self.choices()
        if steps is None:
            raise ValueError(f"grid search needs steps for double parameter {p.name!r}")
        spaced = np.geomspace if p.scale == "log" else np.linspace
        xs = spaced(float(p.min), float(p.max), steps)
        if p.type == "int":
            return sorted({int(round(x)) for x in xs})
        return [float(x) for x in xs]

    # -- encoding ------------------------------------------------------------------------------------------
    def encode(self, value: Any) -> np.ndarray:
        p = self.parameter
        if p.type == "categorical":
            out = np.zeros(self.width)
            out[self._index_of(value)] = 1.0
            return out
        if p.type == "discrete":
            n = len(p.values)
            return np.array([(self._index_of(value) + 0.5) / n])
        lo, hi = self._bounds()
        x = float(value)
        if p.scale == "log":
            x = math.log(x)
        return np.array([(x - lo) / (hi - lo)])

    def decode_column(self, u: np.ndarray) -> list[Any]:
        """Decodes this dimension's columns of ``u`` (shape ``(n, width)`` or ``(width,)`` for one point)."""
        u = np.atleast_2d(np.asarray(u, dtype=float).reshape(-1, self.width))
        p = self.parameter
        if p.type == "categorical":
            return [p.values[i] for i in np.argmax(u, axis=1)]
        if p.type == "discrete":
            values = sorted(p.values)
            idx = np.clip(np.floor(u[:, 0] * len(values)), 0, len(values) - 1).astype(int)
            return [values[i] for i in idx]
        lo, hi = self._bounds()
        x = lo + np.clip(u[:, 0], 0.0, 1.0) * (hi - lo)
        if p.scale == "log":
            x = np.exp(x)
        if p.type == "int":
            return [int(v) for v in np.clip(np.round(x), p.min, p.max)]
        return [float(v) for v in np.clip(x, p.min, p.max)]

    def _indices(self, u: np.ndarray) -> np.ndarray:
        """Index of the chosen value (int, discrete, categorical) for each row of this dimension's columns."""
        p = self.parameter
        if p.type == "categorical":
            return np.argmax(u, axis=1)
        if p.type == "discrete":
            n = len(p.values)
            return np.clip(np.floor(u[:, 0] * n), 0, n - 1).astype(int)
        return np.array(self.decode_column(u), dtype=int) - int(p.min)

    def snap_columns(self, u: np.ndarray) -> np.ndarray:
        """Vectorised ``encode(decode(u))`` for this dimension's columns, ``(n, width)``."""
        p = self.parameter
        if p.type == "double":
            return np.clip(u, 0.0, 1.0)
        index = self._indices(u)
        if p.type == "categorical":
            return np.eye(self.width)[index]
        if p.type == "discrete":
            return ((index + 0.5) / len(p.values))[:, None]
        lo, hi = self._bounds()
        x = index + p.min
        x = np.log(x) if p.scale == "log" else x
        return ((x - lo) / (hi - lo))[:, None]

    def key_column(self, u: np.ndarray) -> list:
        """This dimension's part of :meth:`Space.key` for each row of its columns."""
        if self.kind == "double":
            return [round(v, 12) for v in self.decode_column(u)]
        return self._indices(u).tolist()

    def _bounds(self) -> tuple[float, float]:
        p = self.parameter
        lo, hi = float(p.min), float(p.max)
        if p.type == "int":
            lo, hi = lo - 0.5, hi + 0.5
        if p.scale == "log":
            return math.log(lo), math.log(hi)
        return lo, hi

    def _index_of(self, value: Any) -> int:
        choices = self.choices()
        for i, choice in enumerate(choices):
            if _same(choice, value):
                return i
        raise ValueError(f"{value!r} is not one of the values of parameter {self.name!r}: {choices}")

    def validate(self, value: Any) -> Any:
        """Returns ``value`` in its canonical type, or raises ValueError when it is outside the space."""
        p = self.parameter
        if p.type in ("discrete", "categorical"):
            return self.choices()[self._index_of(value)]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"parameter {self.name!r} takes a number, got {value!r}")
        if not p.min <= value <= p.max:
            raise ValueError(f"{value!r} is outside [{p.min}, {p.max}] for parameter {self.name!r}")
        if p.type == "int":
            if value != int(value):
                raise ValueError(f"parameter {self.name!r} takes a whole number, got {value!r}")
            return int(value)
        return float(value)


class Space:
    """The ordered list of dimensions of an experiment and the encoding of whole assignments."""

    def __init__(self, parameters: Sequence[Parameter | dict[str, Any]]):
        parsed = [p if isinstance(p, Parameter) else Parameter.model_validate(p) for p in parameters]
        if not parsed:
            raise ValueError("a search space needs at least one parameter")
        names = [p.name for p in parsed]
        if len(set(names)) != len(names):
            raise ValueError(f"parameter names must be unique, got {names}")
        self.dimensions: list[Dimension] = []
        start = 0
        for p in parsed:
            width = len(p.values) if p.type == "categorical" else 1
            self.dimensions.append(Dimension(p, start, width))
            start += width
        self.n_columns = start

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def size(self) -> float:
        """Number of distinct assignments (``inf`` when a double is present)."""
        return math.prod(d.size() for d in self.dimensions)

    def encode(self, params: Params) -> np.ndarray:
        """``(n_columns,)`` point for one assignment."""
        return np.concatenate([d.encode(params[d.name]) for d in self.dimensions])

    def encode_many(self, many: Sequence[Params]) -> np.ndarray:
        """``(n, n_columns)``."""
        if not many:
            return np.zeros((0, self.n_columns))
        return np.stack([self.encode(p) for p in many])

    def decode(self, u: np.ndarray) -> Params:
        return self.decode_many(np.asarray(u).reshape(1, -1))[0]

    def decode_many(self, u: np.ndarray) -> list[Params]:
        """``u``: ``(n, n_columns)`` -> n assignments."""
        u = np.asarray(u, dtype=float)
        columns = {d.name: d.decode_column(u[:, d.start : d.start + d.width]) for d in self.dimensions}
        return [{name: values[i] for name, values in columns.items()} for i in range(u.shape[0])]

    def snap(self, u: np.ndarray) -> np.ndarray:
        """``(n, n_columns)`` -> the canonical encoding of the assignment each row decodes to."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        out = np.empty_like(u)
        for d in self.dimensions:
            out[:, d.start : d.start + d.width] = d.snap_columns(u[:, d.start : d.start + d.width])
        return out

    def keys_of_points(self, u: np.ndarray) -> list[tuple]:
        """``[self.key(p) for p in self.decode_many(u)]``, computed column-wise."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        columns = [d.key_column(u[:, d.start : d.start + d.width]) for d in self.dimensions]
        return list(zip(*columns, strict=True))

    def validate(self, params: Params) -> Params:
        """The assignment in canonical types; raises ValueError naming what is wrong."""
        missing = [n for n in self.names if n not in params]
        extra = [n for n in params if n not in self.names]
        if missing or extra:
            raise ValueError(f"assignment {params} does not match the space (missing {missing}, unknown {extra})")
        return {d.name: d.validate(params[d.name]) for d in self.dimensions}

    def key(self, params: Params) -> tuple:
        """Hashable identity of an assignment: equal keys mean the same trial configuration."""
        parts = []
        for d in self.dimensions:
            value = params[d.name]
            if d.kind == "double":
                parts.append(round(float(value), 12))
            else:
                parts.append(d._index_of(value))
        return tuple(parts)

    def grid(self, default_steps: int | None = None) -> Iterator[Params]:
        """Every grid point, the last parameter varying fastest."""
        axes = [d.grid(default_steps) for d in self.dimensions]
        for combo in itertools.product(*axes):
            yield dict(zip(self.names, combo, strict=True))

    def grid_size(self, default_steps: int | None = None) -> int:
        return math.prod(len(d.grid(default_steps)) for d in self.dimensions)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return a == b
