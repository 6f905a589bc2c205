"""The ``status`` the operator writes on an Experiment: its phase, counts, best trial and conditions, from
the view of its trials and the last decision (see :class:`kubetune.core.cluster.resources.ExperimentStatus`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubetune.core.cluster.conditions import conditions
from kubetune.core.cluster.resources import BestTrial, ExperimentStatus, TrialCounts
from kubetune.core.lifecycle import iso
from kubetune.core.plan import Decision, ExperimentPhase
from kubetune.operator.view import ExperimentView

WAIT_MESSAGE_LIMIT = 300  # characters of the scheduler's message in the Experiment's (with many nodes it grows)
POD_REFUSED = "PodRefused"  # the reason of an experiment held because the API server refuses its trial pods


def experiment_status(view: ExperimentView, decision: Decision, current: dict[str, Any], now: datetime
                      ) -> dict[str, Any]:
    # the pod knows first that a trial runs (a trial's own Running mark may lag behind at scale)
    running = len(view.running)
    counts = TrialCounts.of(view.tally.counts, pending=len(view.active) - running, running=running)
    best = None
    if view.best is not None and view.tally.best is not None:
        best = BestTrial(trial=view.best, params=view.trials[view.best]["spec"]["params"], value=view.tally.best)
    message = decision.message
    waits = None if decision.phase.is_over else view.first_unschedulable()
    if waits is not None:  # the scheduler's word, which otherwise only the pods' FailedScheduling Events say
        message += f"; {len(view.unschedulable)} wait to be scheduled ({waits[0]}: {waits[1][:WAIT_MESSAGE_LIMIT]})"
    status = ExperimentStatus(
        phase=decision.phase, reason=decision.reason, message=message, trials=counts, best=best,
        start_time=current.get("startTime") or iso(now),
        completion_time=iso(now) if decision.phase.is_over else None,
        conditions=conditions(decision.phase, decision.reason, message, current.get("conditions") or [], iso(now)),
    )
    return status.model_dump(by_alias=True, exclude_none=True)


def invalid_spec_status(message: str, now: datetime, current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The status of an experiment whose manifest cannot run: Failed, with the reason InvalidSpec."""
    phase = ExperimentPhase.FAILED
    status = ExperimentStatus(phase=phase, reason="InvalidSpec", message=message, completion_time=iso(now),
                              conditions=conditions(phase, "InvalidSpec", message,
                                                    (current or {}).get("conditions") or [], iso(now)))
    return status.model_dump(by_alias=True, exclude_none=True)


def problem_status(current: dict[str, Any], reason: str, message: str, now: datetime) -> dict[str, Any]:
    """The status that says why passes fail (a missing permission, say), keeping what the last one wrote: the
    experiment is held (its Running condition False, with the reason)."""
    known = current.get("phase") in (ExperimentPhase.RUNNING, ExperimentPhase.CREATED, ExperimentPhase.SUSPENDED)
    phase_now = ExperimentPhase(current["phase"]) if known else ExperimentPhase.RUNNING
    held = conditions(phase_now, reason, message, current.get("conditions") or [], iso(now), held=True)
    return {**current, "phase": str(phase_now), "reason": reason, "message": message,
            "conditions": [c.model_dump(by_alias=True, exclude_none=True) for c in held]}


def held_status(status: dict[str, Any], current: dict[str, Any], refusal: str, now: datetime) -> dict[str, Any]:
    """``status`` held, with the reason PodRefused, until the API server admits a trial pod (``refusal``: why
    it refused one: a quota's, an admission policy's or webhook's message); its conditions follow those of
    ``current``, so that a hold that lasts keeps its transition times."""
    message = f"the API server refuses trial pods, so no new trial starts until it admits one: {refusal}"
    return problem_status({**status, "conditions": current.get("conditions") or []}, POD_REFUSED, message, now)
