"""The median stopping rule, with Katib's semantics: from ``startStep`` on, once ``minTrialsRequired`` trials
have completed, a running trial whose best value so far is worse than the median of the completed trials'
running averages at the same step is stopped."""

from __future__ import annotations

import statistics
from collections.abc import Mapping

from pydantic import Field

from kubetune.core.stopping.progress import Progress
from kubetune.core.stopping.settings import RuleSettings


class MedianSettings(RuleSettings):
    min_trials_required: int = Field(default=3, ge=1, description="Completed trials needed before any stop.")
    start_step: float = Field(default=4, ge=0, description="No trial is stopped before this step.")


class MedianRule:
    def __init__(self, settings: MedianSettings):
        self.settings = settings

    def rungs(self) -> list[float]:
        return []

    def should_stop(self, trial: Progress, completed: Mapping[str, Progress], maximize: bool) -> bool:
        if trial.step is None or trial.best is None or trial.step < self.settings.start_step:
            return False
        means = [m for m in (p.mean_at(trial.step) for p in completed.values()) if m is not None]
        if len(means) < self.settings.min_trials_required:
            return False
        median = statistics.median(means)
        return trial.best < median if maximize else trial.best > median
