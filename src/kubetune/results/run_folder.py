"""Reading a local run folder (``kubetune run --out DIR``) back: ``experiment.yaml``, ``trials.jsonl`` (the
latest row of each trial, and every row), ``summary.json`` when the run has ended, and the trials that were
running (``trials/<id>/trial.json`` without a row of that attempt) when it has not."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from kubetune.core.lifecycle import TrialRecord, TrialState
from kubetune.core.summary import latest_by_id, parse_rows
from kubetune.results.model import Results


class NotARunFolder(Exception):
    """The path is not a run folder kubetune can read; the message says why."""


def read_run_folder(path: Path) -> Results:
    try:
        return _read(Path(path))
    except OSError as exc:  # a path the file system refuses (too long, say), or a folder that cannot be listed
        raise NotARunFolder(f"{path}: {exc.strerror or exc}") from None


def _read(path: Path) -> Results:
    if not path.is_dir():
        raise NotARunFolder(f"{path}: not a folder (a run folder is what kubetune run --out wrote)")
    manifest_path, trials_path = path / "experiment.yaml", path / "trials.jsonl"
    if not manifest_path.exists():
        raise NotARunFolder(f"{path}: no experiment.yaml, so not a kubetune run folder")
    try:
        manifest = yaml.safe_load(_text(manifest_path))
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
        raise NotARunFolder(f"{manifest_path}: cannot be read ({type(exc).__name__})") from None
    if not isinstance(manifest, dict):
        raise NotARunFolder(f"{manifest_path}: not an Experiment manifest")
    attempts: list[TrialRecord] = []
    problems: list[str] = []
    if trials_path.exists():
        attempts, unreadable = parse_rows(_text(trials_path).splitlines())
        problems = [f"{trials_path}: left out an unreadable row ({problem})" for problem in unreadable]
    latest = latest_by_id(attempts)
    for record in _running(path, latest):
        latest[record.id] = record
    summary = _summary(path / "summary.json")
    metadata = manifest.get("metadata")
    name = str(metadata.get("name", path.name) if isinstance(metadata, dict) else path.name)
    phase = str(summary.get("phase", "Running" if any(r.state.is_active for r in latest.values()) else "Unknown"))
    return Results(name=name, source=str(path), manifest=manifest,
                   trials=sorted(latest.values(), key=lambda r: r.number), attempts=attempts, summary=summary,
                   phase=phase, problems=problems)


def _running(path: Path, latest: dict[str, TrialRecord]) -> list[TrialRecord]:
    """Trials whose current attempt has no row yet: running now, or cut short by a runner that died."""
    found = []
    for note in sorted((path / "trials").glob("*/trial.json")):
        try:
            data = json.loads(_text(note))
            record = TrialRecord(id=str(data["id"]), number=int(data["number"]), params=dict(data["params"]),
                                 state=TrialState.RUNNING, attempts=int(data["attempt"]))
        except (NotARunFolder, ValueError, TypeError, KeyError, RecursionError):
            continue
        known = latest.get(record.id)
        if known is None or known.attempts < record.attempts:
            record.started = _started(note.parent / f"attempt-{record.attempts}.stdout.log")
            found.append(record)
    return found


def _started(log: Path) -> str | None:
    from datetime import UTC, datetime

    from kubetune.core.lifecycle import iso

    try:
        return iso(datetime.fromtimestamp(log.stat().st_ctime, UTC))
    except OSError:
        return None


def _summary(path: Path) -> dict:
    try:
        summary = json.loads(_text(path))
    except (NotARunFolder, ValueError, RecursionError):
        return {}
    return summary if isinstance(summary, dict) else {}


def _text(path: Path) -> str:
    """One file of the run folder; refused when it is not a regular file (a device or a pipe may never end)
    or cannot be read."""
    if not path.is_file():
        raise NotARunFolder(f"{path}: not a regular file")
    try:
        return path.read_text(errors="replace")
    except OSError as exc:
        raise NotARunFolder(f"{path}: cannot be read ({exc.strerror or exc})") from None
