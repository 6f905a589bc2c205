"""Grid search: every combination of the per-parameter grids, in order, each exactly once."""

from __future__ import annotations

import itertools

import numpy as np
from pydantic import Field

from kubetune.core.engine.base import History, StrategySettings
from kubetune.core.parameters import MAX_GRID_STEPS
from kubetune.core.space import Params, Space


class GridSettings(StrategySettings):
    steps: int | None = Field(default=None, ge=2, le=MAX_GRID_STEPS,
                              description="Values per double parameter without steps.")


class GridSearch:
    def __init__(self, space: Space, settings: GridSettings):
        self.space = space
        self.size = space.grid_size(settings.steps)
        self._points = space.grid(settings.steps)

    def propose(self, n: int, history: History, rng: np.random.Generator) -> list[Params]:
        # Points already taken (before a restart, say) are skipped; the iterator never goes back.
        fresh = (p for p in self._points if not history.is_taken(p))
        return list(itertools.islice(fresh, n))
