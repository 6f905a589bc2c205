"""Asynchronous successive halving (ASHA, Li et al., MLSys 2020): rungs at ``minResource * reductionFactor^k``
up to ``maxResource``. A trial that reaches a rung continues only if its value there is among the top
``1/reductionFactor`` of the values every trial reached that rung with (itself included); no barrier waits for
other trials. With fewer than ``reductionFactor`` values at a rung, the trial continues."""

from __future__ import annotations

import math
from collections.abc import Mapping

from pydantic import Field, model_validator

from kubetune.core.stopping.progress import Progress
from kubetune.core.stopping.settings import RuleSettings


class AshaSettings(RuleSettings):
    min_resource: float = Field(default=1, gt=0, description="The first rung.")
    max_resource: float = Field(gt=0, description="The resource a trial that is never stopped reaches.")
    reduction_factor: float = Field(default=3, gt=1, description="1/reductionFactor go on at each rung.")

    @model_validator(mode="after")
    def _ordered(self) -> AshaSettings:
        if self.max_resource < self.min_resource:
            raise ValueError(f"maxResource ({self.max_resource}) must be at least minResource ({self.min_resource})")
        return self


class AshaRule:
    def __init__(self, settings: AshaSettings):
        self.settings = settings

    def rungs(self) -> list[float]:
        """The rungs below ``maxResource`` (a trial that reaches it has finished anyway)."""
        s = self.settings
        count = int(math.floor(math.log(s.max_resource / s.min_resource, s.reduction_factor) + 1e-9))
        return [s.min_resource * s.reduction_factor ** k for k in range(count + 1)
                if s.min_resource * s.reduction_factor ** k < s.max_resource]

    def should_stop(self, trial: Progress, others: Mapping[str, Progress], maximize: bool) -> bool:
        """Judged at the highest rung the trial has a value for; ``others`` are every other trial, running or
        ended, with their rung values. A trial that has already reported ``maxResource`` has done its work: a
        judgement at a lower rung that comes after that (its reports were read in one batch) stops nothing."""
        if not trial.rungs or (trial.step is not None and trial.step >= self.settings.max_resource):
            return False
        rung = max(trial.rungs, key=float)
        mine = trial.rungs[rung]
        values = [p.rungs[rung] for p in others.values() if rung in p.rungs] + [mine]
        keep = int(len(values) / self.settings.reduction_factor)
        if keep < 1:
            return False
        ranked = sorted(values, reverse=maximize)
        cutoff = ranked[keep - 1]
        return mine < cutoff if maximize else mine > cutoff
