"""The ask/tell contract, run over every algorithm."""

from __future__ import annotations

import pytest

from kubetune import Optimizer, Suggestion
from kubetune.core.engine import ALGORITHMS

MIXED = [
    {"name": "x", "type": "double", "min": -5, "max": 10, "steps": 4},
    {"name": "lr", "type": "double", "min": 1e-4, "max": 1, "scale": "log", "steps": 3},
    {"name": "n", "type": "int", "min": 1, "max": 5},
    {"name": "batch", "type": "discrete", "values": [16, 32, 64]},
    {"name": "kernel", "type": "categorical", "values": ["rbf", "linear"]},
]
FINITE = [
    {"name": "n", "type": "int", "min": 1, "max": 3},
    {"name": "kernel", "type": "categorical", "values": ["rbf", "linear"]},
]


def loss(params):
    return (params["x"] - 2) ** 2 + params["n"] if "x" in params else params["n"]


@pytest.fixture(params=sorted(ALGORITHMS))
def algorithm(request):
    return request.param


def test_public_api_example():
    opt = Optimizer(parameters=[{"name": "x", "type": "double", "min": -5, "max": 10}],
                    direction="minimize", algorithm="random", settings={}, seed=0)
    batch = opt.ask(8)
    assert len(batch) == 8 and all(isinstance(s, Suggestion) and isinstance(s.id, str) for s in batch)
    opt.tell(batch[0].id, 0.37)
    opt.fail(batch[1].id)
    assert set(opt.pending) == {s.id for s in batch[2:]}
    assert opt.best == (batch[0].params, 0.37)


def test_suggestions_are_valid_and_unique(algorithm):
    opt = Optimizer(MIXED, algorithm=algorithm, seed=3)
    seen = set()
    for _ in range(5):
        batch = opt.ask(7)
        assert len(batch) == 7
        for s in batch:
            assert opt.space.validate(s.params) == s.params
            key = opt.space.key(s.params)
            assert key not in seen
            seen.add(key)
        for s in batch[:5]:
            opt.tell(s.id, loss(s.params))


def test_same_seed_same_suggestions(algorithm):
    def run(seed):
        opt = Optimizer(MIXED, algorithm=algorithm, seed=seed)
        out = []
        for _ in range(3):
            batch = opt.ask(4)
            out += [s.params for s in batch]
            for s in batch[:3]:
                opt.tell(s.id, loss(s.params))
        return out

    assert run(11) == run(11)
    if algorithm != "grid":
        assert run(11) != run(12)


def test_finite_space_ends_cleanly_without_duplicates(algorithm):
    opt = Optimizer(FINITE, algorithm=algorithm, seed=0)
    first = opt.ask(4)
    for s in first:
        opt.fail(s.id) if s.params["n"] == 1 else opt.tell(s.id, loss(s.params))
    rest = opt.ask(10)
    assert len(first) + len(rest) == 6
    assert len({opt.space.key(s.params) for s in first + rest}) == 6
    assert opt.exhausted
    assert opt.ask(3) == []


def test_best_follows_direction():
    opt = Optimizer(FINITE, direction="maximize", seed=0)
    batch = opt.ask(3)
    for value, s in zip([0.1, 0.9, 0.5], batch, strict=True):
        opt.tell(s.id, value)
    assert opt.best == (batch[1].params, 0.9)


def test_rebuild_from_past_trials_resumes_without_repeats(algorithm):
    opt = Optimizer(MIXED, algorithm=algorithm, seed=5)
    batch = opt.ask(6)
    past = []
    for i, s in enumerate(batch):
        state = ["Succeeded", "Failed", "Running", "MetricsUnavailable", "Killed", "Succeeded"][i]
        past.append({"id": s.id, "params": s.params, "state": state, "value": float(i)})
    restored = Optimizer(MIXED, algorithm=algorithm, seed=5, trials=past)
    assert restored.pending == [batch[2].id]
    assert restored.best == (batch[0].params, 0.0)
    more = restored.ask(5)
    assert {s.id for s in more}.isdisjoint(s.id for s in batch)
    taken = {restored.space.key(s.params) for s in batch}
    assert all(restored.space.key(s.params) not in taken for s in more)


def test_tell_rejects_bad_calls():
    opt = Optimizer(FINITE, seed=0)
    (s,) = opt.ask(1)
    with pytest.raises(ValueError, match="finite"):
        opt.tell(s.id, float("nan"))
    opt.tell(s.id, 1.0)
    with pytest.raises(ValueError, match="already completed"):
        opt.tell(s.id, 2.0)
    with pytest.raises(KeyError, match="unknown trial"):
        opt.fail("99")


def test_grid_visits_every_point_in_order():
    opt = Optimizer(FINITE, algorithm="grid", seed=0)
    params = [s.params for s in opt.ask(10)]
    assert params == [{"n": n, "kernel": k} for n in (1, 2, 3) for k in ("rbf", "linear")]


def test_random_settings_are_rejected():
    with pytest.raises(Exception, match="steps"):
        Optimizer(FINITE, algorithm="random", settings={"steps": 3})


WIDE = [
    {"name": "n", "type": "int", "min": 0, "max": 10**18},
    {"name": "m", "type": "int", "min": -(2**63) + 1, "max": 2**63 - 1, "steps": 5},
]


def test_a_wide_int_range_is_never_enumerated(algorithm, monkeypatch):
    from kubetune.core.space import Space

    if algorithm != "grid":  # grid search walks the grid one point at a time, by design
        monkeypatch.setattr(Space, "grid", lambda *_: pytest.fail("the space was enumerated"))
    opt = Optimizer(parameters=WIDE, algorithm=algorithm, seed=0)
    assert opt.space.size() == (10**18 + 1) * (2**64 - 1)
    suggested = []
    for _ in range(3):
        batch = opt.ask(4)
        assert len(batch) == 4
        for s in batch:
            assert opt.space.validate(s.params) == s.params
            opt.tell(s.id, float(s.params["n"] % 7))
        suggested += batch
    if algorithm == "grid":  # the last parameter varies fastest
        assert [s.params["n"] for s in suggested] == [i // 5 for i in range(12)]
