"""Manifest errors that name the field they are about, in the manifest's own notation."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError


@dataclass(frozen=True)
class Problem:
    path: str  # "spec.parameters[0].max", or "" for the whole document
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ManifestError(ValueError):
    """A manifest that cannot run; ``problems`` lists every reason found."""

    def __init__(self, problems: Sequence[Problem], source: str | None = None):
        self.problems = list(problems)
        self.source = source
        super().__init__(self.describe())

    def describe(self) -> str:
        where = f"{self.source}: " if self.source else ""
        if len(self.problems) == 1:
            return f"{where}invalid experiment: {self.problems[0]}"
        lines = [f"{where}invalid experiment ({len(self.problems)} problems):"]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


def format_path(loc: Iterable[str | int]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


_PLAIN_MESSAGES = {
    "extra_forbidden": "unknown field",
    "missing": "required field is missing",
}


def problems_from_validation(error: ValidationError, prefix: Sequence[str | int] = ()) -> list[Problem]:
    problems = []
    for item in error.errors():
        message = _PLAIN_MESSAGES.get(item["type"], item["msg"])
        message = message.removeprefix("Value error, ")
        if item["type"] in _TAG_MESSAGES:
            message = _TAG_MESSAGES[item["type"]](item)
        loc = list(prefix) + _without_union_tags(item["loc"])
        if item["type"] == "extra_forbidden" and loc:
            message = f"unknown field {loc[-1]!r}"
            loc = loc[:-1]
        problems.append(Problem(format_path(loc), message))
    return problems


def _kinds() -> str:
    from kubetune.core.parameters import KINDS

    return ", ".join(KINDS)


def _unknown_tag(item: Any) -> str:
    """A parameter whose ``type`` is not a kind (the one discriminated union of the manifest)."""
    tag = (item.get("ctx") or {}).get("tag")
    alias = _TYPE_ALIASES.get(str(tag).lower())
    hint = f"; did you mean {alias}?" if alias else ""
    return f"type {tag!r} is not a parameter type: use one of {_kinds()}{hint}"


def _missing_tag(item: Any) -> str:
    given = item.get("input")
    katib = isinstance(given, dict) and "parameterType" in given
    hint = " (parameterType is Katib's name for it; `kubetune convert` translates a Katib Experiment)" if katib else ""
    return f"a parameter needs a type: one of {_kinds()}{hint}"


_TAG_MESSAGES: dict[str, Callable[[Any], str]] = {"union_tag_invalid": _unknown_tag,
                                                   "union_tag_not_found": _missing_tag}
# Type names of other tools, and what kubetune calls them.
_TYPE_ALIASES = {"float": "double", "real": "double", "number": "double", "integer": "int", "choice": "categorical",
                 "string": "categorical", "bool": "categorical", "list": "discrete"}


def _without_union_tags(loc: Sequence[str | int]) -> list[str | int]:
    """pydantic puts the tag of a discriminated union's member in the path (``parameters[0].int.min``); the
    manifest has no such level (``parameters[0].min``)."""
    from kubetune.core.parameters import KINDS

    return [part for i, part in enumerate(loc)
            if not (part in KINDS and i > 0 and isinstance(loc[i - 1], int))]
