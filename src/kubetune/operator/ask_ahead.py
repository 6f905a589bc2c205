"""Suggestions asked ahead, so that a pass refills freed slots without waiting for a slow ask.

A GP ask with thousands of trials in flight takes a second or more. A pass that asked only once slots were
free kept every ended trial's slot empty for that long, and the trials that ended meanwhile waited for the
next ask, so batches and waits grew together (refill p95 9.5 s at 2,000 parallel 60-s trials). :class:`AskAhead`
keeps a few suggestions ready for each experiment: a pass takes from them at once, and the next ones are asked
in the background while the trials run. A pass never waits for an ask under way: it takes what is held, and
the slots left over are asked for too and filled by the pass that the answer wakes. The optimizer counts the
suggestions held here as pending (they were asked), so every suggestion is still conditioned on all the
others; what asking ahead costs is that a suggestion may be made before the last few results arrive, as in a
batch of the same size.

How many it keeps follows what the experiment uses: the suggestions taken per second times the time the
slowest recent ask took, ``HEADROOM`` times over (trials end in bursts, and an ask that follows a burst is a
large one), never more than the experiment may still create nor ``MAX_AHEAD``. An optimizer whose asks
are cheap (random, Sobol, grid: under ``CHEAP_ASK_SECONDS``) is asked only when a pass needs it, as before.
What is held is lost with the operator or with its suggestion worker; the optimizer built again from the
Trials knows nothing of it, and the numbers it held are never used.
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import Callable

from kubetune.core.engine import Suggestion
from kubetune.operator.suggestions import ExperimentOptimizer

MAX_AHEAD = 256
CHEAP_ASK_SECONDS = 0.05
RATE_WINDOW_SECONDS = 10.0
HEADROOM = 3


class AskAhead:
    """An :class:`~kubetune.operator.suggestions.ExperimentOptimizer` that hands out suggestions asked ahead.

    ``on_ask(seconds, count)`` is called after each ask of the optimizer behind it (for the metrics);
    ``on_ready()`` when an ask ahead answered while a pass had slots it could not fill (to wake a pass);
    ``max_ahead`` 0 asks only for what a pass needs."""

    def __init__(self, optimizer: ExperimentOptimizer, monotonic: Callable[[], float],
                 on_ask: Callable[[float, int], None] = lambda seconds, count: None,
                 on_ready: Callable[[], None] = lambda: None, max_ahead: int = MAX_AHEAD):
        self._optimizer = optimizer
        self._on_ready = on_ready
        self._max_ahead = max_ahead
        self._short = 0  # slots the last pass could not fill: asked for once the ask under way answered
        self._monotonic = monotonic
        self._on_ask = on_ask
        self._ready: collections.deque[Suggestion] = collections.deque()
        self._asking: asyncio.Task[None] | None = None
        self._taken: collections.deque[tuple[float, int]] = collections.deque()  # (when, how many) of recent takes
        self._filled = False  # the first take (the initial fill) is not a rate
        self._asks: collections.deque[tuple[float, float]] = collections.deque()  # (when, seconds) of recent asks
        self._room = 0

    # -- what a pass uses ------------------------------------------------------------------------------------
    @property
    def exhausted(self) -> bool:
        return self._optimizer.exhausted and not self._ready

    @property
    def stale(self) -> bool:
        return self._optimizer.stale

    @property
    def held(self) -> int:
        """The suggestions asked ahead and not taken yet."""
        return len(self._ready)

    def is_pending(self, trial_id: str) -> bool:
        return self._optimizer.is_pending(trial_id)

    def tell(self, trial_id: str, value: float) -> None:
        self._optimizer.tell(trial_id, value)

    def fail(self, trial_id: str) -> None:
        self._optimizer.fail(trial_id)

    async def ask(self, n: int, room: int = 0) -> list[Suggestion]:
        """Up to ``n`` suggestions, those held first (in the order they were asked). Fewer only while an ask is
        under way: its answer holds the next numbers, and wakes the next pass. ``room``: how many more trials
        the experiment may create after these (what may be asked ahead)."""
        self._room = room
        if self._optimizer.stale:  # what is held came from an optimizer that is gone: its numbers are unknown
            self._ready.clear()
        taken = [self._ready.popleft() for _ in range(min(n, len(self._ready)))]
        if len(taken) < n and self._asking is None:
            taken += await self._ask_optimizer(n - len(taken))
        self._short = n - len(taken)
        if taken and self._filled:
            self._taken.append((self._monotonic(), len(taken)))
        self._filled = self._filled or bool(taken)
        self._ask_ahead()
        return taken

    def close(self) -> None:
        """Stops asking ahead (the experiment ended or its optimizer is replaced)."""
        if self._asking is not None:
            self._asking.cancel()
        self._ready.clear()

    # -- asking ahead ----------------------------------------------------------------------------------------
    def wanted(self) -> int:
        """How many suggestions to hold: ``HEADROOM`` times what the experiment takes while an ask as slow as
        the slowest recent one runs."""
        now = self._monotonic()
        for recent in (self._taken, self._asks):
            while len(recent) > (recent is self._asks) and recent[0][0] < now - RATE_WINDOW_SECONDS:
                recent.popleft()  # the last ask is kept however old: it is all there is to go by
        ask_seconds = max((seconds for _, seconds in self._asks), default=0.0)
        if ask_seconds < CHEAP_ASK_SECONDS:
            return 0
        per_second = sum(count for _, count in self._taken) / RATE_WINDOW_SECONDS
        return min(math.ceil(HEADROOM * per_second * ask_seconds), self._max_ahead, self._room)

    def _ask_ahead(self) -> None:
        missing = self.wanted() + self._short - len(self._ready)  # wanted() is within the room already
        if missing > 0 and self._asking is None and not self._optimizer.stale:
            self._asking = asyncio.create_task(self._hold(missing))

    async def _hold(self, n: int) -> None:
        try:
            suggestions = await self._ask_optimizer(n)
        except Exception:  # noqa: BLE001 - the next pass asks for itself, and reports what it is told
            return
        finally:
            self._asking = None
        self._ready.extend(suggestions)
        if self._short:
            self._on_ready()
        self._ask_ahead()

    async def _ask_optimizer(self, n: int) -> list[Suggestion]:
        started = self._monotonic()
        suggestions = await self._optimizer.ask(n)
        seconds = self._monotonic() - started
        self._asks.append((started + seconds, seconds))
        self._on_ask(seconds, len(suggestions))
        return suggestions
