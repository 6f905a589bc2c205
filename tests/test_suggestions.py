"""The operator's suggestion worker: asks answered as the optimizer in this process would answer them, a
worker that exits seen and started again with every optimizer built again from the Trials, nothing lost."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest
from fake_cluster import FakeCluster, FakeKubelet
from prometheus_client import CollectorRegistry
from test_reconcile import drive, experiment_document

from conftest import manifest
from kubetune.core.cluster.gpu_sharing import GpuSharing
from kubetune.core.lifecycle import TrialRecord, TrialState, build_optimizer, inform
from kubetune.core.manifest import load_experiment
from kubetune.operator.metrics import OperatorMetrics
from kubetune.operator.reconcile import Reconciler
from kubetune.operator.suggestions import SuggestionError, WorkerLost, WorkerSuggestions

PARAMETERS = [{"name": "x", "type": "double", "min": -5, "max": 10},
              {"name": "kind", "type": "categorical", "values": ["a", "b", "c"]}]


def spec_of(algorithm: str, parameters: list[dict] = PARAMETERS):
    args = [f"--{p['name']}=${{params.{p['name']}}}" for p in parameters]
    return load_experiment(manifest(algorithm={"name": algorithm}, parameters=parameters, seed=3, args=args)).spec


def records() -> list[TrialRecord]:
    """Three trials ended (one each way the optimizer is told) and two in flight."""
    points = [(-4.0, "a", TrialState.SUCCEEDED, 36.0), (0.5, "b", TrialState.SUCCEEDED, 2.25),
              (7.0, "c", TrialState.FAILED, None), (3.0, "a", TrialState.RUNNING, None),
              (9.0, "b", TrialState.PENDING, None)]
    return [TrialRecord(f"demo-{n}", n, {"x": x, "kind": kind}, state=state, value=value)
            for n, (x, kind, state, value) in enumerate(points)]


def run(coroutine):
    return asyncio.run(coroutine)


async def exited(worker: WorkerSuggestions) -> None:
    """Waits until the operator side has seen its worker exit (it reads the end of the worker's output)."""
    while worker.pid is not None:
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("algorithm", ["gp", "random", "sobol"])
def test_the_worker_answers_as_the_optimizer_in_this_process_would(algorithm):
    spec = spec_of(algorithm)
    here = build_optimizer(spec, records())

    async def scenario():
        worker = WorkerSuggestions()
        try:
            there = await worker.build("demo", spec, records())
            assert all(there.is_pending(str(n)) for n in (3, 4)) and not there.is_pending("0")
            assert there.exhausted == here.exhausted is False
            first = await there.ask(3)
            assert first == here.ask(3)
            # tells and fails are sent without an answer, and reach the worker before the next ask
            for optimizer in (here, there):
                ended = TrialRecord("demo-3", 3, {}, state=TrialState.SUCCEEDED, value=1.0)
                inform(optimizer, ended)
                inform(optimizer, TrialRecord(first[0].id, int(first[0].id), {}, state=TrialState.KILLED))
            assert not there.is_pending("3") and not there.is_pending(first[0].id)
            assert there.is_pending(first[1].id)
            assert await there.ask(2) == here.ask(2)
        finally:
            await worker.close()

    run(scenario())


def test_a_finite_space_tells_the_pass_it_is_exhausted():
    spec = spec_of("random", parameters=[{"name": "kind", "type": "categorical", "values": ["a", "b"]}])

    async def scenario():
        worker = WorkerSuggestions()
        try:
            optimizer = await worker.build("demo", spec, [])
            assert len(await optimizer.ask(5)) == 2 and optimizer.exhausted
        finally:
            await worker.close()

    run(scenario())


def test_a_worker_that_exits_is_seen_its_handles_go_stale_and_the_next_build_starts_another():
    spec = spec_of("gp")
    restarts = []

    async def scenario():
        worker = WorkerSuggestions(on_restart=lambda: restarts.append(1))
        try:
            optimizer = await worker.build("demo", spec, records())
            first_pid = worker.pid
            assert first_pid is not None and not optimizer.stale
            os.kill(first_pid, signal.SIGKILL)
            with pytest.raises(WorkerLost, match="exited"):
                await optimizer.ask(1)
            assert optimizer.stale and worker.pid is None
            optimizer.tell("3", 1.0)  # to a worker that is gone: dropped, the rebuild knows it from the Trials
            with pytest.raises(WorkerLost):
                await optimizer.ask(1)
            again = await worker.build("demo", spec, records())
            assert worker.pid not in (None, first_pid) and restarts == [1]
            assert not again.stale and optimizer.stale
            assert [s.id for s in await again.ask(2)] == ["5", "6"]
        finally:
            await worker.close()

    run(scenario())


def test_a_request_the_optimizer_refuses_is_an_error_and_the_worker_goes_on():
    spec = spec_of("random")

    async def scenario():
        worker = WorkerSuggestions()
        try:
            optimizer = await worker.build("demo", spec, records())
            worker.forget("demo")
            with pytest.raises(SuggestionError, match="KeyError"):
                await optimizer.ask(1)
            with pytest.raises(SuggestionError, match="ValueError"):
                await (await worker.build("demo", spec, records())).ask(-1)
            assert len(await (await worker.build("other", spec, [])).ask(2)) == 2
        finally:
            await worker.close()

    run(scenario())


def test_an_experiment_whose_worker_is_killed_mid_run_ends_with_every_trial_once():
    """The reconciler with its optimizers in a worker: the worker killed twice while trials run; the passes
    that meet the loss fail, the experiment's optimizer is built again from its Trials, and it ends with
    exactly maxTrials trials, each parameter assignment once."""
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=14, parallelism=3, algorithm={"name": "gp"}))
    kubelet = FakeKubelet(cluster)
    metrics = OperatorMetrics(CollectorRegistry())

    async def scenario():
        worker = WorkerSuggestions(on_restart=metrics.suggestion_worker_restarts.inc)
        reconciler = Reconciler(cluster, GpuSharing(), metrics=metrics, suggestions=worker)
        failures = 0
        try:
            for kill_after in (3, 4):
                for _ in range(kill_after):
                    await reconciler.reconcile(cluster.experiment("demo"))
                    kubelet.step(finish=1)
                assert worker.pid is not None
                os.kill(worker.pid, signal.SIGKILL)
                await exited(worker)
                try:
                    await reconciler.reconcile(cluster.experiment("demo"))
                except WorkerLost:  # the handler's way: count it, list again at the next pass
                    failures += 1
                    reconciler.forget_view(cluster.experiment("demo")["metadata"].get("uid", "default/demo"))
            return await drive(reconciler, cluster, kubelet), failures
        finally:
            await worker.close()

    result, failures = run(scenario())
    trials = cluster.of_kind("trials")
    assert result.status["phase"] == "Succeeded" and len(trials) == 14
    assert metrics.suggestion_worker_restarts._value.get() == 2
    assert failures == 0  # a stale optimizer is seen before the pass asks: the pass builds it again instead
    params = [tuple(sorted(t["spec"]["params"].items())) for t in trials]
    assert len(set(params)) == 14
    assert sorted(int(t["spec"]["number"]) for t in trials) == list(range(14))


ECHO_BLAS_THREADS = """
import os, sys
from kubetune.operator.suggestion_worker import frame, read_frame
while (request := read_frame(sys.stdin.buffer)) is not None:
    sys.stdout.buffer.write(frame(("ok", [os.environ.get("OPENBLAS_NUM_THREADS", "unset")], False)))
    sys.stdout.buffer.flush()
"""


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("3", "3")], ids=["default", "the operator's own"])
def test_the_worker_runs_one_blas_thread_unless_the_operator_is_told_otherwise(monkeypatch, given, expected):
    if given is None:
        monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", given)

    async def scenario():
        worker = WorkerSuggestions(command=[sys.executable, "-c", ECHO_BLAS_THREADS])
        try:
            return await worker.build("demo", spec_of("random"), [])
        finally:
            await worker.close()

    assert run(scenario()).is_pending(expected)
