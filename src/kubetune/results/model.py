"""An experiment's results as the commands that show them read them: the manifest, the latest record of each
trial, every attempt, and the outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubetune.core.lifecycle import TrialRecord, TrialState


@dataclass
class Results:
    name: str
    source: str  # the run folder, or namespace/name on a cluster
    manifest: dict[str, Any]  # the Experiment as run (the saved experiment.yaml, or the object)
    trials: list[TrialRecord]  # the latest record of each trial, by number
    attempts: list[TrialRecord] = field(default_factory=list)  # every ended attempt, in order (run folders)
    summary: dict[str, Any] = field(default_factory=dict)  # summary.json, or the Experiment's status
    phase: str = "Unknown"  # Running, Succeeded, Failed, Interrupted...
    problems: list[str] = field(default_factory=list)  # what could not be read and was left out

    @property
    def direction(self) -> str:
        return str(self._objective().get("direction", "minimize"))

    @property
    def metric(self) -> str:
        return str(self._objective().get("metric", "objective"))

    @property
    def spec(self) -> dict[str, Any]:
        """The manifest's ``spec``, or nothing when a damaged manifest has no such mapping."""
        spec = self.manifest.get("spec")
        return spec if isinstance(spec, dict) else {}

    def _objective(self) -> dict[str, Any]:
        """``spec.objective``, or nothing when a damaged manifest has no such mapping."""
        objective = self.spec.get("objective")
        return objective if isinstance(objective, dict) else {}

    def running(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.state.is_active]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for trial in self.trials:
            counts[str(trial.state)] = counts.get(str(trial.state), 0) + 1
        return counts

    def best(self) -> TrialRecord | None:
        done = [t for t in self.trials if t.state is TrialState.SUCCEEDED and t.value is not None]
        if not done:
            return None
        sign = -1.0 if self.direction == "maximize" else 1.0
        return min(done, key=lambda t: sign * (t.value or 0.0))
