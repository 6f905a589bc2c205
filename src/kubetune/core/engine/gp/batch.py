"""One ask's batch in the scalable model: which candidates are looked at, and how each pick changes the rest.

The acquisition of a candidate without the pending points (from the posterior of the completed trials) is an
upper bound of its acquisition with them: pending points only take variance away, and the bar only falls.
So candidates are screened (their nearest pending points found, :mod:`.screening`) in blocks in the order
of that bound, until the best screened candidate beats every bound left, and the far-off candidates of a
large pool are never screened. Each pick is then added as a pending point: the screened candidates near it
lose variance, and a pick believed to beat the best lowers the bar for all of them (the Kriging believer).
Their factors are recomputed lazily, as in lazy greedy selection: a stale acquisition value still bounds the
fresh one from above (give or take the screening's approximation), so only a stale candidate that comes out
on top is refreshed, with the next few stale ones.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import numpy as np

from kubetune.core.engine.gp.acquisition import Acquisition
from kubetune.core.engine.gp.posterior import Posterior
from kubetune.core.engine.gp.screening import PendingScreen

# Candidates screened at once, in the order of their acquisition without the pending points.
SCREEN_BLOCK = 128
# Stale candidates refreshed at once, in the order of their (stale) acquisition.
STALE_BLOCK = 32


class Batch:
    """One ask's candidates and what the batch so far has done to them: the pending points' factors of the
    screened candidates, their acquisition values (``-inf`` for the others and the taken), and the bar."""

    def __init__(self, points: np.ndarray, keys: list[tuple], mean: np.ndarray, model_var: np.ndarray,
                 posterior: Posterior, screen: PendingScreen, acquisition: Acquisition, best: float,
                 taken: Collection[tuple]):
        """``points`` (C, D) with their ``keys``, and the posterior ``mean`` and variance ``model_var`` there
        given the completed trials only; ``best`` is the bar of the acquisition."""
        self.points, self.keys, self.mean, self.model_var = points, keys, mean, model_var
        self.posterior, self.best = posterior, best
        self._screen, self.acquisition, self._taken = screen, acquisition, taken
        self.scores = np.full(len(points), -np.inf)
        self._cursor = 0  # candidates screened so far, in the order of their bound
        self._available = np.ones(len(points), dtype=bool)
        self._chosen: set[tuple] = set()
        self.believed: list[tuple[tuple, float]] = []  # each pick's key and believed value
        self._index: dict[tuple, int] | None = None

    def best_candidate(self, bound: np.ndarray, order: np.ndarray) -> int:
        """The available candidate with the highest acquisition, screening more candidates (in ``order`` of
        their ``bound``) and refreshing stale factors until it is fresh and no unscreened one can beat it."""
        while True:
            pick = int(np.argmax(self.scores))
            if self._cursor < len(order) and self.scores[pick] < bound[order[self._cursor]]:
                block = order[self._cursor : self._cursor + SCREEN_BLOCK]
                self._cursor += len(block)
                self._screen.screen(block)
                self._score(block)
            elif self._screen.stale[pick]:
                stale = np.flatnonzero(self._screen.stale)
                block = stale[np.argsort(-self.scores[stale], kind="stable")[:STALE_BLOCK]]
                self._screen.refresh(block)
                self._score(block)
            else:
                return pick

    def screen_factor(self, index: int) -> float:
        return float(self._screen.factor[index])

    def factor_at(self, point: np.ndarray) -> float:
        return self._screen.factor_at(point)

    def is_free(self, key: tuple) -> bool:
        return key not in self._taken and key not in self._chosen

    def take(self, pick: int, polished: tuple[np.ndarray, tuple] | None = None) -> np.ndarray:
        """Adds the candidate ``pick``, or the point and key polished from it, to the batch; returns the point."""
        if polished is None:
            point, key, believed = self.points[pick], self.keys[pick], float(self.mean[pick])
            self._available[pick] = False
        else:
            point, key = polished
            believed = float(self.posterior.predict(point[None, :])[0][0])
            index = self._index_of().get(key)
            if index is not None:
                self._available[index] = False
        self._chosen.add(key)
        self.believed.append((key, believed))
        self._screen.add(point)  # the candidates near it are stale: refreshed when they are about to be chosen
        if believed < self.best:  # believed to beat the best: every score moves
            self.best = believed
            self._score(np.flatnonzero(self._screen.screened))
        self.scores[~self._available] = -np.inf
        return point

    def _score(self, which: np.ndarray) -> None:
        var = self.model_var[which] * self._screen.factor[which]
        self.scores[which] = np.where(self._available[which],
                                      self.acquisition.value(self.mean[which], var, self.best), -np.inf)

    def _index_of(self) -> dict[tuple, int]:
        if self._index is None:
            self._index = {key: i for i, key in enumerate(self.keys)}
        return self._index


def choose(n: int, batch: Batch, polish: Callable[[Batch, int], tuple[np.ndarray, tuple] | None] | None,
           polished: int) -> list[np.ndarray]:
    """Up to ``n`` points, each the best under the acquisition given the pending trials and the points chosen
    before it (see the module docstring); the first ``polished`` are offered to ``polish`` (a better point
    and its key, or None)."""
    bound = batch.acquisition.value(batch.mean, batch.model_var, batch.best)
    order = np.argsort(-bound, kind="stable")
    chosen: list[np.ndarray] = []
    for i in range(n):
        pick = batch.best_candidate(bound, order)
        if not np.isfinite(batch.scores[pick]):
            break
        chosen.append(batch.take(pick, polish(batch, pick) if polish is not None and i < polished else None))
    return chosen
