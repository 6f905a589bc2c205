"""The parameter kinds of a search space: one model per kind, each owning its manifest fields, their checks,
its unit-cube encoding and its grid, as scikit-optimize's ``Real``/``Integer``/``Categorical`` do.

========== ======== ==========================================================================
type       columns  encoding
========== ======== ==========================================================================
double     1        ``(x - min) / (max - min)``, on ``log x`` for log scale
int        1        as double over ``[min - 0.5, max + 0.5]``; decoding rounds, so every int owns
                    an equal slice of the axis and ``decode(encode(v)) == v`` (exactly while the
                    range is narrower than 2**53, a float's precision)
discrete   1        the index of the value among the sorted values, one equal slice each
categorical k        one-hot; decoding takes the argmax
========== ======== ==========================================================================

Every operation costs the same however wide an int range is: nothing lists a range's values. A new kind
is one class here and one entry in :data:`Parameter`.
"""

from __future__ import annotations

import math
import re
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import Discriminator, Field, field_validator, model_validator

from kubetune.core.manifest_model import INT_LIMIT, ManifestModel

PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
Scalar = str | int | float | bool
# Grid values along one parameter at most (a grid lists them): far more than any grid search can visit.
MAX_GRID_STEPS = 100_000
# Fields a parameter of some kind may have besides name and type, for the message about a misplaced one.
_KIND_FIELDS = ("min", "max", "scale", "steps", "values")


@dataclass(frozen=True)
class Axis:
    """The values a grid search visits along one parameter, without listing them: value ``i`` is ``at(i)``
    for ``0 <= i < size``."""

    size: int
    at: Callable[[int], Scalar]

    @classmethod
    def of(cls, values: Sequence[Scalar]) -> Axis:
        return cls(len(values), values.__getitem__)


class ParameterBase(ManifestModel):
    """What every kind provides. ``u`` arguments are this parameter's columns of unit-cube points,
    ``(n, width)``."""

    name: str = Field(description="Parameter name, referenced in the trial template as ${params.NAME}.")
    type: str = Field(description="double | int | discrete | categorical.")  # a Literal in each kind
    own_fields: ClassVar[tuple[str, ...]] = ()
    takes: ClassVar[str] = ""  # the fields that define the kind, for messages
    # A range of numbers (double, int) on one column, which the GP engine warps.
    is_range: ClassVar[bool] = False

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not PARAMETER_NAME.match(value):
            raise ValueError(
                f"parameter name {value!r} must start with a letter or '_' and contain only letters, "
                "digits, '_', '-' and '.'"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _only_own_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        foreign = [f for f in _KIND_FIELDS if f in data and f not in cls.own_fields]
        if foreign:
            raise ValueError(f"{data.get('type')} parameter {data.get('name')!r} takes {cls.takes}, not "
                             f"{'/'.join(foreign)}")
        return cls._prepared(data)

    @classmethod
    def _prepared(cls, data: dict[str, Any]) -> dict[str, Any]:
        """The manifest's fields of this kind, checked or converted where pydantic's own message would not say
        what is wrong."""
        return data

    @property
    def width(self) -> int:
        return 1

    @abstractmethod
    def size(self) -> float:
        """Number of distinct values (``inf`` for a double)."""

    @abstractmethod
    def encode(self, value: Any) -> np.ndarray:
        """``(width,)`` point for one value."""

    @abstractmethod
    def decode(self, u: np.ndarray) -> list[Any]:
        """The value each row stands for."""

    @abstractmethod
    def snap(self, u: np.ndarray) -> np.ndarray:
        """Vectorised ``encode(decode(u))``."""

    def keys(self, u: np.ndarray) -> list[Any]:
        """``[key(v) for v in decode(u)]``."""
        return [self.key(v) for v in self.decode(u)]

    @abstractmethod
    def key(self, value: Any) -> Any:
        """Hashable identity of a value: equal keys mean the same value."""

    @abstractmethod
    def canonical(self, value: Any) -> Any:
        """``value`` in its canonical type; ValueError when it is not a value of this parameter."""

    @abstractmethod
    def axis(self, default_steps: int | None) -> Axis:
        """What a grid search visits; ValueError when that needs steps and none are given."""

    @abstractmethod
    def describe(self) -> tuple[str, str]:
        """The range or values, and the scale, as ``kubetune validate`` shows them."""


class _RangeParameter(ParameterBase):
    """A number between ``min`` and ``max``, on a linear or log scale."""

    min: float
    max: float
    scale: Literal["linear", "log"] = Field(default="linear", description="Search on a linear or log scale.")
    steps: int | None = Field(
        default=None, ge=2, le=MAX_GRID_STEPS, description="Grid search: number of evenly spaced values."
    )
    own_fields: ClassVar[tuple[str, ...]] = ("min", "max", "scale", "steps")
    takes: ClassVar[str] = "min and max"
    is_range: ClassVar[bool] = True

    @classmethod
    def _prepared(cls, data: dict[str, Any]) -> dict[str, Any]:
        missing = [bound for bound in ("min", "max") if data.get(bound) is None]
        if missing:
            raise ValueError(f"{data.get('type')} parameter {data.get('name')!r} needs {' and '.join(missing)}")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> _RangeParameter:
        for bound in ("min", "max"):
            value = getattr(self, bound)
            if not math.isfinite(value):
                raise ValueError(f"{bound} of parameter {self.name!r} must be finite, got {value}")
        if self.max <= self.min:
            raise ValueError(f"max ({_num(self.max)}) must be greater than min ({_num(self.min)})")
        if not math.isfinite(float(self.max) - float(self.min)):
            raise ValueError(f"the range of parameter {self.name!r} is too wide: max - min must be a finite number")
        if self.scale == "log" and self.min <= 0:
            raise ValueError(f"log scale needs min > 0, but parameter {self.name!r} has min {_num(self.min)}")
        return self

    def _bounds(self) -> tuple[float, float]:
        """The ends of the encoded interval, before the log of a log scale."""
        return float(self.min), float(self.max)

    def _transformed_bounds(self) -> tuple[float, float]:
        lo, hi = self._bounds()
        return (math.log(lo), math.log(hi)) if self.scale == "log" else (lo, hi)

    def _to_unit(self, x: np.ndarray) -> np.ndarray:
        lo, hi = self._transformed_bounds()
        x = np.log(x) if self.scale == "log" else x
        return (x - lo) / (hi - lo)

    def _from_unit(self, u: np.ndarray) -> np.ndarray:
        lo, hi = self._transformed_bounds()
        x = lo + np.clip(u[:, 0], 0.0, 1.0) * (hi - lo)
        return np.exp(x) if self.scale == "log" else x

    def encode(self, value: Any) -> np.ndarray:
        return self._to_unit(np.array([float(value)]))

    def _spaced(self, steps: int) -> np.ndarray:
        spaced = np.geomspace if self.scale == "log" else np.linspace
        return spaced(float(self.min), float(self.max), steps)

    def _check_number(self, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"parameter {self.name!r} takes a number, got {value!r}")
        if not self.min <= value <= self.max:
            raise ValueError(f"{value!r} is outside [{_num(self.min)}, {_num(self.max)}] for parameter {self.name!r}")

    def describe(self) -> tuple[str, str]:
        return f"[{_num(self.min)}, {_num(self.max)}]", self.scale


class DoubleParameter(_RangeParameter):
    """A real number."""

    type: Literal["double"] = Field(description="double | int | discrete | categorical.")
    min: float = Field(description="Lower bound.")
    max: float = Field(description="Upper bound.")

    def size(self) -> float:
        return math.inf

    def decode(self, u: np.ndarray) -> list[Any]:
        return [float(v) for v in np.clip(self._from_unit(u), self.min, self.max)]

    def snap(self, u: np.ndarray) -> np.ndarray:
        return np.clip(u, 0.0, 1.0)

    def keys(self, u: np.ndarray) -> list[Any]:
        return [round(v, 12) for v in self.decode(u)]

    def key(self, value: Any) -> Any:
        return round(float(value), 12)

    def canonical(self, value: Any) -> Any:
        self._check_number(value)
        return float(value)

    def axis(self, default_steps: int | None) -> Axis:
        steps = self.steps or default_steps
        if steps is None:
            raise ValueError(f"grid search needs steps for double parameter {self.name!r}")
        return Axis.of([float(x) for x in self._spaced(steps)])


class IntParameter(_RangeParameter):
    """A whole number; any range within 64-bit integers, at the same cost however wide."""

    type: Literal["int"] = Field(description="double | int | discrete | categorical.")
    min: int = Field(description="Lower bound.")
    max: int = Field(description="Upper bound.")

    @classmethod
    def _prepared(cls, data: dict[str, Any]) -> dict[str, Any]:
        data = super()._prepared(data)
        return {**data, **{bound: _whole_number(data[bound], bound, data.get("name")) for bound in ("min", "max")}}

    def _bounds(self) -> tuple[float, float]:
        return self.min - 0.5, self.max + 0.5

    def size(self) -> float:
        return self.max - self.min + 1

    def decode(self, u: np.ndarray) -> list[Any]:
        # Clipped as Python ints: near the ends of the 64-bit range a float rounds past them.
        return [min(max(int(v), self.min), self.max) for v in np.round(self._from_unit(u))]

    def snap(self, u: np.ndarray) -> np.ndarray:
        return self._to_unit(np.array(self.decode(u), dtype=float))[:, None]

    def keys(self, u: np.ndarray) -> list[Any]:
        return self.decode(u)

    def key(self, value: Any) -> Any:
        return int(value)

    def canonical(self, value: Any) -> Any:
        self._check_number(value)
        if value != int(value):
            raise ValueError(f"parameter {self.name!r} takes a whole number, got {value!r}")
        return int(value)

    def axis(self, default_steps: int | None) -> Axis:
        steps = self.steps or default_steps
        if steps is None:  # every int
            low = self.min
            return Axis(self.max - self.min + 1, lambda i: low + i)
        return Axis.of(sorted({min(max(int(round(x)), self.min), self.max) for x in self._spaced(steps)}))


class _ChoiceParameter(ParameterBase):
    """One of a list of values."""

    values: list[Scalar] = Field(description="The allowed values: numbers (discrete); strings, numbers or booleans "
                                 "(categorical).")
    own_fields: ClassVar[tuple[str, ...]] = ("values",)
    takes: ClassVar[str] = "values"

    @model_validator(mode="after")
    def _distinct_values(self) -> _ChoiceParameter:
        if not self.values:
            raise ValueError(f"{self.type} parameter {self.name!r} needs a non-empty list of values")
        for value in self.values:
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{self.type} parameter {self.name!r} has a value that is not finite")
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_LIMIT:
                raise ValueError(f"{self.type} parameter {self.name!r} has the value {value}, beyond 64-bit "
                                 "integers")
        keys = [_value_key(v) for v in self.values]
        if len(set(keys)) != len(keys):
            duplicate = next(v for i, v in enumerate(self.values) if _value_key(v) in keys[:i])
            raise ValueError(f"parameter {self.name!r} lists the value {duplicate!r} more than once")
        return self

    def choices(self) -> list[Scalar]:
        return list(self.values)

    def size(self) -> float:
        return len(self.values)

    def index_of(self, value: Any) -> int:
        choices = self.choices()
        for i, choice in enumerate(choices):
            if _same(choice, value):
                return i
        raise ValueError(f"{value!r} is not one of the values of parameter {self.name!r}: {choices}")

    def key(self, value: Any) -> Any:
        return self.index_of(value)

    def keys(self, u: np.ndarray) -> list[Any]:
        return self._indices(u).tolist()

    @abstractmethod
    def _indices(self, u: np.ndarray) -> np.ndarray:
        """Index of the chosen value for each row."""

    def decode(self, u: np.ndarray) -> list[Any]:
        choices = self.choices()
        return [choices[i] for i in self._indices(u)]

    def canonical(self, value: Any) -> Any:
        return self.choices()[self.index_of(value)]

    def axis(self, default_steps: int | None) -> Axis:
        return Axis.of(self.choices())

    def describe(self) -> tuple[str, str]:
        return ", ".join(map(str, self.values)), ""


class DiscreteParameter(_ChoiceParameter):
    """One of a list of numbers, on one column in sorted order."""

    type: Literal["discrete"] = Field(description="double | int | discrete | categorical.")

    @model_validator(mode="after")
    def _numbers(self) -> DiscreteParameter:
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in self.values):
            raise ValueError(
                f"discrete parameter {self.name!r} takes numbers; use type categorical for other values"
            )
        return self

    def choices(self) -> list[Scalar]:
        return sorted(self.values)

    def encode(self, value: Any) -> np.ndarray:
        return np.array([(self.index_of(value) + 0.5) / len(self.values)])

    def _indices(self, u: np.ndarray) -> np.ndarray:
        n = len(self.values)
        return np.clip(np.floor(u[:, 0] * n), 0, n - 1).astype(int)

    def snap(self, u: np.ndarray) -> np.ndarray:
        return ((self._indices(u) + 0.5) / len(self.values))[:, None]


class CategoricalParameter(_ChoiceParameter):
    """One of a list of unordered values (strings, numbers, booleans), one column each."""

    type: Literal["categorical"] = Field(description="double | int | discrete | categorical.")

    @property
    def width(self) -> int:
        return len(self.values)

    def encode(self, value: Any) -> np.ndarray:
        out = np.zeros(self.width)
        out[self.index_of(value)] = 1.0
        return out

    def _indices(self, u: np.ndarray) -> np.ndarray:
        return np.argmax(u, axis=1)

    def snap(self, u: np.ndarray) -> np.ndarray:
        return np.eye(self.width)[self._indices(u)]


KINDS: dict[str, type[ParameterBase]] = {
    "double": DoubleParameter, "int": IntParameter, "discrete": DiscreteParameter,
    "categorical": CategoricalParameter,
}
Parameter = Annotated[
    DoubleParameter | IntParameter | DiscreteParameter | CategoricalParameter,
    Discriminator("type", custom_error_type="parameter_type",
                  custom_error_message="type must be one of double, int, discrete, categorical"),
    Field(description="One dimension of the search space; which fields apply depends on ``type``."),
]


def _whole_number(value: Any, bound: str, name: Any) -> Any:
    """An int parameter's bound as an int when it is a whole number (``1e6`` is a string to YAML); other
    values are left for pydantic to refuse, with its message."""
    if isinstance(value, bool) or not isinstance(value, str | float | int):
        return value
    try:
        number = Decimal(value.strip()) if isinstance(value, str) else Decimal(value)
    except (InvalidOperation, ValueError):
        return value
    if not number.is_finite():
        raise ValueError(f"{bound} of parameter {name!r} must be finite, got {value}")
    if number != number.to_integral_value():
        raise ValueError(f"{bound} of int parameter {name!r} must be a whole number, got {value}")
    if abs(number) > INT_LIMIT:
        raise ValueError(f"{bound} of int parameter {name!r} must be between -{INT_LIMIT} and {INT_LIMIT} "
                         f"(64-bit integers), got {value}")
    return int(number)


def _num(value: float) -> str:
    """A bound as a user wrote it: ``1000`` rather than ``1000.0``, ``1e+300`` rather than 301 digits."""
    if isinstance(value, int) or (value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    return repr(value)


def _value_key(value: Scalar) -> tuple[str, Scalar]:
    """Equality that keeps True apart from 1 and "1" apart from 1."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", value)  # 1 == 1.0 and their hashes agree; no float() of a huge int
    return ("str", value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return isinstance(a, str) == isinstance(b, str) and a == b
