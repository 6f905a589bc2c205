"""The exact asynchronous GP model (``model: exact``, and what ``auto`` uses with few trials in flight).

Each ``propose(n)`` conditions on every pending trial, from this call and earlier ones, by giving it a lie
value (``liar: min | mean | max`` of the observed values, standardized), and then picks the ``n`` points one
after the other, each added as a lie before the next is chosen. The expensive parts are amortized:

- hyperparameters are refit only when new observations arrived: after every one while there are few, and
  once the number of observations has grown by 5 % when there are more than ``refitEvery`` (a refit
  always restarts from the previous fit);
- between refits the posterior is kept: a pending trial that reports only changes a target, a new pending
  trial or lie is one rank-one Cholesky extension (:mod:`.posterior`);
- above ``maxModelTrials`` observations the model holds a subset (the best, the most recent, and a
  space-filling rest, see :func:`.fit.select_rows`); pending trials are always all in, which is why its cost
  and memory grow with the number of trials in flight (:mod:`.scalable` is the model for many).

While trials are pending, the prior mean is pessimistic (``pendingPriorShift`` standard deviations of the
warped observations above their mean, 2 by default): a neutral prior makes the unexplored corners of the
space look as promising as the average observation, and the believer, which removes the appeal of the
neighbourhood of every running trial, then sends the other workers there. With the shift they refine the
regions known to be good, and the batch's own spread does the exploring. The same holds for a batch of more
than one point asked at once. With one worker nothing is pending when a suggestion is made, so sequential
search keeps the neutral prior. The quality benchmark's ablation measures the effect (on the speed-up of 8
workers over 1).

Candidates are a Sobol pool (kept with the posterior) plus Gaussian perturbations of the best points,
snapped to valid assignments; the best few of each batch get an L-BFGS-B polish of the acquisition over
the double and int columns. No candidate that is already taken (completed, pending, failed, or chosen in
this batch) is ever returned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from kubetune.core.engine.base import History
from kubetune.core.engine.gp.acquisition import Acquisition
from kubetune.core.engine.gp.candidates import continuous_columns, local_candidates, unique
from kubetune.core.engine.gp.fit import default_hyperparameters, fit_hyperparameters, select_rows
from kubetune.core.engine.gp.posterior import CandidatePool, Hyperparameters, Posterior
from kubetune.core.engine.gp.settings import GPSettings
from kubetune.core.engine.gp.warp import OutputWarp
from kubetune.core.engine.sobol import SobolSearch
from kubetune.core.space import Params, Space

logger = logging.getLogger("kubetune.gp")

# L-BFGS-B runs per polished suggestion (from the best distinct candidates) and their iterations; each
# iteration costs two triangular solves with the posterior, so large posteriors get a smaller budget.
POLISH_BUDGET = {"small": (3, 25), "large": (1, 10)}
LARGE_POSTERIOR = 300
# The value a pending trial is assumed to report under each constant-liar rule (``liar`` other than believer).
LIES: dict[str, Callable[[np.ndarray], float]] = {
    "min": lambda observed: float(np.min(observed)),
    "mean": lambda observed: float(np.mean(observed)),
    "max": lambda observed: float(np.max(observed)),
}
# A candidate point: its unit-cube encoding, its assignment key and its acquisition score.
Candidate = tuple[np.ndarray, tuple, float]


@dataclass
class _Model:
    posterior: Posterior
    rows: dict[tuple, int]  # assignment key -> row
    observed_rows: int
    pool_points: np.ndarray
    pool_keys: list[tuple]


class _Choices:
    """A candidate pool during one batch: which of its assignments may still be chosen."""

    def __init__(self, pool: CandidatePool, keys: list[tuple], taken: Collection[tuple]):
        self.pool = pool
        self.keys = keys
        self.index = {key: i for i, key in enumerate(keys)}
        self.available = np.array([key not in taken for key in keys], dtype=bool)

    def remove(self, key: tuple) -> None:
        index = self.index.get(key)
        if index is not None:
            self.available[index] = False


class ExactModel:
    """The believer GP over every pending trial; :meth:`propose` raises numpy's and scipy's errors for the
    strategy to fall back on (and then :meth:`reset` it)."""

    def __init__(self, space: Space, settings: GPSettings, sobol: SobolSearch):
        self.space = space
        self.settings = settings
        self.acquisition = Acquisition(settings.acquisition, settings.xi, settings.kappa)
        self._sobol = sobol  # shared with the strategy's space-filling start, whose sequence the pool continues
        self._hp: Hyperparameters | None = None
        self._fit_n = 0
        self._warp = OutputWarp()
        self._model: _Model | None = None
        self._continuous = continuous_columns(space)

    def reset(self) -> None:
        """Drops the posterior (after a failure, or when the other model takes over); the fit is kept."""
        self._model = None

    def propose(self, n: int, history: History, rng: np.random.Generator) -> list[Params]:
        X_obs, losses, X_pending = history.completed_x, history.losses, history.pending_x
        obs_keys, pending_keys = history.completed_keys, history.pending_keys
        refit = self._maybe_refit(X_obs, losses, rng)
        model = self._model
        live = set(obs_keys) | set(pending_keys)
        if refit or model is None or any(key not in live for key in model.rows):
            model = self._model = self._rebuild(X_obs, losses, obs_keys, X_pending, pending_keys, n, rng)
        else:
            self._extend(model, X_obs, obs_keys, X_pending, pending_keys)
        value_of = dict(zip(obs_keys, losses, strict=True))
        observed_keys = [k for k in model.rows if k in value_of]
        parallel = len(pending_keys) > 0 or n > 1  # more than one trial will be running at once
        shift = self.settings.pending_prior_shift if parallel else 0.0
        warped = dict(zip(observed_keys, self._warp(np.array([value_of[k] for k in observed_keys])) - shift,
                          strict=True))
        observed = np.fromiter(warped.values(), dtype=float)
        best = float(np.min(observed))
        if self.settings.liar == "believer":
            lie = None
            believed = np.array([k not in warped for k in model.rows])
            model.posterior.set_targets(np.array([warped.get(k, 0.0) for k in model.rows]), believed)
            if believed.any():  # a trial believed to beat the best raises the bar, as if it had reported
                best = min(best, float(np.min(model.posterior.targets()[believed])))
        else:
            lie = float(LIES[self.settings.liar](observed))
            model.posterior.set_targets(np.array([warped.get(k, lie) for k in model.rows]))
        return self._choose(n, model, history, X_obs, losses, best, lie, rng)

    # -- model upkeep --------------------------------------------------------------------------------------
    def _maybe_refit(self, X: np.ndarray, losses: np.ndarray, rng: np.random.Generator) -> bool:
        n = len(losses)
        grown = n > self._fit_n and (n <= self.settings.refit_every or n >= 1.05 * self._fit_n)
        if self._hp is not None and not grown:
            return False
        rows = select_rows(X, losses, np.arange(n), self.settings.max_fit_trials, rng)
        self._warp = OutputWarp.fit(losses[rows], self.settings.warp)
        y = self._warp(losses[rows])
        restarts = 1 if self._hp is None else 0
        try:
            self._hp = fit_hyperparameters(X[rows], y, self._hp, restarts, int(rng.integers(2**31)))
        except (np.linalg.LinAlgError, ValueError) as exc:
            logger.warning("GP hyperparameter fit failed (%s): keeping the previous hyperparameters", exc)
            if self._hp is None:
                self._hp = default_hyperparameters(X.shape[1])
        self._fit_n = n
        return True

    def _rebuild(self, X_obs: np.ndarray, losses: np.ndarray, obs_keys: list[tuple], X_pending: np.ndarray,
                 pending_keys: list[tuple], n: int, rng: np.random.Generator) -> _Model:
        chosen = select_rows(X_obs, losses, np.arange(len(losses)), self.settings.max_model_trials, rng)
        keys = [obs_keys[i] for i in chosen] + pending_keys
        X = np.vstack([X_obs[chosen], X_pending]) if len(X_pending) else X_obs[chosen]
        hyperparameters = self._fitted()
        noise = np.r_[np.full(len(chosen), hyperparameters.noise), np.full(len(pending_keys), self._fantasy_noise())]
        posterior = Posterior(X, hyperparameters, extra_capacity=n + 64, noise=noise)
        pool_points, pool_keys = unique(self.space, self.space.snap(self._sobol.points(self.settings.candidates, rng)))
        posterior.pool(pool_points)
        return _Model(posterior, {k: i for i, k in enumerate(keys)}, len(chosen), pool_points, pool_keys)

    def _extend(self, model: _Model, X_obs: np.ndarray, obs_keys: list[tuple], X_pending: np.ndarray,
                pending_keys: list[tuple]) -> None:
        for x, key in zip(X_pending, pending_keys, strict=True):
            if key not in model.rows:
                model.rows[key] = model.posterior.n
                model.posterior.append(x, 0.0, noise=self._fantasy_noise())
        for x, key in zip(X_obs, obs_keys, strict=True):
            if key not in model.rows and model.observed_rows < self.settings.max_model_trials:
                model.rows[key] = model.posterior.n
                model.posterior.append(x, 0.0)
                model.observed_rows += 1

    def _fantasy_noise(self) -> float:
        """Noise of a pending trial's row: almost none, so that its point and its close neighbourhood lose
        their appeal until it reports (a pending row keeps it until the next rebuild, even once observed)."""
        return 1e-6 * self._fitted().signal

    def _fitted(self) -> Hyperparameters:
        """The hyperparameters of the last fit (``_maybe_refit`` runs before any model is built)."""
        if self._hp is None:
            raise RuntimeError("the GP model is used before its hyperparameters were fitted")
        return self._hp

    # -- choosing the batch --------------------------------------------------------------------------------
    def _choose(self, n: int, model: _Model, history: History, X_obs: np.ndarray, losses: np.ndarray, best: float,
                lie: float | None, rng: np.random.Generator) -> list[Params]:
        posterior = model.posterior
        local_points, local_keys = unique(self.space, local_candidates(self.space, X_obs, losses, rng))
        local = posterior.pool(local_points)
        taken = history.taken_keys
        pools = [
            _Choices(posterior.pools[0], model.pool_keys, taken),
            _Choices(local, local_keys, taken),
        ]
        chosen: list[Params] = []
        chosen_keys: set[tuple] = set()
        try:
            for i in range(n):
                polishing = i < self.settings.polish and len(self._continuous) > 0
                budget, iterations = POLISH_BUDGET["large" if posterior.n > LARGE_POSTERIOR else "small"]
                starts = self._best_candidates(pools, best, budget if polishing else 1)
                if not starts:
                    break
                pick = starts[0]
                if polishing:
                    polished = [self._polish(*start, posterior, best, taken, chosen_keys, iterations)
                                for start in starts]
                    pick = max([pick, *polished], key=lambda candidate: candidate[2])
                x, key, _ = pick
                chosen.append(self.space.decode(x))
                chosen_keys.add(key)
                for choices in pools:
                    choices.remove(key)
                model.rows[key] = posterior.n
                if lie is None:
                    best = min(best, float(posterior.predict(x[None, :])[0][0]))
                posterior.append(x, lie, noise=self._fantasy_noise())
        finally:
            posterior.pools.remove(local)
        return chosen

    def _best_candidates(self, pools: list[_Choices], best: float, count: int) -> list[Candidate]:
        """The ``count`` available candidates with the highest acquisition, as (point, key, score)."""
        found: list[Candidate] = []
        for choices in pools:
            scores = self.acquisition.value(choices.pool.mean, choices.pool.var, best)
            scores[~choices.available] = -np.inf
            for index in np.argsort(-scores)[:count]:
                if np.isfinite(scores[index]):
                    found.append((choices.pool.points[index], choices.keys[index], float(scores[index])))
        return sorted(found, key=lambda candidate: -candidate[2])[:count]

    def _polish(self, x0: np.ndarray, key0: tuple, score0: float, posterior: Posterior, best: float,
                taken: Collection[tuple], chosen_keys: set[tuple], iterations: int) -> Candidate:
        columns = self._continuous

        def negative(free: np.ndarray) -> tuple[float, np.ndarray]:
            x = x0.copy()
            x[columns] = free
            mean, var, d_mean, d_var = posterior.predict_with_grad(x)
            value, grad = self.acquisition.value_and_grad(mean, var, d_mean, d_var, best)
            return -value, -grad[columns]

        result = minimize(negative, x0[columns], jac=True, method="L-BFGS-B",
                          bounds=[(0.0, 1.0)] * len(columns), options={"maxiter": iterations})
        x = x0.copy()
        x[columns] = np.clip(result.x, 0.0, 1.0)
        x = self.space.snap(x[None, :])[0]
        key = self.space.keys_of_points(x[None, :])[0]
        if key in chosen_keys or key in taken:
            return x0, key0, score0
        mean, var = posterior.predict(x[None, :])
        score = float(self.acquisition.value(mean, var, best)[0])
        return (x, key, score) if score > score0 else (x0, key0, score0)
