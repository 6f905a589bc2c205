"""The ``gp`` strategy (``algorithm: {name: gp}``, the default): Sobol points first, then a GP model.

The first ``initialTrials`` trials (and every ask while fewer than two values are known) are Sobol points.
Then one of two models chooses the points, by ``model``:

- ``exact`` (:mod:`.exact`): the asynchronous Kriging believer over every pending trial, in one posterior
  that grows with the trials in flight;
- ``scalable`` (:mod:`.scalable`): the same believer, with the posterior mean from a bounded set of
  completed trials and each candidate conditioned on the pending trials nearest to it, at a cost per
  suggestion that does not grow with the trials in flight or completed;
- ``auto`` (default): ``exact`` while fewer than :data:`SCALABLE_FROM_IN_FLIGHT` trials are in flight
  (pending ones plus the ones asked for), ``scalable`` from there on. Below it the exact model's cost is
  small and it is what the quality benchmark measured with 1, 8 and 32 workers; above it its cost grows
  with every trial in flight while the scalable model's does not, and in the simulations with hundreds of
  workers the scalable model's regret was no worse (README, "How gp works at scale"). A constant liar
  (``liar`` other than believer) always uses the exact model.

A constant objective, or a model that fails (a fit or factorization that does not converge), logs a
warning and falls back to Sobol points for that ask rather than failing.
"""

from __future__ import annotations

import copy
import logging

import numpy as np

from kubetune.core.engine.base import History
from kubetune.core.engine.gp.exact import ExactModel
from kubetune.core.engine.gp.scalable import ScalableModel
from kubetune.core.engine.gp.settings import GPSettings
from kubetune.core.engine.sobol import SobolSearch, SobolSettings
from kubetune.core.space import Params, Space

__all__ = ["SCALABLE_FROM_IN_FLIGHT", "GPSearch", "GPSettings"]

logger = logging.getLogger("kubetune.gp")

# With model auto: trials in flight (pending plus asked for) from which the scalable model is used.
SCALABLE_FROM_IN_FLIGHT = 512


class GPSearch:
    def __init__(self, space: Space, settings: GPSettings):
        self.space = space
        self.settings = settings
        self.initial_trials = settings.initial_trials or max(2, 2 * len(space.dimensions) + 2)
        self._sobol = SobolSearch(space, SobolSettings())
        self._exact = ExactModel(space, settings, self._sobol)
        self._scalable = ScalableModel(space, settings)
        self._seed: int | None = None

    def propose(self, n: int, history: History, rng: np.random.Generator) -> list[Params]:
        if self._seed is None:
            # Drawn from a copy of the optimizer's generator, which leaves the generator (and with it the exact
            # model's draws) as it was: the same on the first ask of an optimizer and of one rebuilt from its
            # trials.
            self._seed = int(copy.deepcopy(rng).integers(2**63))
        losses = history.trials.losses
        started = history.n_completed + history.n_pending + history.n_failed
        if len(losses) < 2 or started < self.initial_trials:
            return self._sobol.propose(n, history, rng)
        if np.ptp(losses) <= 1e-12 * max(1.0, float(np.max(np.abs(losses)))):
            logger.warning("all %d observed values are equal: suggesting space-filling points", len(losses))
            return self._sobol.propose(n, history, rng)
        model = self.model_for(n, history)
        try:
            if model is self._scalable:
                return self._scalable.propose(n, history, self._generator(n, history))
            return self._exact.propose(n, history, rng)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
            logger.warning("GP suggestion failed (%s): suggesting space-filling points instead", exc)
            model.reset()
            return self._sobol.propose(n, history, rng)

    def model_for(self, n: int, history: History) -> ExactModel | ScalableModel:
        """The model that makes this ask's suggestions (see the module docstring)."""
        model = self.settings.model
        if model == "auto":
            many = history.n_pending + n >= SCALABLE_FROM_IN_FLIGHT and self.settings.liar == "believer"
            model = "scalable" if many else "exact"
        if model == "scalable":
            self._exact.reset()  # its posterior holds every pending trial: not kept while unused
            return self._scalable
        return self._exact

    def _generator(self, n: int, history: History) -> np.random.Generator:
        """The scalable model's randomness for this ask: a function of the seed and of the trials so far,
        not of the asks before, so that an optimizer rebuilt from its trials draws the same."""
        return np.random.default_rng([self._seed or 0, history.n_completed, history.n_pending, history.n_failed, n])
