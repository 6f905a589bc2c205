"""The GP engine: incremental posterior against a from-scratch one, gradients, acquisition, fallbacks."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy import stats
from scipy.optimize import approx_fprime
from scipy.special import ndtr

from kubetune import Optimizer
from kubetune.core.engine.gp import exact as exact_module
from kubetune.core.engine.gp import fit as fit_module
from kubetune.core.engine.gp.acquisition import Acquisition, log_h
from kubetune.core.engine.gp.fit import (
    fit_hyperparameters,
    negative_log_likelihood,
    select_rows,
    squared_differences,
)
from kubetune.core.engine.gp.posterior import Hyperparameters, Posterior, matern52
from kubetune.core.engine.gp.warp import OutputWarp

HP = Hyperparameters(np.array([0.3, 0.7, 0.5]), 1.3, 1e-3)


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, 3))
    return X, np.sin(6 * X[:, 0]) + X[:, 1] ** 2 - X[:, 2]


def test_appended_rows_give_the_same_posterior_as_a_fresh_factorisation():
    X, y = _data(60)
    grown = Posterior(X[:20], HP, extra_capacity=4)  # forces the buffers to grow twice
    grown.set_targets(y[:20])
    pool_points = np.random.default_rng(1).random((50, 3))
    pool = grown.pool(pool_points)
    for x, target in zip(X[20:], y[20:], strict=True):
        grown.append(x, target)
    fresh = Posterior(X, HP)
    fresh.set_targets(y)
    test_points = np.random.default_rng(2).random((40, 3))
    for a, b in zip(grown.predict(test_points), fresh.predict(test_points), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-8)
    mean, var = fresh.predict(pool_points)
    np.testing.assert_allclose(pool.mean, mean, atol=1e-8)
    np.testing.assert_allclose(pool.var, var, atol=1e-8)
    # and the posterior is the textbook one
    K = matern52(X, X, HP) + HP.noise * np.eye(len(X))
    k = matern52(X, test_points, HP)
    np.testing.assert_allclose(grown.predict(test_points)[0], k.T @ np.linalg.solve(K, y), atol=1e-8)


def test_changing_targets_needs_no_refactorisation():
    X, y = _data(30)
    posterior = Posterior(X[:10], HP)
    for x in X[10:]:
        posterior.append(x, 0.0)  # lies
    posterior.set_targets(y)  # the pending trials report
    fresh = Posterior(X, HP)
    fresh.set_targets(y)
    np.testing.assert_allclose(posterior.predict(X[:5])[0], fresh.predict(X[:5])[0], atol=1e-8)


def test_mean_and_variance_gradients():
    X, y = _data(25)
    posterior = Posterior(X[:15], HP)
    for x in X[15:]:
        posterior.append(x, 0.0)
    posterior.set_targets(y)
    x0 = np.array([0.4, 0.2, 0.9])
    _, _, d_mean, d_var = posterior.predict_with_grad(x0)
    num_mean = approx_fprime(x0, lambda x: posterior.predict(x[None])[0][0], 1e-7)
    num_var = approx_fprime(x0, lambda x: posterior.predict(x[None])[1][0], 1e-7)
    np.testing.assert_allclose(d_mean, num_mean, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(d_var, num_var, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kind", ["ei", "pi", "ucb"])
def test_acquisition_gradient(kind):
    acquisition = Acquisition(kind, xi=0.01, kappa=1.5)
    d_mean, d_var = np.array([0.3, -1.2]), np.array([0.05, 0.2])

    def value(t):
        mean, var = 0.2 + d_mean @ t, 0.4 + d_var @ t
        return acquisition.value(np.array([mean]), np.array([var]), best=-0.1)[0]

    _, grad = acquisition.value_and_grad(0.2, 0.4, d_mean, d_var, best=-0.1)
    np.testing.assert_allclose(grad, approx_fprime(np.zeros(2), value, 1e-7), rtol=1e-4)


def test_log_ei_is_stable_where_improvement_is_unlikely():
    z = np.array([-40.0, -10.0, -3.0, -1.0, 0.0, 2.0])
    with np.errstate(divide="ignore"):  # the direct form underflows to log(0) in the tail
        direct = np.log(np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi) + z * ndtr(z))
    values = log_h(z)
    assert np.all(np.isfinite(values)) and np.all(np.diff(values) > 0)
    np.testing.assert_allclose(values[2:], direct[2:], rtol=1e-8)
    # h(z) ~ phi(z) / z^2 far in the tail
    np.testing.assert_allclose(values[0], -0.5 * 40.0**2 - 0.5 * np.log(2 * np.pi) - 2 * np.log(40.0), rtol=1e-3)


def test_likelihood_gradient_and_fit():
    X, y = _data(40)
    y = (y - y.mean()) / y.std()
    S = squared_differences(X)
    theta = np.log([0.3, 0.5, 2.0, 1.2, 0.01])
    _, grad = negative_log_likelihood(theta, S, y)
    np.testing.assert_allclose(grad, approx_fprime(theta, lambda t: negative_log_likelihood(t, S, y)[0], 1e-6),
                               rtol=1e-4, atol=1e-4)
    hp = fit_hyperparameters(X, y, None, restarts=2, seed=0)
    fitted = negative_log_likelihood(np.log(np.r_[hp.lengthscales, hp.signal, hp.noise]), S, y)[0]
    assert fitted < negative_log_likelihood(theta, S, y)[0]
    assert hp.lengthscales[0] < hp.lengthscales[2], "the wiggly first column gets the shorter lengthscale"


def test_select_rows_keeps_best_recent_and_spread():
    rng = np.random.default_rng(0)
    X, y = rng.random((1000, 2)), rng.random(1000)
    rows = select_rows(X, y, np.arange(1000), 90, rng)
    assert len(rows) == 90 == len(set(rows))
    assert set(np.argsort(y)[:30]) <= set(rows)
    assert set(range(970, 1000)) <= set(rows)
    np.testing.assert_array_equal(select_rows(X[:50], y[:50], np.arange(50), 90, rng), np.arange(50))


SPACE = [{"name": "x", "type": "double", "min": -5, "max": 10},
         {"name": "n", "type": "int", "min": 0, "max": 15},
         {"name": "c", "type": "categorical", "values": ["a", "b", "c"]}]


def _objective(p):
    return (p["x"] - 1) ** 2 + (p["n"] - 3) ** 2 + {"a": 0, "b": 1, "c": 2}[p["c"]]


def test_gp_beats_random_search_on_a_simple_problem():
    def best(algorithm, seed):
        opt = Optimizer(SPACE, algorithm=algorithm, seed=seed)
        for _ in range(10):
            batch = opt.ask(4)
            for s in batch:
                opt.tell(s.id, _objective(s.params))
        return opt.best[1]

    gp = [best("gp", s) for s in range(3)]
    rand = [best("random", s) for s in range(3)]
    assert np.median(gp) < 0.5 * np.median(rand)


def test_pending_trials_from_earlier_asks_push_suggestions_apart():
    opt = Optimizer([{"name": "x", "type": "double", "min": 0, "max": 1}], algorithm="gp", seed=0,
                    settings={"initialTrials": 4})
    for s in opt.ask(4):
        opt.tell(s.id, (s.params["x"] - 0.5) ** 2)
    asked = [opt.ask(1)[0].params["x"] for _ in range(6)]  # nothing told in between
    gaps = np.diff(np.sort(asked))
    assert gaps.min() > 1e-3, asked


def _pending_distances_from_optimum(settings: dict, batch: bool) -> list[float]:
    space = [{"name": "x", "type": "double", "min": 0, "max": 1}, {"name": "y", "type": "double", "min": 0, "max": 1}]
    opt = Optimizer(space, algorithm="gp", seed=1, settings=settings)
    for _ in range(12):
        s = opt.ask(1)[0]
        opt.tell(s.id, (s.params["x"] - 0.2) ** 2 + (s.params["y"] - 0.2) ** 2)
    # seven workers busy, nothing told in between: seven asks of one, or one batch of seven
    asked = [s.params for s in opt.ask(7)] if batch else [opt.ask(1)[0].params for _ in range(7)]
    return [float(np.hypot(p["x"] - 0.2, p["y"] - 0.2)) for p in asked]


@pytest.mark.parametrize("batch", [False, True], ids=["one at a time", "one batch"])
def test_with_trials_pending_the_other_workers_stay_where_the_good_values_are(batch):
    """The pessimistic prior mean while trials are pending: with a neutral prior, the believer sends some of
    the seven to the far corner, where nothing is known; with the default shift fewer go there, and none when
    they are asked one at a time (each is polished; in a batch only the first is)."""
    far = sum(d > 0.5 for d in _pending_distances_from_optimum({}, batch))
    far_with_neutral_prior = sum(d > 0.5 for d in _pending_distances_from_optimum({"pendingPriorShift": 0}, batch))
    assert far < far_with_neutral_prior
    if not batch:
        assert far == 0


def test_discrete_space_is_used_up_without_duplicates():
    space = [{"name": "n", "type": "int", "min": 1, "max": 10},
             {"name": "c", "type": "categorical", "values": ["a", "b", "c"]}]
    opt = Optimizer(space, algorithm="gp", seed=3)
    seen = []
    while True:
        batch = opt.ask(4)
        if not batch:
            break
        seen += [opt.space.key(s.params) for s in batch]
        for s in batch:
            opt.tell(s.id, s.params["n"] + len(s.params["c"]) * 0.5)
    assert len(seen) == len(set(seen)) == 30
    assert opt.exhausted


def test_same_seed_same_suggestions_with_interleaved_tells():
    def run():
        opt = Optimizer(SPACE, algorithm="gp", seed=9)
        out = []
        pending = []
        for _ in range(12):
            pending += opt.ask(2)
            done = pending.pop(0)
            opt.tell(done.id, _objective(done.params))
            out.append([s.params for s in pending])
        return out

    assert run() == run()


def test_constant_objective_falls_back_to_space_filling(caplog):
    opt = Optimizer(SPACE, algorithm="gp", seed=0)
    with caplog.at_level(logging.WARNING, logger="kubetune.gp"):
        for _ in range(6):
            for s in opt.ask(3):
                opt.tell(s.id, 1.0)
    assert "all" in caplog.text and "equal" in caplog.text
    assert len(opt.ask(5)) == 5


def test_near_constant_and_tiny_scale_objectives_work():
    opt = Optimizer(SPACE, algorithm="gp", seed=0)
    rng = np.random.default_rng(0)
    for _ in range(6):
        for s in opt.ask(3):
            opt.tell(s.id, 1e-9 * _objective(s.params) + 1e-15 * rng.random())
    assert len(opt.ask(4)) == 4


def test_failed_fit_keeps_going(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise ValueError("no start converged")

    monkeypatch.setattr(exact_module, "fit_hyperparameters", broken)
    opt = Optimizer(SPACE, algorithm="gp", seed=0)
    with caplog.at_level(logging.WARNING, logger="kubetune.gp"):
        for _ in range(5):
            for s in opt.ask(3):
                opt.tell(s.id, _objective(s.params))
    assert "fit failed" in caplog.text
    assert len(opt.ask(3)) == 3


def test_failed_factorisation_falls_back(monkeypatch, caplog):
    opt = Optimizer(SPACE, algorithm="gp", seed=0)
    for _ in range(5):
        for s in opt.ask(3):
            opt.tell(s.id, _objective(s.params))

    def broken(*args, **kwargs):
        raise np.linalg.LinAlgError("not positive definite")

    monkeypatch.setattr(exact_module, "Posterior", broken)
    monkeypatch.setattr(exact_module.ExactModel, "_maybe_refit", lambda self, *a: True)
    with caplog.at_level(logging.WARNING, logger="kubetune.gp"):
        batch = opt.ask(3)
    assert len(batch) == 3 and "space-filling" in caplog.text


def test_failed_trials_are_never_suggested_again():
    space = [{"name": "n", "type": "int", "min": 1, "max": 6}]
    opt = Optimizer(space, algorithm="gp", seed=1, settings={"initialTrials": 2})
    failed = set()
    told = []
    while batch := opt.ask(1):
        (s,) = batch
        if s.params["n"] % 2:
            opt.fail(s.id)
            failed.add(s.params["n"])
        else:
            opt.tell(s.id, float(s.params["n"]))
            told.append(s.params["n"])
    assert sorted(failed) == [1, 3, 5] and sorted(told) == [2, 4, 6]


def test_hyperparameters_are_refit_at_a_bounded_rate(monkeypatch):
    calls = []
    original = fit_module.fit_hyperparameters

    def counting(*args, **kwargs):
        calls.append(len(args[1]))
        return original(*args, **kwargs)

    monkeypatch.setattr(exact_module, "fit_hyperparameters", counting)
    opt = Optimizer(SPACE, algorithm="gp", seed=0, settings={"refitEvery": 20, "polish": 0})
    for _ in range(120):
        (s,) = opt.ask(1)
        opt.tell(s.id, _objective(s.params))
    late = [n for n in calls if n > 20]
    assert len(late) < 40, "above refitEvery a refit waits for 5% more observations"
    assert len(calls) >= 15


def test_unknown_gp_setting_is_rejected():
    with pytest.raises(Exception, match="unknown|Extra"):
        Optimizer(SPACE, algorithm="gp", settings={"acqusition": "ei"})


def test_believed_rows_take_the_posterior_mean_before_them():
    X, y = _data(30)
    observed, pending = X[:20], X[20:25]
    # Reference: add each pending row with the posterior mean given everything before it as its target.
    reference = Posterior(observed, HP)
    reference.set_targets(y[:20])
    for x in pending:
        reference.append(x, float(reference.predict(x[None])[0][0]))
    # Believer rows in a fresh factorisation, targets ignored.
    rows = np.vstack([observed, pending])
    believed = np.r_[np.zeros(20, bool), np.ones(5, bool)]
    posterior = Posterior(rows, HP)
    posterior.set_targets(np.r_[y[:20], np.full(5, 123.0)], believed)
    test_points = np.random.default_rng(3).random((20, 3))
    for a, b in zip(posterior.predict(test_points), reference.predict(test_points), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-8)
    # and appending a believed row leaves the mean where it was, everywhere, while the variance drops
    before_mean, before_var = posterior.predict(test_points)
    posterior.append(np.array([0.5, 0.5, 0.5]), None)
    after_mean, after_var = posterior.predict(test_points)
    np.testing.assert_allclose(after_mean, before_mean, atol=1e-10)
    assert np.all(after_var <= before_var + 1e-12) and np.any(after_var < before_var - 1e-6)


def test_output_warp_keeps_order_gaussianizes_and_survives_degenerate_values():
    losses = np.random.default_rng(3).lognormal(sigma=2.0, size=60)
    fitted = OutputWarp.fit(losses)
    warped = fitted(losses)
    assert fitted.exponent is not None
    assert np.array_equal(np.argsort(warped), np.argsort(losses))
    assert abs(np.mean(warped)) < 1e-9 and abs(np.std(warped) - 1) < 1e-9
    assert abs(stats.skew(warped)) < abs(stats.skew(losses)) / 4
    # applied to more values than it was fitted on (pending trials reported since the fit)
    assert np.all(np.isfinite(fitted(np.r_[losses, 1e6])))
    assert OutputWarp.fit(losses, enabled=False).exponent is None
    assert np.all(OutputWarp.fit(np.ones(5))(np.ones(5)) == 0)


def test_appending_a_block_of_rows_gives_the_same_posterior_as_one_at_a_time():
    X, y = _data(50)
    block = Posterior(X[:15], HP, extra_capacity=4)
    block.set_targets(y[:15])
    pool = block.pool(np.random.default_rng(4).random((30, 3)))
    block.append_many(X[15:40], y[15:40])
    block.append_many(X[40:], y[40:])
    fresh = Posterior(X, HP)
    fresh.set_targets(y)
    test_points = np.random.default_rng(5).random((20, 3))
    for a, b in zip(block.predict(test_points), fresh.predict(test_points), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-8)
    mean, var = fresh.predict(pool.points)
    np.testing.assert_allclose(pool.mean, mean, atol=1e-8)
    np.testing.assert_allclose(pool.var, var, atol=1e-8)


def test_a_frozen_warp_maps_later_values_as_among_its_reference():
    reference = np.random.default_rng(6).lognormal(sigma=1.5, size=80)
    warp = OutputWarp.fit(reference)
    frozen = warp.frozen(reference)
    np.testing.assert_allclose(frozen(reference), warp(reference), atol=1e-12)
    later = np.array([reference.min() / 2, np.median(reference), 1e9])
    mapped = frozen(later)
    assert np.all(np.isfinite(mapped)) and np.all(np.diff(mapped) > 0)
    np.testing.assert_allclose(frozen(later[1:2]), mapped[1:2])  # one at a time as in a block
