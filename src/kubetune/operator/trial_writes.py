"""The status writes of one experiment's Trials: each trial's in the order they were made, most of them
behind the pass that made them.

A pass settles ended trials and marks started ones Running in its view at once, and writes their status
behind the refills (:meth:`TrialWrites.later`, started by :meth:`TrialWrites.start` when the pass ends, a
bounded number at a time), so a refill never waits for the status writes of other trials. A write the pass
must see done (a retry's new attempt, a trial the operator stops) is made at once (:meth:`TrialWrites.now`).
Either way a trial's write starts only once its earlier ones are done: a late Running mark must never land
on top of the trial's result.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Write = Callable[[], Awaitable[None]]
BEHIND_CONCURRENCY = 8  # writes behind the passes, per experiment, at once


class TrialWrites:
    def __init__(self, concurrency: int = BEHIND_CONCURRENCY):
        self._concurrency = concurrency
        self._slots: asyncio.Semaphore | None = None
        self._last: dict[str, asyncio.Future[None]] = {}  # trial name -> its latest write not yet done
        self._queued: list[tuple[str, Write]] = []

    def later(self, trial: str, write: Write) -> None:
        """Queues a write of ``trial``'s status, started when the pass ends."""
        self._queued.append((trial, write))

    async def now(self, trial: str, write: Write) -> None:
        """Writes ``trial``'s status now, once its earlier writes are done."""
        await self._chained(trial, write, behind=False)

    def start(self) -> list[asyncio.Future[None]]:
        """Starts the queued writes, each once its trial's earlier ones are done; their tasks."""
        queued, self._queued = self._queued, []
        return [self._chained(trial, write, behind=True) for trial, write in queued]

    def cancel(self) -> None:
        self._queued = []
        for task in list(self._last.values()):
            task.cancel()

    def _chained(self, trial: str, write: Write, behind: bool) -> asyncio.Future[None]:
        previous = self._last.get(trial)
        task = asyncio.ensure_future(self._after(previous, write, behind))
        self._last[trial] = task

        def done(finished: asyncio.Future[None]) -> None:
            if self._last.get(trial) is finished:
                del self._last[trial]

        task.add_done_callback(done)
        return task

    async def _after(self, previous: asyncio.Future[None] | None, write: Write, behind: bool) -> None:
        if previous is not None:
            await asyncio.wait([previous])  # its failure is reported by whoever started it
        if not behind:
            await write()
            return
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._concurrency)
        async with self._slots:
            await write()
