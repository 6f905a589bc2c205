"""Suggestions asked ahead: a pass takes them without waiting for the optimizer, in the order they were asked,
never more than the experiment may still create, nothing held from an optimizer that is gone, and an
optimizer whose asks are cheap asked only for what a pass needs."""

from __future__ import annotations

import asyncio

import pytest
from fake_cluster import FakeCluster, FakeKubelet
from test_reconcile import PodWatch, drive, experiment_document

from kubetune.core.cluster.gpu_sharing import GpuSharing
from kubetune.core.engine import Suggestion
from kubetune.operator import ask_ahead as ask_ahead_module
from kubetune.operator.ask_ahead import AskAhead
from kubetune.operator.reconcile import Reconciler
from kubetune.operator.suggestions import WorkerLost


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SlowOptimizer:
    """Numbers its suggestions in order; each ask takes ``ask_seconds`` of the clock, and waits for ``gate``
    when one is set (so that a test sees what a pass does while an ask runs)."""

    def __init__(self, clock: Clock, ask_seconds: float) -> None:
        self.clock, self.ask_seconds = clock, ask_seconds
        self.asks: list[int] = []
        self.next = 0
        self.stale = False
        self.exhausted = False
        self.gate: asyncio.Event | None = None
        self.refuse = False
        self.told: list[str] = []

    def is_pending(self, trial_id: str) -> bool:
        return int(trial_id) < self.next and trial_id not in self.told

    def tell(self, trial_id: str, value: float) -> None:
        self.told.append(trial_id)

    def fail(self, trial_id: str) -> None:
        self.told.append(trial_id)

    async def ask(self, n: int) -> list[Suggestion]:
        self.asks.append(n)
        if self.gate is not None:
            await self.gate.wait()
        if self.refuse:
            raise RuntimeError("refused")
        if self.stale:
            raise WorkerLost("gone")
        self.clock.now += self.ask_seconds
        numbers = range(self.next, self.next + n)
        self.next += n
        return [Suggestion(str(i), {"x": float(i)}) for i in numbers]


async def settled() -> None:
    """Lets the tasks asking ahead run to their next wait."""
    for _ in range(10):
        await asyncio.sleep(0)


async def take_steadily(ahead: AskAhead, clock: Clock, takes: int, n: int = 4, room: int = 1000) -> list[str]:
    """A pass every second that takes ``n``, after an initial fill of 20."""
    ids = [s.id for s in await ahead.ask(20, room=room)]
    for _ in range(takes):
        clock.now += 1.0
        ids += [s.id for s in await ahead.ask(n, room=room)]
        await settled()
    return ids


def test_slow_asks_are_made_ahead_and_a_pass_takes_them_without_waiting():
    async def scenario():
        clock = Clock()
        optimizer = SlowOptimizer(clock, ask_seconds=2.0)
        ahead = AskAhead(optimizer, clock)
        ids = await take_steadily(ahead, clock, takes=5)
        assert ahead.held > 0
        optimizer.gate = asyncio.Event()  # the optimizer now answers nothing
        asks = len(optimizer.asks)
        taken = await asyncio.wait_for(ahead.ask(1, room=1000), 5)
        assert len(taken) == 1 and len(optimizer.asks) <= asks + 1  # at most the next ask ahead, still waiting
        optimizer.gate.set()
        ahead.close()
        return ids + [s.id for s in taken]

    ids = asyncio.run(scenario())
    assert [int(i) for i in ids] == list(range(len(ids)))  # handed out in the order they were asked


def test_a_pass_never_waits_for_an_ask_under_way_and_the_answer_covers_its_slots_and_wakes_the_next_pass():
    async def scenario():
        clock = Clock()
        optimizer = SlowOptimizer(clock, ask_seconds=2.0)
        woken = []
        ahead = AskAhead(optimizer, clock, on_ready=lambda: woken.append(ahead.held))
        ids = await take_steadily(ahead, clock, takes=3)
        optimizer.gate = asyncio.Event()
        held = ahead.held
        ids += [s.id for s in await ahead.ask(held, room=1000)]  # takes all held; an ask ahead starts
        await settled()
        asks = len(optimizer.asks)
        taken = await asyncio.wait_for(ahead.ask(50, room=1000), 5)  # answered at once, with nothing
        assert taken == [] and len(optimizer.asks) == asks and woken == []
        optimizer.gate.set()
        for _ in range(100):  # the 50 slots are asked for by the ask ahead that follows the one under way
            await settled()
        assert woken and woken[0] >= 1 and ahead.held >= 50  # each answer woke a pass
        ids += [s.id for s in await ahead.ask(50, room=1000)]
        ahead.close()
        return held, ids

    held, ids = asyncio.run(scenario())
    assert held > 0 and [int(i) for i in ids] == list(range(len(ids)))


def test_never_holds_more_than_the_experiment_may_still_create():
    async def scenario():
        clock = Clock()
        optimizer = SlowOptimizer(clock, ask_seconds=5.0)
        ahead = AskAhead(optimizer, clock)
        await take_steadily(ahead, clock, takes=6, n=10, room=3)
        held = ahead.held
        ahead.close()
        return held, optimizer.next

    held, asked = asyncio.run(scenario())
    assert 0 < held <= 3
    assert asked == 20 + 6 * 10 + held


@pytest.mark.parametrize("options", [{"ask_seconds": 0.001}, {"ask_seconds": 2.0, "max_ahead": 0}],
                         ids=["cheap asks", "asking ahead off"])
def test_cheap_asks_or_asking_ahead_off_ask_only_for_what_a_pass_needs(options):
    async def scenario():
        clock = Clock()
        optimizer = SlowOptimizer(clock, ask_seconds=options["ask_seconds"])
        ahead = AskAhead(optimizer, clock, max_ahead=options.get("max_ahead", ask_ahead_module.MAX_AHEAD))
        await take_steadily(ahead, clock, takes=5)
        return ahead.held, optimizer.asks

    held, asks = asyncio.run(scenario())
    assert held == 0 and asks == [20] + [4] * 5


def test_nothing_held_is_handed_out_once_the_optimizer_is_gone():
    async def scenario():
        clock = Clock()
        optimizer = SlowOptimizer(clock, ask_seconds=2.0)
        ahead = AskAhead(optimizer, clock)
        await take_steadily(ahead, clock, takes=5)
        assert ahead.held > 0
        optimizer.stale = True
        with pytest.raises(WorkerLost):
            await ahead.ask(1, room=1000)
        assert ahead.held == 0

    asyncio.run(scenario())


def test_an_ask_ahead_the_optimizer_refuses_is_not_retried_in_a_loop():
    async def scenario():
        clock = Clock()
        optimizer = SlowOptimizer(clock, ask_seconds=2.0)
        ahead = AskAhead(optimizer, clock)
        await take_steadily(ahead, clock, takes=2)
        optimizer.refuse = True
        asks = len(optimizer.asks)
        ahead._ready.clear()  # noqa: SLF001 - the next take must find nothing held
        with pytest.raises(RuntimeError):
            await ahead.ask(1, room=1000)
        await settled()
        return len(optimizer.asks) - asks

    assert asyncio.run(scenario()) <= 2  # the pass's own ask, and at most one ask ahead under way


def test_the_operator_asking_ahead_runs_exactly_max_trials_numbered_without_gaps(monkeypatch):
    monkeypatch.setattr(ask_ahead_module, "CHEAP_ASK_SECONDS", 0.0)  # every ask counts as slow
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=30, parallelism=4))
    reconciler = Reconciler(cluster, GpuSharing(), ask_ahead=True)
    held = []

    async def scenario():
        kubelet, watch = FakeKubelet(cluster), PodWatch(cluster)
        for _ in range(300):
            result = await reconciler.reconcile(cluster.experiment("demo"), watch.ended())
            if result.done:
                return result
            optimizer = next(iter(reconciler._states.values())).optimizer  # noqa: SLF001
            while optimizer is not None and optimizer._asking is not None:  # noqa: SLF001 - the ask ahead answers
                await asyncio.sleep(0.001)
            held.append(optimizer.held if optimizer is not None else 0)
            kubelet.step(finish=1)
        raise AssertionError(result)

    result = asyncio.run(scenario())
    names = sorted(t["metadata"]["name"] for t in cluster.of_kind("trials"))
    assert result.status["phase"] == "Succeeded" and result.status["trials"]["created"] == 30
    assert names == sorted(f"demo-{i}" for i in range(30))
    assert max(held) > 0  # suggestions were held ahead at some point
    assert cluster.max_active_pods == 4


def test_the_reconciler_by_default_asks_only_for_what_a_pass_needs():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=10))
    reconciler = Reconciler(cluster, GpuSharing())
    asyncio.run(drive(reconciler, cluster, FakeKubelet(cluster)))
    assert reconciler.metrics.suggestions._value.get() == 10  # noqa: SLF001
