"""The search space: parameter values <-> points of the unit hypercube.

Every strategy works on the unit cube ``[0, 1]^D`` and converts to parameter values only at the edge, so the
GP engine, random and Sobol sampling share one encoding. Each parameter kind owns its part of the encoding
(:mod:`kubetune.core.parameters`); the space lays the kinds' columns side by side.

``decode(encode(params)) == params`` for every valid assignment; ``snap(u) = encode(decode(u))`` maps any
point to the canonical point of the assignment it stands for, which is how duplicates are recognised.
Nothing here lists the values of a range, so its cost does not grow with how wide an int range is.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import TypeAdapter

from kubetune.core.parameters import Axis, Parameter, ParameterBase

Params = dict[str, Any]
_PARAMETER = TypeAdapter(Parameter)


@dataclass(frozen=True)
class Dimension:
    """One parameter and the columns it owns in the unit-cube encoding."""

    parameter: ParameterBase
    start: int  # first column

    @property
    def name(self) -> str:
        return self.parameter.name

    @property
    def width(self) -> int:
        return self.parameter.width

    @property
    def columns(self) -> slice:
        return slice(self.start, self.start + self.width)


class Space:
    """The ordered list of dimensions of an experiment and the encoding of whole assignments."""

    def __init__(self, parameters: Sequence[ParameterBase | dict[str, Any]]):
        parsed = [p if isinstance(p, ParameterBase) else _PARAMETER.validate_python(p) for p in parameters]
        if not parsed:
            raise ValueError("a search space needs at least one parameter")
        names = [p.name for p in parsed]
        if len(set(names)) != len(names):
            raise ValueError(f"parameter names must be unique, got {names}")
        self.dimensions: list[Dimension] = []
        start = 0
        for p in parsed:
            self.dimensions.append(Dimension(p, start))
            start += p.width
        self.n_columns = start

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def size(self) -> float:
        """Number of distinct assignments (``inf`` when a double is present); exact for int ranges."""
        return math.prod(d.parameter.size() for d in self.dimensions)

    def encode(self, params: Params) -> np.ndarray:
        """``(n_columns,)`` point for one assignment."""
        return np.concatenate([d.parameter.encode(params[d.name]) for d in self.dimensions])

    def encode_many(self, many: Sequence[Params]) -> np.ndarray:
        """``(n, n_columns)``."""
        if not many:
            return np.zeros((0, self.n_columns))
        return np.stack([self.encode(p) for p in many])

    def decode(self, u: np.ndarray) -> Params:
        return self.decode_many(np.asarray(u).reshape(1, -1))[0]

    def decode_many(self, u: np.ndarray) -> list[Params]:
        """``u``: ``(n, n_columns)`` -> n assignments."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        columns = {d.name: d.parameter.decode(u[:, d.columns]) for d in self.dimensions}
        return [{name: values[i] for name, values in columns.items()} for i in range(u.shape[0])]

    def snap(self, u: np.ndarray) -> np.ndarray:
        """``(n, n_columns)`` -> the canonical encoding of the assignment each row decodes to."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        out = np.empty_like(u)
        for d in self.dimensions:
            out[:, d.columns] = d.parameter.snap(u[:, d.columns])
        return out

    def keys_of_points(self, u: np.ndarray) -> list[tuple]:
        """``[self.key(p) for p in self.decode_many(u)]``, computed column-wise."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        columns = [d.parameter.keys(u[:, d.columns]) for d in self.dimensions]
        return list(zip(*columns, strict=True))

    def validate(self, params: Params) -> Params:
        """The assignment in canonical types; raises ValueError naming what is wrong."""
        names = self.names
        missing = [n for n in names if n not in params]
        extra = [n for n in params if n not in names]
        if missing or extra:
            raise ValueError(f"assignment {params} does not match the space (missing {missing}, unknown {extra})")
        return {d.name: d.parameter.canonical(params[d.name]) for d in self.dimensions}

    def key(self, params: Params) -> tuple:
        """Hashable identity of an assignment: equal keys mean the same trial configuration."""
        return tuple(d.parameter.key(params[d.name]) for d in self.dimensions)

    def grid(self, default_steps: int | None = None) -> Iterator[Params]:
        """Every grid point, the last parameter varying fastest, one at a time (never listed in full)."""
        axes = self._axes(default_steps)
        for index in range(math.prod(axis.size for axis in axes)):
            yield self._grid_point(axes, index)

    def grid_size(self, default_steps: int | None = None) -> int:
        return math.prod(axis.size for axis in self._axes(default_steps))

    def _axes(self, default_steps: int | None) -> list[Axis]:
        return [d.parameter.axis(default_steps) for d in self.dimensions]

    def _grid_point(self, axes: list[Axis], index: int) -> Params:
        values = []
        for axis in reversed(axes):
            index, position = divmod(index, axis.size)
            values.append(axis.at(position))
        return dict(zip(self.names, reversed(values), strict=True))
