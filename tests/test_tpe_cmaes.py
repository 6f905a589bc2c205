"""``tpe`` and ``cmaes``: Optuna's samplers behind kubetune's ask/tell, with pending trials, trials that finish
out of order, rebuilds from the trials, settings checked by field, and Optuna kept quiet. (The ask/tell
contract every algorithm keeps is ``test_engine.py``'s.)"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

from conftest import manifest
from kubetune import Optimizer
from kubetune.core.errors import ManifestError
from kubetune.core.manifest import load_experiment

CUBE = [{"name": f"x{i}", "type": "double", "min": -5, "max": 5} for i in range(3)]


def sphere(params: dict) -> float:
    return float(sum((params[f"x{i}"] - 1.5) ** 2 for i in range(3)))


def run_async(algorithm: str, budget: int, workers: int, seed: int, settings: dict | None = None) -> Optimizer:
    """``workers`` trials in flight; they finish in a seeded random order, and each freed slot asks again."""
    optimizer = Optimizer(CUBE, algorithm=algorithm, settings=settings, seed=seed)
    order = np.random.default_rng(seed)
    running = optimizer.ask(workers)
    asked = len(running)
    while running:
        done = running.pop(int(order.integers(len(running))))
        optimizer.tell(done.id, sphere(done.params))
        if asked < budget:
            running += optimizer.ask(1)
            asked += 1
    return optimizer


@pytest.mark.parametrize("algorithm", ["tpe", "cmaes"])
def test_with_trials_finishing_out_of_order_the_search_beats_random(algorithm):
    best = {name: run_async(name, 80, 4, seed=2).best[1] for name in (algorithm, "random")}
    assert best[algorithm] < best["random"] / 3, best


def test_cmaes_generations_advance_although_trials_finish_out_of_order():
    optimizer = run_async("cmaes", 60, 6, seed=4, settings={"popsize": 4})
    study = optimizer._strategy._study
    generations = [t.system_attrs.get("cma:generation") for t in study.trials]
    assert max(g for g in generations if g is not None) >= 5


def test_pending_trials_are_running_in_the_study_and_told_once_they_end():
    from optuna.trial import TrialState

    optimizer = Optimizer(CUBE, algorithm="tpe", seed=0)
    first = optimizer.ask(3)
    optimizer.tell(first[0].id, 1.0)
    optimizer.fail(first[1].id)
    optimizer.ask(2)  # the study is brought up to date before the sampler is asked
    states = [t.state for t in optimizer._strategy._study.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.RUNNING, TrialState.RUNNING,
                      TrialState.RUNNING]


def records(optimizer: Optimizer) -> list[dict]:
    return [{"id": t.id, "params": t.params, "state": {"completed": "Succeeded", "pending": "Running"}.get(
        t.state, "Failed"), "value": t.value} for t in optimizer._trials.values()]


@pytest.mark.parametrize("algorithm", ["tpe", "cmaes"])
def test_a_rebuilt_optimizer_knows_every_trial_and_proposes_alike_each_time(algorithm):
    original = run_async(algorithm, 30, 4, seed=1)
    original.ask(2)  # two still running
    past = records(original)
    rebuilt = [Optimizer(CUBE, algorithm=algorithm, seed=1, trials=past) for _ in range(2)]
    proposals = [[s.params for s in optimizer.ask(3)] for optimizer in rebuilt]
    assert proposals[0] == proposals[1]
    study = rebuilt[0]._strategy._study
    assert len(study.trials) == len(past) + 3
    taken = {rebuilt[0].space.key(r["params"]) for r in past}
    assert not taken & {rebuilt[0].space.key(p) for p in proposals[0]}


def test_a_rebuilt_cmaes_starts_near_the_best_trials():
    original = run_async("cmaes", 40, 4, seed=3)
    best = np.array([original.best[0][f"x{i}"] for i in range(3)])
    rebuilt = Optimizer(CUBE, algorithm="cmaes", seed=3, trials=records(original))
    fresh = Optimizer(CUBE, algorithm="cmaes", seed=3, trials=[{**r, "value": 1.0} for r in records(original)][:1])

    def distance(optimizer: Optimizer) -> float:
        points = [np.array([s.params[f"x{i}"] for i in range(3)]) for s in optimizer.ask(8)]
        return float(np.median([np.linalg.norm(p - best) for p in points]))

    assert distance(rebuilt) < distance(fresh) / 2


@pytest.mark.parametrize(("algorithm", "settings", "path", "phrase"), [
    ("tpe", {"eiCandidates": 0}, "spec.algorithm.settings.eiCandidates", "greater than or equal to 1"),
    ("tpe", {"startupTrials": "many"}, "spec.algorithm.settings.startupTrials", "valid integer"),
    ("tpe", {"gamma": 0.2}, "spec.algorithm.settings", "unknown field 'gamma'"),
    ("cmaes", {"popsize": 1}, "spec.algorithm.settings.popsize", "greater than or equal to 2"),
    ("cmaes", {"separable": True, "withMargin": True}, "spec.algorithm.settings",
     "separable and withMargin cannot be combined"),
    ("cmaes", {"lrAdapt": True, "separable": True}, "spec.algorithm.settings", "lrAdapt cannot be combined"),
])
def test_settings_are_checked_naming_the_field(algorithm, settings, path, phrase):
    with pytest.raises(ManifestError) as caught:
        load_experiment(manifest(algorithm={"name": algorithm, "settings": settings}))
    assert any(p.path == path and phrase in p.message for p in caught.value.problems), caught.value.describe()


def test_cmaes_refuses_a_space_of_categorical_parameters_only():
    document = manifest(algorithm={"name": "cmaes"}, args=[],
                        parameters=[{"name": "k", "type": "categorical", "values": ["a", "b"]}])
    with pytest.raises(ManifestError, match="spec.algorithm.name: cmaes searches double, int and discrete"):
        load_experiment(document)


def test_every_parameter_kind_round_trips_through_optuna():
    parameters = [
        {"name": "lr", "type": "double", "min": 1e-5, "max": 1, "scale": "log"},
        {"name": "n", "type": "int", "min": 1, "max": 1000, "scale": "log"},
        {"name": "wide", "type": "int", "min": -(2**63) + 1, "max": 2**63 - 1},
        {"name": "batch", "type": "discrete", "values": [64, 16, 32]},
        {"name": "flag", "type": "categorical", "values": [True, 1, "1"]},
    ]
    for algorithm in ("tpe", "cmaes"):
        optimizer = Optimizer(parameters, algorithm=algorithm, seed=5)
        for _ in range(6):
            for suggestion in optimizer.ask(4):
                assert optimizer.space.validate(suggestion.params) == suggestion.params
                optimizer.tell(suggestion.id, float(suggestion.params["batch"]))


def test_optuna_says_nothing(caplog, capsys):
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        run_async("tpe", 15, 2, seed=0)
        run_async("cmaes", 15, 2, seed=0, settings={"lrAdapt": True})
    assert [str(w.message) for w in caught] == []
    assert [r for r in caplog.records if r.name.startswith("optuna")] == []
    assert capsys.readouterr().err == ""
