"""The GP with many trials in flight: the scalable model, the model setting and the auto switch."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import manifest
from kubetune import Optimizer
from kubetune.core.engine.gp import screening
from kubetune.core.engine.gp import strategy as strategy_module
from kubetune.core.engine.gp.exact import ExactModel
from kubetune.core.engine.gp.posterior import Hyperparameters, Posterior
from kubetune.core.engine.gp.scalable import ScalableModel
from kubetune.core.engine.gp.screening import PendingScreen
from kubetune.core.errors import ManifestError
from kubetune.core.manifest import load_experiment

SPACE = [{"name": "x", "type": "double", "min": -5, "max": 10},
         {"name": "n", "type": "int", "min": 0, "max": 15},
         {"name": "c", "type": "categorical", "values": ["a", "b", "c"]}]
SCALABLE = {"model": "scalable"}


def _objective(p):
    return (p["x"] - 1) ** 2 + (p["n"] - 3) ** 2 + {"a": 0, "b": 1, "c": 2}[p["c"]]


def _square(dims: int) -> list[dict]:
    return [{"name": f"x{i}", "type": "double", "min": 0, "max": 1} for i in range(dims)]


def _bowl(p: dict) -> float:
    return float(sum((v - 0.3) ** 2 for v in p.values()))


# -- the screening approximation --------------------------------------------------------------------------
def test_screened_variance_matches_the_exact_believer_with_enough_neighbours(monkeypatch):
    """With every row and every pending point in the local sets the factor is the exact believer's; with
    fewer neighbours it stays close, and never adds variance."""
    rng = np.random.default_rng(0)
    hp = Hyperparameters(np.array([0.3, 0.5]), 1.2, 1e-4)
    rows, pending = rng.random((40, 2)), rng.random((6, 2))
    candidates = np.vstack([pending + 0.02 * rng.normal(size=(6, 2)), rng.random((30, 2))]).clip(0, 1)
    given_rows = Posterior(rows, hp).predict(candidates)[1]
    both = Posterior(np.vstack([rows, pending]), hp, noise=np.r_[np.full(40, hp.noise), np.full(6, 1e-6 * hp.signal)])
    exact = both.predict(candidates)[1] / given_rows
    with monkeypatch.context() as patched:
        patched.setattr(screening, "MIN_ROW_NEIGHBOURS", 40)
        screen = PendingScreen(candidates, rows, pending, hp, pending_neighbours=6)
    screen.screen(np.arange(len(candidates)))
    np.testing.assert_allclose(screen.factor, exact, rtol=1e-4)
    few = PendingScreen(candidates, rows, pending, hp, pending_neighbours=2)
    few.screen(np.arange(len(candidates)))
    assert np.all(few.factor <= 1.0)
    assert np.median(np.abs(np.log(few.factor) - np.log(exact))) < 0.5


def test_a_pending_point_added_later_changes_the_near_candidates_only():
    rng = np.random.default_rng(1)
    hp = Hyperparameters(np.array([0.05, 0.05]), 1.0, 1e-4)
    rows = rng.random((30, 2))
    candidates = np.array([[0.5, 0.5], [0.52, 0.5], [0.95, 0.05]])
    screen = PendingScreen(candidates, rows, np.zeros((0, 2)), hp, pending_neighbours=4)
    screen.screen(np.arange(3))
    assert np.all(screen.factor == 1.0), "no pending point: the variance is the rows' own"
    changed = screen.add(np.array([0.51, 0.5]))
    assert set(changed) == {0, 1} and set(np.flatnonzero(screen.stale)) == {0, 1}
    screen.refresh(changed)
    assert not screen.stale.any()
    assert screen.factor[0] < 0.2 and screen.factor[1] < 0.2 and screen.factor[2] == 1.0
    assert screen.factor_at(np.array([0.51, 0.5])) < 1e-3, "on top of a pending point nothing is left"


# -- suggestions ------------------------------------------------------------------------------------------
def _warmed(settings: dict, dims: int = 3, told: int = 30, seed: int = 0) -> Optimizer:
    opt = Optimizer(_square(dims), algorithm="gp", seed=seed, settings=settings)
    for s in opt.ask(told):
        opt.tell(s.id, _bowl(s.params))
    return opt


def test_no_duplicate_in_a_batch_of_a_thousand():
    opt = _warmed(SCALABLE)
    batch = opt.ask(1000)
    keys = {opt.space.key(s.params) for s in batch}
    assert len(batch) == 1000 == len(keys)


def test_no_duplicate_in_a_small_discrete_space():
    space = [{"name": "n", "type": "int", "min": 1, "max": 12}, {"name": "c", "type": "categorical",
                                                                   "values": ["a", "b", "c"]}]
    opt = Optimizer(space, algorithm="gp", seed=3, settings=SCALABLE)
    seen = []
    while batch := opt.ask(5):
        seen += [opt.space.key(s.params) for s in batch]
        for s in batch[:3]:
            opt.tell(s.id, s.params["n"] + len(s.params["c"]) * 0.5)
    assert len(seen) == len(set(seen)) == 36


def test_pending_trials_from_earlier_asks_push_suggestions_apart():
    """Asked one at a time with nothing told, each suggestion is conditioned on the ones before it, still
    pending: they spread around the optimum. (With the pending trials' variance left out, all six land
    within 1e-9 of the acquisition's peak.)"""
    opt = Optimizer([{"name": "x", "type": "double", "min": 0, "max": 1}], algorithm="gp", seed=0,
                    settings={"initialTrials": 4, **SCALABLE})
    for s in opt.ask(4):
        opt.tell(s.id, (s.params["x"] - 0.5) ** 2)
    asked = np.sort([opt.ask(1)[0].params["x"] for _ in range(6)])
    assert np.diff(asked).min() > 1e-4 and asked[-1] - asked[0] > 0.02, asked


def test_scalable_beats_random_search_with_many_workers():
    def best(algorithm: str, seed: int) -> float:
        opt = Optimizer(SPACE, algorithm=algorithm, seed=seed, settings=SCALABLE if algorithm == "gp" else None)
        running = opt.ask(40)
        for _ in range(8):
            ended, running = running[:20], running[20:]
            for s in ended:
                opt.tell(s.id, _objective(s.params))
            running += opt.ask(20)
        return opt.best[1]

    assert np.median([best("gp", s) for s in range(3)]) < 0.3 * np.median([best("random", s) for s in range(3)])


# -- a rebuilt optimizer ----------------------------------------------------------------------------------
def _records(opt: Optimizer, values: dict[str, float], failed: set[str]) -> list[dict]:
    records = []
    for trial_id in map(str, range(opt._next_number)):
        state = "Failed" if trial_id in failed else "Succeeded" if trial_id in values else "Running"
        records.append({"id": trial_id, "params": opt.params_of(trial_id), "state": state,
                        "value": values.get(trial_id)})
    return records


def test_an_optimizer_rebuilt_from_its_trials_suggests_what_the_uninterrupted_one_does():
    """The operator pattern: tell the trials that ended, ask for as many; an optimizer rebuilt from the
    records at any pass (after the tells) suggests what the uninterrupted one does with the same seed."""
    settings = SCALABLE
    whole = Optimizer(SPACE, algorithm="gp", seed=4, settings=settings)
    running = whole.ask(12)
    values: dict[str, float] = {}
    failed: set[str] = set()
    for round_ in range(6):
        ended, running = running[:4], running[4:]
        for s in ended:
            if round_ == 2 and s is ended[0]:
                whole.fail(s.id)
                failed.add(s.id)
            else:
                values[s.id] = _objective(s.params)
                whole.tell(s.id, values[s.id])
        rebuilt = Optimizer(SPACE, algorithm="gp", seed=4, settings=settings, trials=_records(whole, values, failed))
        asked = whole.ask(4)
        assert [s.params for s in rebuilt.ask(4)] == [s.params for s in asked], f"round {round_}"
        running += asked


# -- settings and the auto switch ------------------------------------------------------------------------
@pytest.mark.parametrize(("settings", "field"), [
    ({"model": "fast"}, "model"),
    ({"model": "scalable", "liar": "min"}, "model"),
    ({"pendingNeighbours": 0}, "pendingNeighbours"),
    ({"pendingNeighbours": 1000}, "pendingNeighbours"),
    ({"scalableModelTrials": 10}, "scalableModelTrials"),
])
def test_bad_model_settings_are_refused_with_the_field_named(settings, field):
    with pytest.raises(ManifestError) as raised:
        load_experiment(manifest(algorithm={"name": "gp", "settings": settings}))
    problems = [str(p) for p in raised.value.problems]
    assert any(p.startswith(f"spec.algorithm.settings.{field}:") for p in problems), problems
    with pytest.raises(Exception, match=field):
        Optimizer(SPACE, algorithm="gp", settings=settings)


def _models_used(monkeypatch, settings: dict, asks: list[int]) -> list[str]:
    used = []
    for model in (ExactModel, ScalableModel):
        original = model.propose

        def spy(self, n, history, rng, original=original, name=model.__name__):
            used.append(name)
            return original(self, n, history, rng)

        monkeypatch.setattr(model, "propose", spy)
    opt = _warmed(settings, told=20)
    used.clear()
    for n in asks:
        opt.ask(n)
    return used


def test_auto_uses_the_exact_model_with_few_in_flight_and_the_scalable_with_many(monkeypatch):
    threshold = strategy_module.SCALABLE_FROM_IN_FLIGHT
    assert _models_used(monkeypatch, {}, [1, 8, threshold - 10]) == ["ExactModel"] * 3
    # threshold - 1 pending after those asks: one more asked is the threshold
    assert _models_used(monkeypatch, {}, [threshold - 1, 1]) == ["ExactModel", "ScalableModel"]
    assert _models_used(monkeypatch, {}, [threshold]) == ["ScalableModel"]
    assert _models_used(monkeypatch, {"liar": "mean"}, [threshold]) == ["ExactModel"]
    assert _models_used(monkeypatch, {"model": "exact"}, [threshold]) == ["ExactModel"]
    assert _models_used(monkeypatch, {"model": "scalable"}, [1]) == ["ScalableModel"]


def test_the_scalable_models_memory_does_not_grow_with_the_trials_in_flight():
    opt = _warmed({**SCALABLE, "scalableModelTrials": 60}, told=40)
    model = opt._strategy._scalable
    opt.ask(400)
    assert model.rows <= 60, "pending trials are no rows of the posterior"
    for trial_id in opt.pending[:80]:
        opt.tell(trial_id, _bowl(opt.params_of(trial_id)))
        opt.ask(1)
    assert model.rows <= 60 * 1.5, "observations are appended up to half as many again, then it is rebuilt"
    assert opt._strategy._exact._model is None, "the exact posterior is not kept while the scalable model is used"
