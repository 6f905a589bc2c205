"""What a conversion says about the fields it could not carry over, and the state the conversion steps share.

A :class:`Note` names the Katib field it is about (``spec.algorithm.algorithmSettings[0]``) and says why it
was not carried over and what to do instead. A *refusal* is a note that makes the result unfit to run as the
Katib Experiment ran (a neural-architecture search, a metrics collector kubetune has no counterpart for, a
distributed training job): the document is then not converted at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeGuard


@dataclass(frozen=True)
class Note:
    path: str  # the Katib field, as in the manifest: "spec.parameters[1].feasibleSpace.step"
    message: str
    refusal: bool = False

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass
class Conversion:
    """One document converted: the kubetune Experiment (None when refused) and what was said about it."""

    manifest: dict[str, Any] | None
    notes: list[Note]
    name: str = ""  # the Katib Experiment's metadata.name, for messages

    @property
    def refused(self) -> bool:
        return self.manifest is None


class Refused(Exception):
    """Raised by a step that cannot go on; the conversion records it as a refusal. A ``final`` refusal (a
    neural-architecture search, say) ends the conversion: the other fields' notes would only be noise."""

    def __init__(self, path: str, message: str, final: bool = False):
        super().__init__(message)
        self.note = Note(path, message, refusal=True)
        self.final = final


@dataclass
class Context:
    """What the conversion steps read and write: the Katib spec, the kubetune spec being built, and the notes."""

    katib: dict[str, Any]  # the Katib Experiment's spec
    namespace: str | None
    spec: dict[str, Any] = field(default_factory=dict)  # the kubetune spec
    notes: list[Note] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # Katib parameter name -> kubetune parameter name
    constants: dict[str, Any] = field(default_factory=dict)  # Katib parameter name -> its one value

    def warn(self, path: str, message: str) -> None:
        self.notes.append(Note(path, message))

    def refuse(self, path: str, message: str) -> None:
        """A refusal that does not stop the other steps, so that one run names every problem."""
        self.notes.append(Note(path, message, refusal=True))


def known(value: Any, table: Any) -> TypeGuard[str]:
    """Whether ``value`` is a name in ``table`` (a value of any other type, a list say, is not)."""
    return isinstance(value, str) and value in table


def mapping(value: Any, path: str) -> dict[str, Any]:
    """``value`` when it is a mapping; None and a missing field are an empty one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Refused(path, f"must be a mapping, got {_shown(value)}")
    return value


def items(value: Any, path: str) -> list[Any]:
    """``value`` when it is a list; None and a missing field are an empty one."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise Refused(path, f"must be a list, got {_shown(value)}")
    return value


def text(value: Any, path: str) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise Refused(path, f"must be a string, got {_shown(value)}")
    return str(value)


def decimal(value: Any, path: str) -> Decimal:
    """A Katib number (they are strings in the CRD: ``"0.01"``), exactly as written."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise Refused(path, f"must be a number, got {_shown(value)}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise Refused(path, f"must be a number, got {_shown(value)}") from None
    if not number.is_finite():
        raise Refused(path, f"must be a finite number, got {_shown(value)}")
    return number


def number(value: Any, path: str) -> int | float:
    """A Katib number as the manifest should hold it: an int when it is whole and written without a point."""
    exact = decimal(value, path)
    if exact == exact.to_integral_value() and "." not in str(value) and "e" not in str(value).lower():
        return int(exact)
    as_float = float(exact)
    if as_float in (float("inf"), float("-inf")):
        raise Refused(path, f"is beyond what a float holds: {_shown(value)}")
    return as_float


def whole(value: Any, path: str, minimum: int | None = None) -> int:
    exact = decimal(value, path)
    if exact != exact.to_integral_value():
        raise Refused(path, f"must be a whole number, got {_shown(value)}")
    if minimum is not None and exact < minimum:
        raise Refused(path, f"must be at least {minimum}, got {_shown(value)}")
    return int(exact)


def settings_of(value: Any, path: str) -> dict[str, tuple[str, str]]:
    """Katib's ``algorithmSettings`` (a list of ``{name, value}``) as name -> (value, its path)."""
    found: dict[str, tuple[str, str]] = {}
    for index, item in enumerate(items(value, path)):
        where = f"{path}[{index}]"
        entry = mapping(item, where)
        name = text(entry.get("name"), f"{where}.name")
        found[name] = (text(entry.get("value", ""), f"{where}.value"), where)
    return found


def _shown(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
