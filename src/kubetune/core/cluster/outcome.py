"""What a trial pod's status says about the trial: still going, or ended, and with which result.

A pod is read the way the kubelet reports it: ``status.phase``, the trial container's
``state.terminated`` (exit code, reason, termination message), and the pod-level reason (``Evicted``,
``DeadlineExceeded`` when ``activeDeadlineSeconds`` ran out) or ``DisruptionTarget`` condition (a pod
deleted with its lost node), which say more than the exit code of a container that was killed. Metrics
come from the termination message when it holds the summary :func:`kubetune.report` writes there,
otherwise from the container log, which the caller fetches only when :func:`needs_log` says so.
"""

from __future__ import annotations

from typing import Any

from kubetune.core import termination
from kubetune.core.collect import Source, from_output, from_summary
from kubetune.core.lifecycle import AttemptResult, TrialState
from kubetune.core.spec import Objective


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    statuses = pod.get("status", {}).get("containerStatuses") or []
    name = pod.get("spec", {}).get("containers", [{}])[0].get("name")
    for status in statuses:
        if status.get("name") == name:
            return (status.get("state") or {}).get("terminated")
    return None


def _disruption(status: dict[str, Any]) -> dict[str, Any] | None:
    """The ``DisruptionTarget`` condition of a pod that was evicted, preempted or lost with its node."""
    for condition in status.get("conditions") or []:
        if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
            return condition
    return None


def waiting(pod: dict[str, Any]) -> tuple[str, str] | None:
    """Why a pod that has not started waits, when the scheduler says it cannot place it: the reason (for
    example ``Unschedulable``) and message ("0/3 nodes are available: 3 Insufficient nvidia.com/gpu.") of its
    ``PodScheduled=False`` condition; None otherwise."""
    status = pod.get("status") or {}
    if status.get("phase", "Pending") != "Pending":
        return None
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return condition.get("reason") or "Unschedulable", condition.get("message") or ""
    return None


def needs_log(pod: dict[str, Any]) -> bool:
    """True when the pod ended with exit code 0 and left no metrics summary: read its log instead."""
    terminated = _terminated(pod)
    if not terminated or terminated.get("exitCode") != 0:
        return False
    return termination.decode(terminated.get("message")) is None


POD_METADATA = ("name", "namespace", "uid", "labels", "deletionTimestamp")
POD_STATUS = ("phase", "reason", "message", "conditions", "containerStatuses")
CONTAINER_STATUS = ("name", "state")


def essentials(pod: dict[str, Any]) -> dict[str, Any]:
    """The part of a pod that its trial's outcome depends on: names, labels, the first container's name and
    the status. A listed or watched pod is several kilobytes (managed fields, the whole spec); with thousands
    of trials in flight, keeping only this is most of the operator's memory."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    kept = {key: status[key] for key in POD_STATUS if key in status}
    if "containerStatuses" in kept:
        kept["containerStatuses"] = [{key: c[key] for key in CONTAINER_STATUS if key in c}
                                     for c in kept["containerStatuses"]]
    return {"metadata": {key: meta[key] for key in POD_METADATA if key in meta},
            "spec": {"containers": [{"name": containers[0].get("name")}]}, "status": kept}


def has_ended(pod: dict[str, Any]) -> bool:
    """Whether the trial in ``pod`` has ended: the pod has, or its trial container terminated (with sidecars
    the pod may still be Running)."""
    return pod.get("status", {}).get("phase") in ("Succeeded", "Failed") or _terminated(pod) is not None


def outcome(pod: dict[str, Any], objective: Objective, log: str | None = None) -> AttemptResult:
    """How the attempt in ``pod`` stands: ``Pending``/``Running``, or ended with its result (``log``: the
    container's log, when :func:`needs_log` asked for it)."""
    status = pod.get("status", {})
    phase = status.get("phase", "Pending")
    terminated = _terminated(pod)
    if phase in ("Pending", "Running") and terminated is None:
        reason, message = waiting(pod) or (None, None)
        return AttemptResult(TrialState(phase), reason=reason, message=message)
    disruption = _disruption(status)
    if phase == "Failed" and (terminated is None or status.get("reason") or disruption):
        # the pod's own reason (Evicted, DeadlineExceeded) or disruption says more than its container's exit code
        reason = status.get("reason") or (disruption or {}).get("reason") or "PodFailed"
        if reason == "DeadlineExceeded":
            return AttemptResult(TrialState.FAILED, reason="Timeout", message="ran longer than timeoutSeconds")
        message = status.get("message") or (disruption or {}).get("message") or f"the pod failed ({reason})"
        return AttemptResult(TrialState.FAILED, reason=reason,
                             message=f"{reason}: {message}" if reason not in message else message)
    terminated = terminated or {}
    exit_code = terminated.get("exitCode")
    if exit_code != 0:
        reason = terminated.get("reason") or "Error"
        detail = (terminated.get("message") or "").strip().splitlines()[-3:]
        message = f"exited with status {exit_code} ({reason})" + (": " + " | ".join(detail) if detail else "")
        return AttemptResult(TrialState.FAILED, reason="ExitCode", message=message[:500], exit_code=exit_code)
    summary = termination.decode(terminated.get("message"))
    if summary is not None:
        return from_summary(objective, summary)
    return from_output(objective, [Source("its log", log or "")])
