"""The Ray backend: each attempt is a Ray task that runs the trial's command on whichever node Ray picks.

Tasks, not actors: an attempt is one call with its own resource request (``num_cpus``, ``memory``,
``num_gpus`` from ``trialTemplate.resources``, so Ray's scheduler places and packs fractional GPUs and sets
``CUDA_VISIBLE_DEVICES``), it holds no state between attempts, and a task's resources go back to the cluster
the moment it ends; an actor would keep them, or need a pool managed here. The task is a streaming generator
(:mod:`~kubetune.runners.ray_task`): it yields the trial's output as it is written, and this side appends it
to the attempt's log files in the run folder, so reports (early stopping), metrics and logs are read by the
runner exactly as for local processes, whether the node is this machine or another; nothing is shared
through a file system. The manifest's folder reaches the nodes as the job's ``runtime_env`` ``working_dir``.
A task whose worker or node died ends the attempt as Failed with reason ``NodeLost``; the runner retries it
like any failure (Ray's own retries are off: the runner owns them). Ray is imported only here and only when
this backend is chosen.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from kubetune.core.lifecycle import AttemptResult, TrialState
from kubetune.core.spec import Resources
from kubetune.runners.backend import Attempt, AttemptEnd, RunnerError, cannot_prepare, open_outputs

STOP_GRACE_SECONDS = 10.0  # how long a cancelled task has to kill its trial before it is killed itself
UNLIMITED = 1 << 30
_SUFFIX = {"": 1.0, "m": 1e-3, "n": 1e-9, "u": 1e-6, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
           "E": 1e18, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60}
_QUANTITY = re.compile(r"^\+?([0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity as a number: ``500m`` -> 0.5, ``1Gi`` -> 1073741824, ``2`` -> 2."""
    match = _QUANTITY.match(str(value).strip())
    if match is None or match.group(2) not in _SUFFIX:
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def ray_resources(resources: Resources) -> dict[str, float]:
    """``trialTemplate.resources`` as Ray task options: one CPU when none is asked for (Ray's default)."""
    options = {"num_cpus": quantity(resources.cpu) if resources.cpu is not None else 1.0,
               "num_gpus": float(resources.gpu)}
    if resources.memory is not None:
        options["memory"] = float(int(quantity(resources.memory)))
    return options


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RunnerError("--backend ray needs Ray: pip install 'kubetune[ray]'") from None
    return ray


@dataclass
class _Running:
    attempt: Attempt
    ref: Any  # the task's ObjectRefGenerator (None for an attempt whose files could not be made)
    task: asyncio.Task[AttemptEnd | None]


class RayBackend:
    def __init__(self, resources: Resources, workdir: Path, *, address: str | None = None,
                 out: Path | None = None, runtime_env: dict[str, Any] | None = None):
        self.options = ray_resources(resources)
        self.workdir = Path(workdir).resolve()
        self.address = address
        self.out = out
        self.user_runtime_env = dict(runtime_env or {})
        self.capacity = UNLIMITED
        self._running: dict[str, _Running] = {}
        self._remote: Any = None

    # -- set-up ---------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        ray = _ray()
        _check_reachable(self.address)
        try:
            ray.init(address=self.address, runtime_env=self._runtime_env(), log_to_driver=False,
                     logging_level="ERROR", ignore_reinit_error=True)
        except ConnectionError as exc:
            where = self.address or "auto"
            raise RunnerError(f"--address {where}: cannot connect to Ray: {_first_line(exc)}") from None
        except Exception as exc:  # Ray raises plain errors for a runtime_env it refuses (a working_dir too large)
            given = f" and the --runtime-env fields {sorted(self.user_runtime_env)}" if self.user_runtime_env else ""
            raise RunnerError(f"cannot start the Ray job with working_dir {self._runtime_env()['working_dir']} "
                              f"(copied to every node){given}: {_first_line(_innermost(exc))}") from None
        from ray import cloudpickle

        from kubetune.runners import ray_task
        cloudpickle.register_pickle_by_value(ray_task)  # the cluster needs no kubetune
        self._remote = ray.remote(ray_task.run_attempt)
        self.capacity = _capacity(ray.cluster_resources(), self.options)

    def _runtime_env(self) -> dict[str, Any]:
        """The user's runtime_env, with the manifest's folder as its working_dir unless it names one; the run
        folder is never uploaded."""
        excludes = [".git", "kubetune-runs"]
        if self.out is not None:
            with contextlib.suppress(ValueError):
                excludes.append(str(Path(self.out).resolve().relative_to(self.workdir)))
        given = self.user_runtime_env.get("excludes")
        return {"working_dir": str(self.workdir), **self.user_runtime_env,
                "excludes": [*(given if isinstance(given, list) else []), *excludes]}

    def at_once(self, parallelism: int) -> int:
        return min(parallelism, self.capacity)

    def slots(self) -> int:
        return max(0, self.capacity - len(self._running))

    async def __aenter__(self) -> RayBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for trial in list(self._running):
            await self.stop(trial)
        _ray().shutdown()

    # -- attempts -------------------------------------------------------------------------------------------
    def start(self, attempt: Attempt) -> list[str]:
        env = dict(attempt.env)
        metrics = env.pop("KUBETUNE_METRICS_FILE", None)
        relative = _relative(metrics, attempt.workdir) if metrics else None
        try:  # the attempt's files here, into which its output is streamed back
            outputs = open_outputs(attempt)
        except OSError as exc:
            self._running[attempt.trial] = _Running(attempt, None, asyncio.create_task(_ended(
                AttemptEnd(attempt.trial, failure=cannot_prepare(exc)))))
            return []
        ref = self._remote.options(**self.options, max_retries=0, num_returns="streaming").remote(
            attempt.command, env, relative, attempt.timeout_seconds)
        task = asyncio.create_task(self._follow(attempt, ref, Path(metrics) if metrics else None, outputs))
        self._running[attempt.trial] = _Running(attempt, ref, task)
        return []

    async def wait_any(self) -> list[AttemptEnd]:
        done, _ = await asyncio.wait({r.task for r in self._running.values()}, return_when=asyncio.FIRST_COMPLETED)
        ends = [end for end in (task.result() for task in done) if end is not None]
        for end in ends:
            self._running.pop(end.trial, None)
        return ends

    async def stop(self, trial: str) -> AttemptEnd | None:
        running = self._running.pop(trial, None)
        if running is None:
            return None
        if running.task.done():  # it ended on its own before the stop
            return None if running.task.cancelled() else running.task.result()
        with contextlib.suppress(Exception):
            _ray().cancel(running.ref)  # KeyboardInterrupt in the task: it kills the trial's group
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(running.task), STOP_GRACE_SECONDS)
        if not running.task.done():
            with contextlib.suppress(Exception):
                _ray().cancel(running.ref, force=True)  # its worker dies, and the trial with it (PDEATHSIG)
            running.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running.task
        # Whatever end came back after the cancel (the trial's exit by the signal that stopped it, streamed back
        # before Ray's TaskCancelledError) is the stop's doing, not the trial's result.
        return None

    async def _follow(self, attempt: Attempt, ref: Any, metrics: Path | None,
                      outputs: contextlib.AbstractContextManager[tuple[IO[bytes], IO[bytes]]]) -> AttemptEnd | None:
        """Writes the task's output into the attempt's files as it comes; its end, or None when cancelled."""
        exceptions = _ray().exceptions
        with outputs as (stdout, stderr):
            sinks: dict[str, IO[bytes]] = {"stdout": stdout, "stderr": stderr}
            try:
                async for item in ref:
                    kind, value = await item
                    end = _take(attempt, kind, value, sinks, metrics)
                    if end is not None:
                        return end
            except exceptions.TaskCancelledError:
                return None
            except exceptions.RayTaskError as exc:
                return _failed(attempt, "BackendError", f"the Ray task failed: {_first_line(exc)}")
            except exceptions.RayError as exc:  # the worker or its node died: the trial's process with it
                return _failed(attempt, "NodeLost", f"the Ray worker or node running it was lost: {_first_line(exc)}")
        return _failed(attempt, "NodeLost", "the Ray task ended without the trial's exit status")


async def _ended(end: AttemptEnd) -> AttemptEnd:
    return end


def _take(attempt: Attempt, kind: str, value: Any, sinks: dict[str, IO[bytes]],
          metrics: Path | None) -> AttemptEnd | None:
    if kind in sinks:
        sinks[kind].write(value)
        sinks[kind].flush()
    elif kind == "metrics" and metrics is not None:
        metrics.parent.mkdir(parents=True, exist_ok=True)
        partial = metrics.with_name(metrics.name + ".part")
        partial.write_bytes(value)
        partial.replace(metrics)
    elif kind == "exit":
        return AttemptEnd(attempt.trial, exit_code=int(value))
    elif kind == "timeout":
        return _failed(attempt, "Timeout", f"ran longer than timeoutSeconds ({value})")
    elif kind == "start-error":
        return _failed(attempt, "StartError", str(value))
    return None


def _failed(attempt: Attempt, reason: str, message: str) -> AttemptEnd:
    return AttemptEnd(attempt.trial, failure=AttemptResult(TrialState.FAILED, reason=reason, message=message))


def _capacity(cluster: dict[str, float], options: dict[str, float]) -> int:
    """How many attempts fit in the whole cluster at once (UNLIMITED when it has none of a resource asked for:
    an autoscaler may add nodes that do)."""
    names = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}
    fits = [int(cluster[names[key]] // amount + 1e-9) for key, amount in options.items()
            if amount > 0 and cluster.get(names[key], 0) > 0]
    return max(1, min(fits)) if fits else UNLIMITED


def _relative(path: str, workdir: Path) -> str | None:
    """The metrics file relative to the manifest's folder (the task's working folder on any node)."""
    try:
        return str(Path(path).relative_to(workdir))
    except ValueError:
        return None


def _check_reachable(address: str | None) -> None:
    """A ``host:port`` address that nothing answers at fails at once with a clear message (Ray would retry for
    a minute)."""
    if address is None or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=5):
            pass
    except (OSError, ValueError) as exc:
        raise RunnerError(f"--address {address}: no Ray cluster answers there ({exc})") from None


def _innermost(exc: BaseException) -> BaseException:
    """The exception at the bottom of a ``raise ... from`` chain (Ray wraps the reason it refused)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
