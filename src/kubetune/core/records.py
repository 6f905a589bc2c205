"""What is kept of a trial and of a whole experiment: the rows of ``trials.jsonl`` and ``summary.json``.

Records are plain JSON-ready dicts built by pure functions; times are passed in as aware datetimes and
written as ISO-8601 UTC. ``trials.jsonl`` is append-only: a trial re-run after an interruption appends a
newer row with the same id, and readers keep the last row of each id (:func:`latest_by_id`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubetune.core.plan import TrialView, best_value, count_states

INTERRUPTED = "Interrupted"


@dataclass
class TrialRecord:
    id: str  # "<experiment>-<n>"
    number: int
    params: dict[str, Any]
    state: str
    value: float | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    started: str | None = None
    finished: str | None = None
    attempts: int = 1
    reason: str | None = None  # Timeout, ExitCode, Interrupted, TargetReached...
    message: str | None = None
    exit_code: int | None = None
    devices: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        row = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps(row, sort_keys=False, allow_nan=False)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> TrialRecord:
        known = {k: row[k] for k in cls.__dataclass_fields__ if k in row}
        return cls(**known)

    def view(self) -> TrialView:
        return TrialView(self.id, self.state, self.value)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def trial_name(experiment: str, number: int) -> str:
    return f"{experiment}-{number}"


def parse_rows(lines: Iterable[str]) -> tuple[list[TrialRecord], list[str]]:
    """Rows of ``trials.jsonl``; the second list describes lines that could not be read (a run killed in
    the middle of a write leaves at most its last line torn)."""
    records, problems = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(TrialRecord.from_dict(json.loads(line)))
        except (ValueError, TypeError) as exc:
            problems.append(f"line {number}: {exc}")
    return records, problems


def latest_by_id(records: Iterable[TrialRecord]) -> dict[str, TrialRecord]:
    latest: dict[str, TrialRecord] = {}
    for record in records:
        latest.pop(record.id, None)
        latest[record.id] = record
    return latest


def summarize(
    experiment: str,
    direction: str,
    records: Iterable[TrialRecord],
    phase: str,
    reason: str,
    message: str,
    started: datetime,
    finished: datetime,
) -> dict[str, Any]:
    records = list(records)
    best = best_value([r.view() for r in records], direction)
    best_record = next((r for r in records if r.state == "Succeeded" and r.value == best), None)
    return {
        "experiment": experiment,
        "phase": phase,
        "reason": reason,
        "message": message,
        "direction": direction,
        "best": None if best_record is None else {
            "id": best_record.id, "params": best_record.params, "value": best_record.value,
            "metrics": best_record.metrics,
        },
        "counts": count_states(r.view() for r in records),
        "trials": len(records),
        "started": iso(started),
        "finished": iso(finished),
        "wallSeconds": round((finished - started).total_seconds(), 3),
    }


def ranked(records: Iterable[TrialRecord], direction: str) -> list[TrialRecord]:
    """Succeeded trials, best first."""
    done = [r for r in records if r.state == "Succeeded" and r.value is not None]
    return sorted(done, key=lambda r: -r.value if direction == "maximize" else r.value)
