"""The cluster-side records: the ``Trial`` resource and the ``status`` of an ``Experiment``.

Like the manifest (:mod:`kubetune.core.spec`), these pydantic models are the one source of truth: the CRD
schemas are generated from them and the operator writes exactly these shapes. The Experiment status holds
counts, the best trial and conditions, never a list that grows with the number of trials, so an experiment
of 10,000 trials stays far below the object size limit.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kubetune.core.lifecycle import TrialState
from kubetune.core.plan import ExperimentPhase


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel)


class TrialSpec(_Record):
    experiment: str = Field(description="The Experiment this trial belongs to.")
    number: int = Field(ge=0, description="The trial's number within its experiment.")
    params: dict[str, Any] = Field(description="The parameter assignment.")


class TrialStatus(_Record):
    phase: TrialState = Field(default=TrialState.PENDING, description="Where the trial is in its life.")
    value: float | None = Field(default=None, description="The objective value, once Succeeded.")
    metrics: dict[str, float | None] = Field(default_factory=dict, description="Final value of each metric.")
    attempts: int = Field(default=0, ge=0, description="Pods started for this trial (retries included).")
    history: list[str] = Field(default_factory=list, description="Why each earlier attempt failed, when retried.")
    progress: dict[str, Any] | None = Field(
        default=None, description="The intermediate reports of the current attempt, bounded: count, latest, best, "
        "running average, a thinned learning curve and the values at early-stopping rungs.")
    pod: str | None = Field(default=None, description="The pod of the current or last attempt.")
    reason: str | None = Field(default=None, description="Why the trial ended as it did, in one word.")
    message: str | None = Field(default=None, description="Why the trial ended as it did, for people.")
    exit_code: int | None = Field(default=None, description="Exit status of the trial container.")
    start_time: str | None = Field(default=None, description="When the current attempt's pod was created.")
    completion_time: str | None = Field(default=None, description="When the trial ended.")


class TrialCounts(_Record):
    created: int = 0
    pending: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    metrics_unavailable: int = 0
    killed: int = 0
    early_stopped: int = 0

    @classmethod
    def of(cls, counts: dict[TrialState, int], pending: int, running: int) -> TrialCounts:
        """Counts of trials by state; ``pending`` and ``running`` as the pods say (they know first)."""
        finished = {FINISHED_FIELDS[state]: n for state, n in counts.items() if state in FINISHED_FIELDS}
        return cls(created=sum(counts.values()), pending=pending, running=running, **finished)


FINISHED_FIELDS = {TrialState.SUCCEEDED: "succeeded", TrialState.FAILED: "failed",
                   TrialState.METRICS_UNAVAILABLE: "metrics_unavailable", TrialState.KILLED: "killed",
                   TrialState.EARLY_STOPPED: "early_stopped"}


class BestTrial(_Record):
    trial: str
    params: dict[str, Any]
    value: float


class Condition(_Record):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str | None = None


class ExperimentStatus(_Record):
    phase: ExperimentPhase = Field(default=ExperimentPhase.CREATED,
                                   description="Created, Running, Suspended, Succeeded or Failed.")
    reason: str | None = Field(default=None, description="Why the experiment is in its phase, in one word.")
    message: str | None = Field(default=None, description="Why the experiment is in its phase, for people.")
    trials: TrialCounts = Field(default_factory=TrialCounts, description="Trials by state.")
    best: BestTrial | None = Field(default=None, description="The best trial so far.")
    conditions: list[Condition] = Field(default_factory=list, description="Running, Suspended, Succeeded and "
                                        "Failed, each True or False with its reason and lastTransitionTime.")
    start_time: str | None = None
    completion_time: str | None = None
