"""Where the operator's optimizers live and how a pass reaches them: in a worker process (the operator's way)
or in the operator's own process, asked in a thread (the reconciler's default, for tests).

A Python thread does not keep the GP's work off the event loop: the GP's Python code holds the GIL, and the
loop (watch events, status writes, every other experiment) waits for it; the event loop lagged seconds
behind while a GP ask ran. :class:`WorkerSuggestions` keeps the optimizers in one process of the operator's
own (:mod:`kubetune.operator.suggestion_worker`): tells are messages sent without waiting, an ask waits for
its answer while the loop runs on. The worker holds nothing that is not in the cluster: when it exits (killed
for its memory, say) the next request starts another, every handle on the old one becomes ``stale``, and each
experiment's next pass builds its optimizer again from its Trials, as after an operator restart.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import pickle
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubetune.core.engine import Optimizer, Suggestion
from kubetune.core.lifecycle import TrialRecord, build_optimizer
from kubetune.core.spec import ExperimentSpec
from kubetune.operator.suggestion_worker import HEADER, frame

logger = logging.getLogger("kubetune.operator")
WORKER_MODULE = "kubetune.operator.suggestion_worker"
# One BLAS thread in the worker unless the operator's environment says otherwise. The GP's matrices are small
# (hundreds of rows), and OpenBLAS's threads spin while they wait: with its default of a thread per core the
# worker burnt 4.5 times the CPU for the same asks (378 ms against 83 ms of CPU for an ask of 32 with 2,000 in
# flight), taken from kube-apiserver and the operator beside it, and every ask took longer.
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class WorkerLost(Exception):
    """The suggestion worker exited; the optimizers are built again from the Trials."""


class SuggestionError(Exception):
    """The optimizer refused a request (the worker's message says why)."""


class ExperimentOptimizer(Protocol):
    """One experiment's optimizer as a pass uses it (tells and fails are what
    :func:`kubetune.core.lifecycle.inform` sends)."""

    @property
    def exhausted(self) -> bool: ...
    @property
    def stale(self) -> bool: ...
    def is_pending(self, trial_id: str) -> bool: ...
    def tell(self, trial_id: str, value: float) -> None: ...
    def fail(self, trial_id: str) -> None: ...
    async def ask(self, n: int) -> list[Suggestion]: ...


class Suggestions(Protocol):
    """Builds, keeps and forgets the optimizers of the experiments, by key."""

    async def build(self, key: str, spec: ExperimentSpec, records: list[TrialRecord]) -> ExperimentOptimizer: ...
    def forget(self, key: str) -> None: ...
    async def close(self) -> None: ...


# -- in the operator's own process -------------------------------------------------------------------------
class _InThread:
    def __init__(self, optimizer: Optimizer):
        self._optimizer = optimizer
        self.stale = False

    @property
    def exhausted(self) -> bool:
        return self._optimizer.exhausted

    def is_pending(self, trial_id: str) -> bool:
        return self._optimizer.is_pending(trial_id)

    def tell(self, trial_id: str, value: float) -> None:
        self._optimizer.tell(trial_id, value)

    def fail(self, trial_id: str) -> None:
        self._optimizer.fail(trial_id)

    async def ask(self, n: int) -> list[Suggestion]:
        return await asyncio.to_thread(self._optimizer.ask, n)


class ThreadSuggestions:
    """The optimizers in this process, each ask in a worker thread."""

    async def build(self, key: str, spec: ExperimentSpec, records: list[TrialRecord]) -> ExperimentOptimizer:
        return _InThread(build_optimizer(spec, records))

    def forget(self, key: str) -> None:
        pass

    async def close(self) -> None:
        pass


# -- in a worker process -----------------------------------------------------------------------------------
class _InWorker:
    """A handle on one optimizer in the worker: which trials it holds pending (so that ``inform`` needs no
    round trip) and whether the last answer said it is exhausted."""

    def __init__(self, worker: WorkerSuggestions, key: str, generation: int, pending: list[str], exhausted: bool):
        self._worker, self._key, self._generation = worker, key, generation
        self._pending = set(pending)
        self._exhausted = exhausted

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    @property
    def stale(self) -> bool:
        """The worker that holds it exited: it must be built again."""
        return not self._worker.serves(self._generation)

    def is_pending(self, trial_id: str) -> bool:
        return trial_id in self._pending

    def tell(self, trial_id: str, value: float) -> None:
        self._pending.discard(trial_id)
        self._worker.send(self._generation, ("tell", self._key, trial_id, value))

    def fail(self, trial_id: str) -> None:
        self._pending.discard(trial_id)
        self._worker.send(self._generation, ("fail", self._key, trial_id))

    async def ask(self, n: int) -> list[Suggestion]:
        suggestions, self._exhausted = await self._worker.request(self._generation, ("ask", self._key, n))
        self._pending.update(s.id for s in suggestions)
        return list(suggestions)


@dataclass
class _Process:
    """One worker process, the answers it owes (in the order of the requests) and its generation."""

    process: asyncio.subprocess.Process
    generation: int
    answers: collections.deque[asyncio.Future[Any]] = field(default_factory=collections.deque)
    running: bool = True
    reading: asyncio.Task[None] | None = None


class WorkerSuggestions:
    """The optimizers in one worker process, started on the first request and again after it exits."""

    def __init__(self, command: list[str] | None = None, on_restart: Callable[[], None] = lambda: None):
        self._command = command or [sys.executable, "-m", WORKER_MODULE]
        self._on_restart = on_restart
        self._worker: _Process | None = None
        self._starting = asyncio.Lock()
        self.generation = 0  # counts the workers started

    @property
    def pid(self) -> int | None:
        return self._worker.process.pid if self._worker is not None and self._worker.running else None

    def serves(self, generation: int) -> bool:
        return self._worker is not None and self._worker.running and self._worker.generation == generation

    async def build(self, key: str, spec: ExperimentSpec, records: list[TrialRecord]) -> ExperimentOptimizer:
        worker = await self._started()
        pending, exhausted = await self._request(worker, ("build", key, spec, records))
        return _InWorker(self, key, worker.generation, pending, exhausted)

    def forget(self, key: str) -> None:
        self.send(self.generation, ("forget", key))

    def send(self, generation: int, message: tuple) -> None:
        """Sends a message that has no answer, to the worker of ``generation`` only: one that exited took its
        optimizers with it, and their handles are stale."""
        worker = self._worker
        if worker is not None and self.serves(generation) and worker.process.stdin is not None:
            worker.process.stdin.write(frame(message))

    async def request(self, generation: int, message: tuple) -> Any:
        """Sends a request to the worker of ``generation`` and waits for its answer."""
        worker = self._worker
        if worker is None or not self.serves(generation):
            raise WorkerLost("the suggestion worker was started again since this optimizer was built")
        return await self._request(worker, message)

    async def _request(self, worker: _Process, message: tuple) -> Any:
        assert worker.process.stdin is not None
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        worker.answers.append(answer)
        worker.process.stdin.write(frame(message))
        with contextlib.suppress(ConnectionError):  # the reader sees the exit and fails the answer
            await worker.process.stdin.drain()
        status, *values = await answer
        if status == "error":
            raise SuggestionError(values[0])
        return values

    async def _started(self) -> _Process:
        async with self._starting:
            if self._worker is None or not self._worker.running:
                if self._worker is not None:
                    logger.warning("the suggestion worker exited; starting it again (the optimizers are built "
                                   "again from the trials)")
                    self._on_restart()
                environment = {**{name: "1" for name in BLAS_THREADS}, **os.environ}
                process = await asyncio.create_subprocess_exec(*self._command, env=environment,
                                                               stdin=asyncio.subprocess.PIPE,
                                                               stdout=asyncio.subprocess.PIPE)
                self.generation += 1
                self._worker = _Process(process, self.generation)
                self._worker.reading = asyncio.create_task(self._read(self._worker))
            return self._worker

    @staticmethod
    async def _read(worker: _Process) -> None:
        stdout = worker.process.stdout
        assert stdout is not None
        try:
            while True:
                header = await stdout.readexactly(HEADER.size)
                body = await stdout.readexactly(HEADER.unpack(header)[0])
                answer = worker.answers.popleft()
                if not answer.done():
                    answer.set_result(pickle.loads(body))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            worker.running = False
            code = await worker.process.wait()
            while worker.answers:
                answer = worker.answers.popleft()
                if not answer.done():
                    answer.set_exception(WorkerLost(f"the suggestion worker exited (status {code})"))

    async def close(self) -> None:
        """Ends the worker (its stdin closes) and waits for it."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        worker.running = False
        if worker.process.stdin is not None:
            worker.process.stdin.close()
        try:
            await asyncio.wait_for(worker.process.wait(), 10)
        except TimeoutError:
            worker.process.kill()
            await worker.process.wait()
        if worker.reading is not None:
            await asyncio.gather(worker.reading, return_exceptions=True)
