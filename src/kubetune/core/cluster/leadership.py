"""Leader election among operator replicas: the pure rules over a ``coordination.k8s.io/v1`` Lease.

One replica holds the Lease and acts; the others wait. The holder renews the Lease every few seconds; a
replica may take it only when nobody holds it, when it already holds it, or when the holder has not renewed
it for the Lease's duration (it crashed or lost the API). Taking and renewing are writes conditioned on the
Lease's ``resourceVersion``, so of two replicas racing for an expired Lease exactly one wins. The holder
stops acting when it cannot renew within ``renew_deadline`` (shorter than the duration), so it has stopped
before anyone else may take over. The same scheme as Kubernetes' own controllers (client-go leaderelection).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

MICRO_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class ElectionTiming:
    duration_seconds: int = 15  # a holder silent this long may be replaced
    renew_deadline_seconds: float = 10.0  # the holder stops acting after failing to renew this long
    retry_seconds: float = 2.0  # how often renewals and attempts to take the Lease happen

    def __post_init__(self) -> None:
        if not 0 < self.retry_seconds < self.renew_deadline_seconds < self.duration_seconds:
            raise ValueError("need 0 < retry < renew deadline < duration")


@dataclass(frozen=True)
class LeaseState:
    holder: str | None
    acquired_at: datetime.datetime | None
    renewed_at: datetime.datetime | None
    duration_seconds: int
    transitions: int
    resource_version: str | None

    @classmethod
    def of(cls, lease: dict[str, Any]) -> LeaseState:
        spec = lease.get("spec") or {}
        acquired = spec.get("acquireTime")
        renewed = spec.get("renewTime") or acquired
        return cls(
            holder=spec.get("holderIdentity") or None,
            acquired_at=parse_micro_time(acquired) if acquired else None,
            renewed_at=parse_micro_time(renewed) if renewed else None,
            duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=(lease.get("metadata") or {}).get("resourceVersion"),
        )

    def expired(self, now: datetime.datetime) -> bool:
        if self.renewed_at is None:
            return True
        return now >= self.renewed_at + datetime.timedelta(seconds=self.duration_seconds)


def may_take(state: LeaseState, identity: str, now: datetime.datetime) -> bool:
    return state.holder is None or state.holder == identity or state.expired(now)


def claim(state: LeaseState | None, identity: str, now: datetime.datetime, timing: ElectionTiming) -> dict[str, Any]:
    """The Lease spec with which ``identity`` takes or renews the Lease."""
    if state is None:
        transitions, acquired = 0, now
    else:
        keeping = state.holder == identity
        transitions = state.transitions + (0 if keeping else 1)
        acquired = state.acquired_at if keeping and state.acquired_at else now
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": timing.duration_seconds,
        "acquireTime": format_micro_time(acquired),
        "renewTime": format_micro_time(now),
        "leaseTransitions": transitions,
    }


def release() -> dict[str, Any]:
    """The Lease spec a holder leaves behind when it stops on purpose, so a standby takes over at once."""
    return {"holderIdentity": None, "renewTime": None, "acquireTime": None}


def format_micro_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime(MICRO_TIME)


def parse_micro_time(text: str) -> datetime.datetime:
    text = text.replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(text).astimezone(datetime.UTC)
