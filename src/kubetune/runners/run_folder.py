"""The run folder of ``kubetune run``: what is kept on disk so that nothing done is ever lost or repeated.

- ``experiment.yaml``: the manifest as run (written once the folder is known to be usable);
- ``trials.jsonl``: one row per ended attempt, appended and synced as each ends;
- ``trials/<id>/trial.json``: the trial's number, parameters and current attempt, written before each
  attempt starts, so a runner killed with ``kill -9`` leaves enough to run the cut-short trial again, with
  the same id and parameters, without overwriting its earlier logs;
- ``trials/<id>/attempt-<n>.{stdout,stderr}.log``;
- ``summary.json``: the outcome of the whole run, every sitting included.

A resume whose manifest differs from the saved one in anything that changes the meaning of the results so
far (the experiment's name, the parameters, the objective) is refused before anything is written.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kubetune.core.lifecycle import TrialRecord, TrialState, first_of, fitting, resumed
from kubetune.core.spec import Experiment
from kubetune.core.summary import latest_by_id, parse_rows
from kubetune.runners.backend import RunnerError

MANIFEST = "experiment.yaml"
TRIALS = "trials.jsonl"
SUMMARY = "summary.json"


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.warnings: list[str] = []

    @property
    def trials_file(self) -> Path:
        return self.path / TRIALS

    def trial_dir(self, trial: str) -> Path:
        return self.path / "trials" / trial

    def log(self, trial: str, attempt: int, stream: str) -> Path:
        return self.trial_dir(trial) / f"attempt-{attempt}.{stream}.log"

    # -- opening --------------------------------------------------------------------------------------------
    def open(self, experiment: Experiment, resume: bool) -> dict[str, TrialRecord]:
        """Makes the folder ready and returns the trials of earlier sittings as a resumed run takes them."""
        if self.path.exists() and not self.path.is_dir():
            raise RunnerError(f"--out {self.path}: exists and is not a folder")
        if self.trials_file.exists() and not resume:
            raise RunnerError(f"{self.path} already holds the results of a run; pass --resume to continue it or "
                              "--out to choose another folder")
        if resume:
            self._check_same_experiment(experiment)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            (self.path / MANIFEST).write_text(
                yaml.safe_dump(experiment.model_dump(by_alias=True, exclude_none=True), sort_keys=False))
        except OSError as exc:
            raise RunnerError(f"--out {self.path}: cannot write there: {exc.strerror or exc}") from None
        return self._past_trials(experiment) if resume else {}

    def _check_same_experiment(self, experiment: Experiment) -> None:
        saved_path = self.path / MANIFEST
        if not saved_path.exists():
            return
        try:
            saved = Experiment.model_validate(yaml.safe_load(_text(saved_path)))
        except (OSError, yaml.YAMLError, ValidationError, UnicodeDecodeError, RecursionError) as exc:
            raise RunnerError(f"{saved_path}: the saved manifest of this run cannot be read ({type(exc).__name__}); "
                              "it is needed to check that --resume continues the same experiment") from None
        differences = meaning_changes(saved, experiment)
        if differences:
            raise RunnerError(
                f"--resume: the manifest differs from the one this run started with ({saved_path}) in "
                f"{'; '.join(differences)}; the results so far would not mean the same. Resume with the "
                "original manifest, or start a new run with --out")

    def _past_trials(self, experiment: Experiment) -> dict[str, TrialRecord]:
        records: dict[str, TrialRecord] = {}
        if self.trials_file.exists():
            try:
                rows, problems = parse_rows(_text(self.trials_file).splitlines())
            except OSError as exc:
                raise RunnerError(f"--resume: {self.trials_file} cannot be read: {exc.strerror or exc}") from None
            for problem in problems:
                self.warnings.append(f"{self.trials_file}: skipped an unreadable row ({problem})")
            records = latest_by_id(rows)
        for started in self._started_trials():
            known = records.get(started.id)
            if known is None or known.attempts < started.attempts:  # cut short with no row of its attempt
                if known is not None:
                    started.history = known.history
                records[started.id] = started
        ordered, unfit = fitting(experiment.spec, sorted(records.values(), key=lambda r: r.number))
        if unfit:
            raise RunnerError(f"--resume: {self.path} holds trials this manifest cannot go on from: "
                              f"{first_of(unfit)}; was the run folder written for another experiment, or edited?")
        return {r.id: resumed(r) for r in ordered}

    def _started_trials(self) -> list[TrialRecord]:
        found = []
        for path in sorted((self.path / "trials").glob("*/trial.json")):
            try:
                data = json.loads(_text(path))
                found.append(TrialRecord(id=str(data["id"]), number=int(data["number"]), params=dict(data["params"]),
                                         state=TrialState.RUNNING, attempts=int(data["attempt"])))
            except (OSError, ValueError, TypeError, KeyError, RecursionError) as exc:
                self.warnings.append(f"{path}: skipped ({type(exc).__name__}: {exc})")
        return found

    # -- while running --------------------------------------------------------------------------------------
    def starting(self, record: TrialRecord) -> None:
        """Notes, before an attempt starts, which trial runs with which parameters."""
        folder = self.trial_dir(record.id)
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(folder / "trial.json", json.dumps(
            {"id": record.id, "number": record.number, "params": record.params, "attempt": record.attempts}))

    def ended(self, record: TrialRecord) -> None:
        """Appends the row of the attempt that just ended, synced to disk."""
        with self.trials_file.open("a") as out:
            out.write(json.dumps(record.row(), allow_nan=False) + "\n")
            out.flush()
            os.fsync(out.fileno())

    # -- the summary ----------------------------------------------------------------------------------------
    def sittings(self) -> list[dict[str, Any]]:
        """The sittings recorded in ``summary.json`` by earlier runs of this folder."""
        try:
            summary = json.loads(_text(self.path / SUMMARY))
        except (OSError, ValueError, RecursionError):
            return []
        if not isinstance(summary, dict):
            return []
        sittings = summary.get("sittings")
        if isinstance(sittings, list):
            return [s for s in sittings if isinstance(s, dict) and isinstance(s.get("wallSeconds"), int | float)]
        # a summary without sittings: one sitting
        if isinstance(summary.get("wallSeconds"), int | float):
            return [{key: summary.get(key) for key in ("started", "finished", "wallSeconds")}]
        return []

    def write_summary(self, summary: dict[str, Any]) -> None:
        _write_atomically(self.path / SUMMARY, json.dumps(summary, indent=2) + "\n")


def meaning_changes(saved: Experiment, now: Experiment) -> list[str]:
    """What differs between two manifests that would change the meaning of results already recorded."""
    changes = []
    if saved.name != now.name:
        changes.append(f"metadata.name ({saved.name!r} then, {now.name!r} now)")
    before = {p.name: p.model_dump(by_alias=True, exclude_none=True) for p in saved.spec.parameters}
    after = {p.name: p.model_dump(by_alias=True, exclude_none=True) for p in now.spec.parameters}
    for name in before.keys() - after.keys():
        changes.append(f"spec.parameters: {name!r} was removed")
    for name in after.keys() - before.keys():
        changes.append(f"spec.parameters: {name!r} was added")
    for name in before.keys() & after.keys():
        if before[name] != after[name]:
            changes.append(f"spec.parameters[{name!r}] ({before[name]} then, {after[name]} now)")
    for field in ("metric", "direction", "strategy"):
        then, current = getattr(saved.spec.objective, field), getattr(now.spec.objective, field)
        if then != current:
            changes.append(f"spec.objective.{field} ({then!r} then, {current!r} now)")
    return sorted(changes)


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _text(path: Path) -> str:
    """One file of the run folder; OSError when it is not a regular file (a device or a pipe may never end)."""
    if path.exists() and not path.is_file():
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return path.read_text(errors="replace")
