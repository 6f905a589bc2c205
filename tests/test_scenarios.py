"""One scenario suite, every shell: the same experiments run by the local runner (trials as processes, or as
Ray tasks on a real two-node Ray cluster) and by the operator's reconciler (against the in-memory cluster and
its test kubelet) end the same way, so the shells cannot drift apart. Each trial does what the scenario's
plan says for its number and attempt (``tests/trials/scenario.py`` locally and on Ray, the test kubelet in
the cluster)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fake_cluster import FakeCluster, FakeKubelet

from conftest import TRIALS, manifest
from kubetune.core.cluster.gpu_sharing import GpuSharing
from kubetune.core.lifecycle import TrialRecord
from kubetune.core.manifest import load_experiment
from kubetune.core.plan import Tally
from kubetune.core.summary import latest_by_id, parse_rows
from kubetune.operator.reconcile import Reconciler
from kubetune.runners import local_runner
from kubetune.runners.driver import Runner


@dataclass
class Ended:
    phase: str
    reason: str
    trials: dict[int, dict[str, Any]]  # number -> state, attempts, params
    counts: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Scenario:
    name: str
    spec: dict[str, Any]
    plan: dict[str, list[str]]
    interrupt_after: int | None = None  # the runner is interrupted (locally) or restarted (the operator) then


SCENARIOS = [
    # One slot: with two, whether trial 0's retry ends before trial 2's second failure ends the experiment
    # would be a race between processes.
    Scenario("retry", {"maxTrials": 4, "parallelism": 1, "maxFailedTrials": 0, "template": {"retries": 1}},
             {"default": ["ok"], "0": ["fail", "ok"], "2": ["fail", "fail"]}),
    Scenario("target", {"maxTrials": 20, "parallelism": 1,
                        "objective": {"metric": "loss", "direction": "minimize", "target": 1000}},
             {"default": ["ok"]}),
    Scenario("stop", {"maxTrials": 20, "parallelism": 3,
                      "objective": {"metric": "loss", "direction": "minimize", "target": 1000}},
             {"default": ["slow"], "0": ["ok"]}),
    Scenario("max-failed", {"maxTrials": 10, "parallelism": 1, "maxFailedTrials": 1},
             {"default": ["fail"], "1": ["nometrics"]}),
    Scenario("exhausted space", {"maxTrials": 10, "parallelism": 2, "algorithm": {"name": "grid"},
                                 "parameters": [{"name": "x", "type": "int", "min": 0, "max": 2}]},
             {"default": ["ok"]}),
    Scenario("resume after an interruption", {"maxTrials": 8, "parallelism": 2}, {"default": ["ok"]},
             interrupt_after=3),
    # Optuna's samplers: rebuilt from the trials when the runner resumes or the operator restarts.
    Scenario("tpe, resumed", {"maxTrials": 8, "parallelism": 2,
                              "algorithm": {"name": "tpe", "settings": {"startupTrials": 2}}},
             {"default": ["ok"]}, interrupt_after=3),
    Scenario("cmaes, resumed", {"maxTrials": 8, "parallelism": 2, "algorithm": {"name": "cmaes"}},
             {"default": ["ok"]}, interrupt_after=3),
]
EXPECTED = {
    "retry": ("Failed", "MaxFailedTrialsReached", {0: ("Succeeded", 2), 2: ("Failed", 2)}),
    "target": ("Succeeded", "TargetReached", {0: ("Succeeded", 1)}),
    "stop": ("Succeeded", "TargetReached", {0: ("Succeeded", 1), 1: ("Killed", 1), 2: ("Killed", 1)}),
    "max-failed": ("Failed", "MaxFailedTrialsReached", {0: ("Failed", 1), 1: ("MetricsUnavailable", 1)}),
    "exhausted space": ("Succeeded", "SearchSpaceExhausted", {0: ("Succeeded", 1), 1: ("Succeeded", 1),
                                                              2: ("Succeeded", 1)}),
    "resume after an interruption": ("Succeeded", "MaxTrialsReached",
                                     {n: ("Succeeded", None) for n in range(8)}),
    "tpe, resumed": ("Succeeded", "MaxTrialsReached", {n: ("Succeeded", None) for n in range(8)}),
    "cmaes, resumed": ("Succeeded", "MaxTrialsReached", {n: ("Succeeded", None) for n in range(8)}),
}


def document(scenario: Scenario) -> dict[str, Any]:
    spec = {"algorithm": {"name": "random"}, **scenario.spec}
    doc = manifest(**spec)
    container = doc["spec"]["trialTemplate"]["spec"]["containers"][0]
    container.update(command=[sys.executable, str(TRIALS / "scenario.py")], args=[],
                     env=[{"name": "SCENARIO_PLAN", "value": json.dumps(scenario.plan)}])
    return doc


def run_locally(scenario: Scenario, tmp_path: Path, ray_address: str | None = None) -> Ended:
    """The local runner with trials as processes, or as Ray tasks on the cluster at ``ray_address``."""
    doc = document(scenario)
    backend = {"backend_name": "ray", "address": ray_address} if ray_address else {}
    if ray_address:  # a tenth of a CPU each, so the test cluster's two CPUs hold every scenario's parallelism
        doc["spec"]["trialTemplate"]["resources"] = {"cpu": "100m"}
    state = tmp_path / "state"
    state.mkdir()
    doc["spec"]["trialTemplate"]["spec"]["containers"][0]["env"].append(
        {"name": "SCENARIO_STATE", "value": str(state)})
    experiment = load_experiment(doc)
    out = tmp_path / "out"
    ended: list[TrialRecord] = []

    def interrupt(record: TrialRecord) -> None:
        ended.append(record)
        if len(ended) == scenario.interrupt_after:
            os.kill(os.getpid(), signal.SIGINT)

    runner = local_runner(experiment, out, tmp_path, on_trial_end=interrupt, **backend)
    first = asyncio.run(runner.run())
    assert_tally_kept_up(runner)
    if scenario.interrupt_after is not None:
        assert first.phase == "Interrupted"
        runner = local_runner(experiment, out, tmp_path, resume=True, **backend)
        first = asyncio.run(runner.run())
        assert_tally_kept_up(runner)
    rows, problems = parse_rows((out / "trials.jsonl").read_text().splitlines())
    assert not problems
    latest = latest_by_id(rows).values()
    return Ended(first.phase, first.reason, {r.number: {"state": str(r.state), "attempts": r.attempts,
                                                        "params": r.params} for r in latest},
                 Counter(str(r.state) for r in latest))


def assert_tally_kept_up(runner: Runner) -> None:
    """The runner's tally, kept up as trials moved, is what counting every record gives."""
    counted = Tally.of(runner.records.values(), runner.limits.direction)
    kept = runner.tally
    assert {s: n for s, n in kept.counts.items() if n} == {s: n for s, n in counted.counts.items() if n}
    assert (kept.best, sorted(kept.queued)) == (counted.best, sorted(counted.queued))


def run_in_cluster(scenario: Scenario) -> Ended:
    cluster = FakeCluster()
    doc = document(scenario)
    doc["spec"]["trialTemplate"]["spec"]["containers"][0]["image"] = "python:3.12-slim"
    cluster.add_experiment(doc)

    def behaviour(params: dict[str, Any], pod: dict[str, Any]) -> str:
        labels = pod["metadata"]["labels"]
        number = labels["kubetune.io/trial"].rsplit("-", 1)[1]
        attempt = int(labels["kubetune.io/attempt"])
        endings = scenario.plan.get(number, scenario.plan["default"])
        ending = endings[min(attempt, len(endings)) - 1]
        return {"ok": "sdk", "slow": "sdk", "fail": "fail", "nometrics": "nometrics"}[ending]

    async def drive() -> dict[str, Any]:
        reconciler, kubelet = Reconciler(cluster, GpuSharing()), FakeKubelet(cluster, behaviour)
        for number in range(300):
            if number == scenario.interrupt_after:
                reconciler = Reconciler(cluster, GpuSharing())  # the operator restarted
            result = await reconciler.reconcile(cluster.experiment("demo"))
            if result.done:
                return result.status
            kubelet.step(finish=1)
        raise AssertionError("the experiment did not end")

    status = asyncio.run(drive())
    trials = {int(t["spec"]["number"]): {"state": t["status"]["phase"], "attempts": t["status"]["attempts"],
                                         "params": t["spec"]["params"]} for t in cluster.of_kind("trials")}
    return Ended(status["phase"], status["reason"], trials, Counter(t["state"] for t in trials.values()))


@pytest.mark.parametrize("shell", ["local", "ray", "operator"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_every_shell_ends_a_scenario_alike(scenario, shell, tmp_path, request):
    if shell == "operator":
        ended = run_in_cluster(scenario)
    else:
        address = request.getfixturevalue("ray_cluster").address if shell == "ray" else None
        ended = run_locally(scenario, tmp_path, address)
    phase, reason, trials = EXPECTED[scenario.name]
    assert (ended.phase, ended.reason) == (phase, reason), ended
    for number, (state, attempts) in trials.items():
        assert ended.trials[number]["state"] == state, (number, ended.trials[number])
        if attempts is not None:
            assert ended.trials[number]["attempts"] == attempts, (number, ended.trials[number])
    params = [json.dumps(t["params"], sort_keys=True) for t in ended.trials.values()]
    assert len(set(params)) == len(params), "no assignment ran twice as two trials"
    if scenario.interrupt_after is not None:
        assert len(ended.trials) == 8 and set(ended.counts) == {"Succeeded"}
    if scenario.name == "max-failed":
        assert ended.counts == Counter({"Failed": 1, "MetricsUnavailable": 1})
    if scenario.name == "target":
        assert len(ended.trials) == 1
    if scenario.name == "stop":  # the experiment's end stops what still runs
        assert len(ended.trials) == 3 and ended.counts == Counter({"Succeeded": 1, "Killed": 2})


ASHA = {"rule": "asha", "settings": {"minResource": 1, "maxResource": 9, "reductionFactor": 3}}


def stop_early_locally(tmp_path: Path) -> Ended:
    doc = manifest(maxTrials=12, parallelism=4, earlyStopping=ASHA)
    doc["spec"]["trialTemplate"]["spec"]["containers"][0].update(
        command=[sys.executable, str(TRIALS / "curve.py")], args=["--x=${params.x}", "--steps=9", "--sleep=0.1"])
    out = tmp_path / "out"
    runner = local_runner(load_experiment(doc), out, tmp_path)
    ended = asyncio.run(runner.run())
    assert_tally_kept_up(runner)
    rows, _ = parse_rows((out / "trials.jsonl").read_text().splitlines())
    latest = latest_by_id(rows).values()
    return Ended(ended.phase, ended.reason, {r.number: {"state": str(r.state), "step": r.progress.step,
                                                        "reports": r.progress.reports} for r in latest},
                 Counter(str(r.state) for r in latest))


def stop_early_in_cluster() -> Ended:
    from fake_cluster import ReportingKubelet
    from test_reconcile_stopping import Pushes, new_reconciler

    cluster = FakeCluster()
    doc = manifest(maxTrials=12, parallelism=4, earlyStopping=ASHA)
    doc["spec"]["trialTemplate"]["spec"]["containers"][0]["image"] = "python:3.12-slim"
    cluster.add_experiment(doc)
    pushes = Pushes()
    reconciler, kubelet = new_reconciler(cluster, pushes), ReportingKubelet(cluster, pushes)

    async def drive() -> dict[str, Any]:
        for _ in range(400):
            result = await reconciler.reconcile(cluster.experiment("demo"))
            if result.done:
                return result.status
            kubelet.step()
        raise AssertionError("the experiment did not end")

    status = asyncio.run(drive())
    trials = {}
    for t in cluster.of_kind("trials"):
        progress = t["status"].get("progress") or {}
        trials[int(t["spec"]["number"])] = {"state": t["status"]["phase"], "step": progress.get("step"),
                                            "reports": progress.get("reports", 0)}
    return Ended(status["phase"], status["reason"], trials, Counter(t["state"] for t in trials.values()))


@pytest.mark.parametrize("shell", ["local", "operator"])
def test_both_shells_stop_hopeless_trials_early_alike(shell, tmp_path):
    ended = stop_early_locally(tmp_path) if shell == "local" else stop_early_in_cluster()
    assert (ended.phase, ended.reason) == ("Succeeded", "MaxTrialsReached"), ended
    assert len(ended.trials) == 12 and set(ended.counts) == {"Succeeded", "EarlyStopped"}, ended.counts
    for trial in ended.trials.values():
        if trial["state"] == "EarlyStopped":
            assert trial["step"] < 9, trial
        else:
            assert trial["step"] == 9 and trial["reports"] == 9, trial
