"""What a run folder keeps of a whole experiment: reading the rows of ``trials.jsonl``, the latest record of
each trial, counts, the best trial, and ``summary.json``.

``trials.jsonl`` is append-only, one row per ended attempt (:meth:`TrialRecord.row`), so a reader keeps the
latest row of each trial (:func:`latest_by_id`). ``summary.json`` covers the whole run: every sitting (a
first run and each ``--resume``) with its own start and end, and the wall time they add up to.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from kubetune.core.lifecycle import TrialRecord, TrialState, iso


def parse_rows(lines: Iterable[str]) -> tuple[list[TrialRecord], list[str]]:
    """Rows of ``trials.jsonl``; the second list describes lines that could not be read (a run killed in
    the middle of a write leaves at most its last line torn)."""
    records, problems = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(TrialRecord.from_row(json.loads(line)))
        # AttributeError: a field of the wrong shape; OverflowError: an integer no float holds; RecursionError:
        # arrays nested thousands deep
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError) as exc:
            problems.append(f"line {number}: {type(exc).__name__}: {exc}")
    return records, problems


def latest_by_id(records: Iterable[TrialRecord]) -> dict[str, TrialRecord]:
    """The latest record of each trial, in the order the trials first appeared."""
    latest: dict[str, TrialRecord] = {}
    for record in records:
        latest[record.id] = record
    return latest


def count_states(records: Iterable[TrialRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in records:
        counts[str(record.state)] = counts.get(str(record.state), 0) + 1
    return counts


def ranked(records: Iterable[TrialRecord], direction: str) -> list[TrialRecord]:
    """Succeeded trials, best first (the earliest first among equals)."""
    done = [r for r in records if r.state is TrialState.SUCCEEDED and r.value is not None]
    sign = -1.0 if direction == "maximize" else 1.0
    return sorted(done, key=lambda r: sign * (r.value or 0.0))


def summarize(experiment: str, direction: str, records: Iterable[TrialRecord], phase: str, reason: str,
              message: str, sittings: list[dict[str, Any]]) -> dict[str, Any]:
    """``summary.json``: the outcome, the best trial, counts by state and the sittings of the whole run."""
    records = list(records)
    best = next(iter(ranked(records, direction)), None)
    return {
        "experiment": experiment,
        "phase": phase,
        "reason": reason,
        "message": message,
        "direction": direction,
        "best": None if best is None else {
            "id": best.id, "params": best.params, "value": best.value, "metrics": best.metrics,
        },
        "counts": count_states(records),
        "trials": len(records),
        "started": sittings[0]["started"] if sittings else None,
        "finished": sittings[-1]["finished"] if sittings else None,
        "wallSeconds": round(sum(s["wallSeconds"] for s in sittings), 3),
        "sittings": sittings,
    }


def sitting(started: datetime, finished: datetime, trials_run: int) -> dict[str, Any]:
    """One sitting of a run: from the start of ``kubetune run`` (or ``--resume``) to its end."""
    return {"started": iso(started), "finished": iso(finished),
            "wallSeconds": round((finished - started).total_seconds(), 3), "attemptsRun": trials_run}
