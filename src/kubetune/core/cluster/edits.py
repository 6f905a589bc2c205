"""What an edit of a running Experiment's spec changed, in the words of the Event the operator posts for it:
``parallelism 1 -> 3; maxTrials 3 -> 9; trialTemplate changed``. Values that are numbers, strings or booleans
are shown, a changed mapping or list by its field name only (a whole pod spec says nothing in one line)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCALARS = (str, int, float, bool, type(None))
MAX_SHOWN = 40  # characters of one value shown


def spec_changes(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> list[str]:
    """One phrase per top-level field of ``spec`` that differs between two versions of an Experiment, in the
    order of the newer spec (fields only in the older one last)."""
    old, new = dict(before or {}), dict(after or {})
    changes = []
    for field in [*new, *(f for f in old if f not in new)]:
        if old.get(field) == new.get(field):
            continue
        if field not in old:
            changes.append(f"{field} set to {_shown(new[field])}" if _scalar(new[field]) else f"{field} set")
        elif field not in new:
            changes.append(f"{field} removed")
        elif _scalar(old[field]) and _scalar(new[field]):
            changes.append(f"{field} {_shown(old[field])} -> {_shown(new[field])}")
        else:
            changes.append(f"{field} changed")
    return changes


def _scalar(value: Any) -> bool:
    return isinstance(value, SCALARS)


def _shown(value: Any) -> str:
    text = "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "\u2026"
