"""The scalable GP model (``model: scalable``, and what ``auto`` uses with many trials in flight).

The exact model holds every pending trial in its posterior, so its cost and memory grow with the number of
trials in flight. This model keeps the believer's behaviour at a cost per ask that grows with the batch, not
with the trials in flight or completed:

- the posterior **mean** comes from completed trials only (the believer's lie leaves the mean where it is):
  at a rebuild, a GP on at most ``scalableModelTrials`` of them (half the best values, a quarter the most
  recent, a quarter spread over the space, :func:`.fit.select_rows`), then the observations that arrive
  are appended (a block extension of the factor, which also updates a Sobol pool of candidates kept with
  it) until half as many again have been, when it is rebuilt;
- pending trials, and the points chosen earlier in the same batch, only take **variance** away near
  themselves: each candidate is conditioned on its ``pendingNeighbours`` nearest pending points
  (:mod:`.screening`), which screen the farther ones, and only the candidates that can still win are
  looked at (:mod:`.batch`);
- hyperparameters are refit on the exact model's schedule (after every new observation while there are at
  most ``refitEvery``, then each time their number has grown by 5 %), on at most ``maxFitTrials`` rows
  chosen as the mean's are, always from the same starting points rather than from the previous fit, and
  each refit rebuilds the mean.

A rebuild is a function of the trials (in the order the optimizer first saw them) and of the generator the
strategy gives it, which it seeds from the seed and the trials: an optimizer rebuilt from its trials'
records suggests what the uninterrupted one does whenever that one rebuilt at the same ask (at every ask
with new observations while there are at most ``refitEvery``).

Candidates are the Sobol pool (``candidates`` points, and more for a batch larger than half of it) and
perturbations of the best points (one centre per 8 suggestions asked, 5 to 64); the first ``polish``
suggestions of each ask get an L-BFGS-B polish of the acquisition.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from kubetune.core.engine.base import History
from kubetune.core.engine.gp.acquisition import Acquisition
from kubetune.core.engine.gp.batch import Batch, choose
from kubetune.core.engine.gp.candidates import LOCAL_CENTRES, continuous_columns, local_candidates, unique
from kubetune.core.engine.gp.fit import default_hyperparameters, fit_hyperparameters, select_rows
from kubetune.core.engine.gp.posterior import CandidatePool, Hyperparameters, Posterior, matern52
from kubetune.core.engine.gp.screening import PendingScreen
from kubetune.core.engine.gp.settings import GPSettings
from kubetune.core.engine.gp.warp import FrozenWarp, OutputWarp
from kubetune.core.engine.sobol import SobolSearch, SobolSettings
from kubetune.core.engine.trials import TrialTable
from kubetune.core.space import Params, Space

logger = logging.getLogger("kubetune.gp")

# Perturbed best points per ask: one centre per this many suggestions asked, at least LOCAL_CENTRES and at
# most MAX_CENTRES.
SUGGESTIONS_PER_CENTRE = 8
MAX_CENTRES = 64
# Observations appended to the mean, as a share of the rows it was rebuilt with, before it is rebuilt.
APPENDED_SHARE = 0.5
# Pending points whose believed mean is computed at once (a block is this many rows by the model's rows).
MEAN_BLOCK = 2048
# The share of the rows given to the best values, in the mean and in a fit (the exact model gives them a third):
# with hundreds of trials in flight most suggestions refine the best region, and a model that is denser there
# (and lengthscales fitted to it) finds the last digits of the optimum sooner (benchmarks/many_workers.py).
BEST_SHARE = 0.5
# The space-filling rows of the mean are the farthest points of a random sample of this many times their number.
SPREAD_SAMPLE = 4
# L-BFGS-B iterations of a polish (one start, from the best candidate).
POLISH_ITERATIONS = 10


@dataclass
class _Mean:
    """The posterior of the completed trials, kept between asks."""

    posterior: Posterior
    warp: FrozenWarp
    targets: list[float]  # warped values of the rows, before the prior shift
    shift: float  # the prior shift the posterior's targets have now
    rebuilt_rows: int
    seen: int  # completed trials (in the table's order) already appended or passed over
    best: float  # smallest warped value of every completed trial, before the shift
    pool: CandidatePool
    pool_keys: list[tuple]
    believed: dict[tuple, float] = field(default_factory=dict)  # a pending trial's key -> its believed value


class ScalableModel:
    """See the module docstring; :meth:`propose` raises numpy's and scipy's errors for the strategy to fall
    back on (and then :meth:`reset` it)."""

    def __init__(self, space: Space, settings: GPSettings):
        self.space = space
        self.settings = settings
        self.acquisition = Acquisition(settings.acquisition, settings.xi, settings.kappa)
        self._hp: Hyperparameters | None = None
        self._fit_n = 0
        self._warp = OutputWarp()
        self._mean: _Mean | None = None
        self._continuous = continuous_columns(space)

    def reset(self) -> None:
        """Drops the posterior (after a failure); the fit is kept."""
        self._mean = None

    @property
    def rows(self) -> int:
        """Rows of the posterior mean now (0 before the first ask)."""
        return 0 if self._mean is None else self._mean.posterior.n

    def propose(self, n: int, history: History, rng: np.random.Generator) -> list[Params]:
        trials = history.trials
        mean = self._upkeep(trials, rng)
        shift = self.settings.pending_prior_shift if trials.n_pending > 0 or n > 1 else 0.0
        if shift != mean.shift:
            mean.posterior.set_targets(np.array(mean.targets) - shift)
            mean.shift = shift
            mean.believed.clear()
        posterior = mean.posterior
        pending = trials.pending_x
        best = min(mean.best - shift, self._believed_best(mean, pending, trials.pending_keys))
        points, keys, mean_at, var_at = self._candidates(n, mean, trials, history.taken_keys, rng)
        if not len(points):
            return []
        screen = PendingScreen(points, posterior.X, pending, posterior.hp, self.settings.pending_neighbours)
        batch = Batch(points, keys, mean_at, var_at, posterior, screen, self.acquisition, best, history.taken_keys)
        chosen = choose(n, batch, self._polish if len(self._continuous) else None, self.settings.polish)
        mean.believed.update(batch.believed)
        return self.space.decode_many(np.array(chosen)) if chosen else []

    @staticmethod
    def _believed_best(mean: _Mean, pending: np.ndarray, keys: list[tuple]) -> float:
        """The lowest value a pending trial is believed to take (``inf`` with none): a trial believed to beat
        the best raises the bar, as if it had reported. A trial's believed value is the posterior mean where it
        was chosen (or first seen), kept until the mean is rebuilt: the mean at every pending trial at every
        ask would cost a kernel row per pending trial, the largest cost of an ask at 10,000 in flight."""
        missing = [i for i, key in enumerate(keys) if key not in mean.believed]
        if missing:
            values = believed_means(mean.posterior, pending[missing])
            mean.believed.update(zip([keys[i] for i in missing], values.tolist(), strict=True))
        return min((mean.believed[key] for key in keys), default=math.inf)

    # -- the posterior mean --------------------------------------------------------------------------------
    def _upkeep(self, trials: TrialTable, rng: np.random.Generator) -> _Mean:
        """Refits and rebuilds when due, else appends the observations that arrived since the last ask."""
        refit = self._refit(trials, rng)
        mean = self._mean
        if refit or mean is None or (mean.posterior.n - mean.rebuilt_rows) + (trials.n_completed - mean.seen) > (
                APPENDED_SHARE * mean.rebuilt_rows):
            self._mean = self._rebuild(trials, rng)
            return self._mean
        new = slice(mean.seen, trials.n_completed)
        values = mean.warp(trials.losses[new])
        mean.posterior.append_many(trials.completed_x[new], values - mean.shift)
        mean.targets.extend(values.tolist())
        mean.seen = trials.n_completed
        if len(values):
            mean.best = min(mean.best, float(np.min(values)))
        return mean

    def _refit(self, trials: TrialTable, rng: np.random.Generator) -> bool:
        n = trials.n_completed
        grown = n > self._fit_n and (n <= self.settings.refit_every or n >= 1.05 * self._fit_n)
        if self._hp is not None and not grown:
            return False
        X, losses = _in_order(trials)
        rows = select_rows(X, losses, np.arange(n), self.settings.max_fit_trials, rng, best_share=BEST_SHARE)
        self._warp = OutputWarp.fit(losses[rows], self.settings.warp)
        restarts = 1 if n <= self.settings.refit_every else 0
        try:
            self._hp = fit_hyperparameters(X[rows], self._warp(losses[rows]), None, restarts,
                                           int(rng.integers(2**31)))
        except (np.linalg.LinAlgError, ValueError) as exc:
            logger.warning("GP hyperparameter fit failed (%s): keeping the previous hyperparameters", exc)
            self._hp = self._hp or default_hyperparameters(X.shape[1])
        self._fit_n = n
        return True

    def _rebuild(self, trials: TrialTable, rng: np.random.Generator) -> _Mean:
        if self._hp is None:
            raise RuntimeError("the GP model is built before its hyperparameters were fitted")
        X, losses = _in_order(trials)
        rows = select_rows(X, losses, np.arange(len(losses)), self.settings.scalable_model_trials, rng,
                           spread_sample=SPREAD_SAMPLE, best_share=BEST_SHARE)
        warp = self._warp.frozen(losses)
        targets = warp(losses[rows])
        posterior = Posterior(X[rows], self._hp, extra_capacity=max(64, int(APPENDED_SHARE * len(rows)) + 1))
        posterior.set_targets(targets)
        sobol = SobolSearch(self.space, SobolSettings()).points(self.settings.candidates, rng)
        pool_points, pool_keys = unique(self.space, self.space.snap(sobol))
        pool = posterior.pool(pool_points)
        return _Mean(posterior, warp, list(targets), 0.0, len(rows), trials.n_completed, float(np.min(warp(losses))),
                     pool, pool_keys)

    # -- candidates ----------------------------------------------------------------------------------------
    def _candidates(self, n: int, mean: _Mean, trials: TrialTable, taken: Collection[tuple],
                    rng: np.random.Generator) -> tuple[np.ndarray, list[tuple], np.ndarray, np.ndarray]:
        """The untaken candidates (C, D), their keys, and the posterior mean and variance there: the kept
        Sobol pool, perturbations of the best points, and fresh Sobol points for a large batch."""
        losses = trials.losses
        centres = min(MAX_CENTRES, max(LOCAL_CENTRES, math.ceil(n / SUGGESTIONS_PER_CENTRE)), len(losses))
        best = np.argpartition(losses, centres - 1)[:centres] if centres < len(losses) else np.arange(len(losses))
        best = best[np.argsort(trials.completed_sequence[best], kind="stable")]  # ties broken as the trials came
        fresh = [local_candidates(self.space, trials.completed_x[best], losses[best], rng, centres)]
        extra = 2 * n - len(mean.pool_keys)
        if extra > 0:
            fresh.append(self.space.snap(SobolSearch(self.space, SobolSettings()).points(extra, rng)))
        fresh_points, fresh_keys = unique(self.space, np.vstack(fresh))
        fresh_mean, fresh_var = mean.posterior.predict(fresh_points)
        pool = mean.pool
        points = np.vstack([pool.points, fresh_points])
        keys = mean.pool_keys + fresh_keys
        mean_at, var_at = np.r_[pool.mean, fresh_mean], np.r_[pool.var, fresh_var]
        free, kept = [], set()
        for index, key in enumerate(keys):
            if key not in taken and key not in kept:
                free.append(index)
                kept.add(key)
        return points[free], [keys[i] for i in free], mean_at[free], var_at[free]

    # -- polish --------------------------------------------------------------------------------------------
    def _polish(self, batch: Batch, start: int) -> tuple[np.ndarray, tuple] | None:
        """L-BFGS-B on the acquisition over the double and int columns from the candidate ``start``, with the
        pending points' factor held at its value there; the polished point and its key if, with its factor
        computed afresh, it scores higher and is not taken."""
        x0, factor, columns = batch.points[start], batch.screen_factor(start), self._continuous
        posterior = batch.posterior

        def negative(free: np.ndarray) -> tuple[float, np.ndarray]:
            x = x0.copy()
            x[columns] = free
            mean, var, d_mean, d_var = posterior.predict_with_grad(x)
            value, grad = self.acquisition.value_and_grad(mean, var * factor, d_mean, d_var * factor, batch.best)
            return -value, -grad[columns]

        result = minimize(negative, x0[columns], jac=True, method="L-BFGS-B", bounds=[(0.0, 1.0)] * len(columns),
                          options={"maxiter": POLISH_ITERATIONS})
        x = x0.copy()
        x[columns] = np.clip(result.x, 0.0, 1.0)
        x = self.space.snap(x[None, :])[0]
        key = self.space.keys_of_points(x[None, :])[0]
        if not batch.is_free(key):
            return None
        mean, var = posterior.predict(x[None, :])
        score = float(self.acquisition.value(mean, var * batch.factor_at(x), batch.best)[0])
        return (x, key) if score > batch.scores[start] else None


def _in_order(trials: TrialTable) -> tuple[np.ndarray, np.ndarray]:
    """The completed trials' points and losses in the order the optimizer first saw them."""
    order = np.argsort(trials.completed_sequence, kind="stable")
    return trials.completed_x[order], trials.losses[order]


def believed_means(posterior: Posterior, points: np.ndarray) -> np.ndarray:
    """The posterior mean at ``points`` (P, D), without the variance (O(P m) rather than O(P m^2))."""
    alpha = posterior.solve_transposed(posterior.z)
    return np.concatenate([matern52(points[start : start + MEAN_BLOCK], posterior.X, posterior.hp) @ alpha
                           for start in range(0, len(points), MEAN_BLOCK)])
