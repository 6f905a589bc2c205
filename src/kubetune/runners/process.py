"""The process backend: each attempt is a process (group) on this machine.

The command runs in the manifest's folder with the runner's environment plus the trial's variables, in a
process group of its own, its stdout and stderr in the attempt's log files. GPUs are shared out by
:class:`~kubetune.core.gpu.GpuPool` (``CUDA_VISIBLE_DEVICES`` names the trial's devices). A timeout, a stop
or the runner's end sends SIGTERM to the whole group, then SIGKILL after a grace period; a
:mod:`~kubetune.runners.reaper` does the same if the runner dies without a chance to.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass

from kubetune.core.gpu import GpuPool
from kubetune.core.lifecycle import AttemptResult, TrialState
from kubetune.runners.backend import Attempt, AttemptEnd, RunnerError, cannot_prepare, open_outputs, reason
from kubetune.runners.devices import detect_gpus

KILL_GRACE_SECONDS = 5.0
UNLIMITED = 1 << 30


@dataclass
class _Running:
    attempt: Attempt
    task: asyncio.Task[AttemptEnd]
    devices: list[str]


class ProcessBackend:
    def __init__(self, gpu: float, *, no_gpu: bool = False, gpus: list[str] | None = None):
        self.gpu = gpu
        self.no_gpu = no_gpu
        self._gpus = gpus
        self.pool = GpuPool([])
        self._running: dict[str, _Running] = {}
        self._reaper: subprocess.Popen[bytes] | None = None

    # -- set-up ---------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        devices = [] if self.no_gpu else (self._gpus if self._gpus is not None else detect_gpus())
        self.pool = GpuPool(devices)
        if self.gpu > 0 and not self.no_gpu and not self.pool.can_ever_fit(self.gpu):
            have = len(self.pool.devices)
            raise RunnerError(
                f"spec.trialTemplate.resources.gpu: each trial asks for {self.gpu} GPU, but this machine has "
                f"{have} GPU{'s' if have != 1 else ''}; pass --no-gpu to run without one"
            )

    def at_once(self, parallelism: int) -> int:
        return min(parallelism, UNLIMITED if self.no_gpu else self.pool.capacity(self.gpu))

    def slots(self) -> int:
        return UNLIMITED if self.no_gpu else self.pool.capacity(self.gpu)

    async def __aenter__(self) -> ProcessBackend:
        # Its own session: a Ctrl-C or a closed terminal must not end it before the runner.
        self._reaper = subprocess.Popen([sys.executable, "-m", "kubetune.runners.reaper"], stdin=subprocess.PIPE,
                                        start_new_session=True)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for trial in list(self._running):
            await self.stop(trial)
        if self._reaper is not None:
            with contextlib.suppress(OSError):
                assert self._reaper.stdin is not None
                self._reaper.stdin.close()
            await asyncio.to_thread(self._reaper.wait)

    # -- attempts -------------------------------------------------------------------------------------------
    def start(self, attempt: Attempt) -> list[str]:
        devices = [] if self.no_gpu else self.pool.allocate(self.gpu)
        if devices is None:
            raise RunnerError("no GPU share is free: the runner started more trials than fit")
        task = asyncio.create_task(self._run(attempt, devices))
        self._running[attempt.trial] = _Running(attempt, task, devices)
        return devices

    async def wait_any(self) -> list[AttemptEnd]:
        done, _ = await asyncio.wait({r.task for r in self._running.values()}, return_when=asyncio.FIRST_COMPLETED)
        ends = [task.result() for task in done]
        for end in ends:
            self._release(end.trial)
        return ends

    async def stop(self, trial: str) -> AttemptEnd | None:
        running = self._running.get(trial)
        if running is None:
            return None
        running.task.cancel()
        try:
            end: AttemptEnd | None = await running.task
        except asyncio.CancelledError:
            end = None
        self._release(trial)
        return end

    def _release(self, trial: str) -> None:
        running = self._running.pop(trial, None)
        if running is not None and not self.no_gpu:
            self.pool.release(running.devices, self.gpu)

    async def _run(self, attempt: Attempt, devices: list[str]) -> AttemptEnd:
        env = {**os.environ, **attempt.env}
        # "python" in a manifest means the interpreter kubetune runs in, with the user's packages.
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        if self.gpu > 0 or self.no_gpu:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
        if not devices:  # run without a GPU (--no-gpu): no share of one either
            env.pop("KUBETUNE_GPU_SHARE", None)
        try:
            outputs = open_outputs(attempt)
        except OSError as exc:
            return AttemptEnd(attempt.trial, failure=cannot_prepare(exc), devices=devices)
        with outputs as (stdout, stderr):
            try:
                process = await asyncio.create_subprocess_exec(
                    *attempt.command, cwd=attempt.workdir, env=env, stdout=stdout, stderr=stderr,
                    stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
            except (OSError, ValueError) as exc:  # ValueError: an argument or variable the OS cannot take
                failure = AttemptResult(TrialState.FAILED, reason="StartError",
                                        message=f"cannot start {attempt.command[0]!r}: {reason(exc)}")
                return AttemptEnd(attempt.trial, failure=failure, devices=devices)
            self._tell_reaper(f"+ {process.pid}")
            try:
                returncode = await asyncio.wait_for(process.wait(), attempt.timeout_seconds)
            except TimeoutError:
                await _kill_group(process)
                failure = AttemptResult(TrialState.FAILED, reason="Timeout",
                                        message=f"ran longer than timeoutSeconds ({attempt.timeout_seconds})")
                return AttemptEnd(attempt.trial, failure=failure, devices=devices)
            except asyncio.CancelledError:
                await _kill_group(process)
                raise
            finally:
                self._tell_reaper(f"- {process.pid}")
        return AttemptEnd(attempt.trial, exit_code=returncode, devices=devices)

    def _tell_reaper(self, line: str) -> None:
        if self._reaper is None or self._reaper.stdin is None:
            return
        with contextlib.suppress(OSError, ValueError):
            self._reaper.stdin.write(f"{line}\n".encode())
            self._reaper.stdin.flush()


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the trial's whole process group, SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), wait)
            return
        except TimeoutError:
            continue
