"""The one interface a runner backend implements: start an attempt, wait for any to end, stop one, stop all.

The :class:`~kubetune.runners.driver.Runner` holds every rule (what to run next, retries, what is recorded);
a backend only runs commands somewhere: :class:`~kubetune.runners.process.ProcessBackend` as processes on
this machine. A new backend (Ray, say) implements :class:`Backend` and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kubetune.core.lifecycle import AttemptResult


@dataclass(frozen=True)
class Attempt:
    """One start of one trial: what to run, where, and where its output goes."""

    trial: str  # the trial's id
    attempt: int  # 1 for the first start, one more for each start after
    command: list[str]
    env: dict[str, str]  # the trial's own variables, on top of the backend's environment
    workdir: Path  # the manifest's folder
    stdout: Path
    stderr: Path
    timeout_seconds: float | None
    gpu: float  # GPUs per trial; below 1 a share of one


@dataclass
class AttemptEnd:
    """How an attempt's command ended: its exit code, or ``failure`` when the backend ended it (it could not
    start, it ran past its timeout, its node was lost)."""

    trial: str
    exit_code: int | None = None
    failure: AttemptResult | None = None
    devices: list[str] = field(default_factory=list)


class Backend(Protocol):
    def prepare(self) -> None:
        """Checks that trials can run here at all (raises :class:`RunnerError` with a clear message)."""

    def at_once(self, parallelism: int) -> int:
        """How many attempts can run at the same time: ``parallelism`` or fewer, when fewer fit."""

    def slots(self) -> int:
        """How many more attempts can start right now."""

    async def __aenter__(self) -> Backend: ...

    async def __aexit__(self, *exc: object) -> None:
        """Stops every attempt still running."""

    def start(self, attempt: Attempt) -> list[str]:
        """Starts ``attempt``; returns the devices it was given."""

    async def wait_any(self) -> list[AttemptEnd]:
        """Waits until at least one attempt has ended; returns those that have."""

    async def stop(self, trial: str) -> AttemptEnd | None:
        """Stops the trial's attempt and waits until it is gone; its end when it had ended on its own first,
        else None."""


class RunnerError(Exception):
    """The experiment cannot run as asked (a bad output folder, a missing GPU, a changed manifest...)."""
