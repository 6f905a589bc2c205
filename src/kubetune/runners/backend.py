"""The one interface a runner backend implements: start an attempt, wait for any to end, stop one, stop all.

The :class:`~kubetune.runners.driver.Runner` holds every rule (what to run next, retries, what is recorded);
a backend only runs commands somewhere: :class:`~kubetune.runners.process.ProcessBackend` as processes on
this machine. A new backend (Ray, say) implements :class:`Backend` and nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

from kubetune.core.lifecycle import AttemptResult, TrialState


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
    metrics_file: Path | None = None  # the file collector's file, removed before the attempt starts


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


def open_outputs(attempt: Attempt) -> contextlib.AbstractContextManager[tuple[IO[bytes], IO[bytes]]]:
    """The attempt's stdout and stderr files, opened (their folder made), its metrics file removed; raises
    OSError when a file cannot be made (a path too long, a folder without write permission, a full disk)."""
    attempt.stdout.parent.mkdir(parents=True, exist_ok=True)
    if attempt.metrics_file is not None:
        attempt.metrics_file.unlink(missing_ok=True)
    stack = contextlib.ExitStack()
    try:
        stdout = stack.enter_context(attempt.stdout.open("wb"))
        stderr = stack.enter_context(attempt.stderr.open("wb"))
    except OSError:
        stack.close()
        raise

    @contextlib.contextmanager
    def outputs() -> Iterator[tuple[IO[bytes], IO[bytes]]]:
        with stack:
            yield stdout, stderr

    return outputs()


def cannot_prepare(exc: OSError) -> AttemptResult:
    """The failure of an attempt whose files could not be made (the attempt never started)."""
    where = f" {exc.filename}" if exc.filename else ""
    return AttemptResult(TrialState.FAILED, reason="StartError", message=f"cannot prepare{where}: {reason(exc)}")


def reason(exc: Exception) -> str:
    """What went wrong, in the operating system's words where it gave them."""
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
