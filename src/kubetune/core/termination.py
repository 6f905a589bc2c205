"""The metrics summary a trial leaves in its container's termination message, written by the SDK
(:func:`kubetune.report`) and read by the operator: ``{"kubetune": {"metrics": {NAME: SUMMARY}}}`` where each
summary holds ``count``, ``latest`` and, over the finite values, ``min`` and ``max``. The format is defined
here once; this module uses only the standard library, so a trial image needs nothing more to write it.
"""

from __future__ import annotations

import json
import math
from typing import Any

KEY = "kubetune"
LIMIT_BYTES = 4096  # the kubelet keeps at most this much of a termination message


def add(summary: dict[str, dict[str, float]], name: str, value: float) -> None:
    """Adds one reported value of metric ``name`` to ``summary``."""
    entry = summary.setdefault(name, {"count": 0})
    entry["count"] += 1
    entry["latest"] = value
    if math.isfinite(value):
        entry["min"] = min(entry.get("min", value), value)
        entry["max"] = max(entry.get("max", value), value)


def encode(summary: dict[str, dict[str, float]]) -> str | None:
    """The termination message for ``summary``, or None when it would not fit."""
    message = json.dumps({KEY: {"metrics": summary}})
    return message if len(message.encode()) <= LIMIT_BYTES else None


def decode(message: str | None) -> dict[str, Any] | None:
    """The per-metric summary in a termination message, or None when it holds none."""
    if not message:
        return None
    try:
        document = json.loads(message)
    except ValueError:
        return None
    section = document.get(KEY) if isinstance(document, dict) else None
    metrics = section.get("metrics") if isinstance(section, dict) else None
    return metrics if isinstance(metrics, dict) else None
