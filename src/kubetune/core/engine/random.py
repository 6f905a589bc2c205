"""Random search: independent uniform draws from the unit cube (log scale handled by the encoding)."""

from __future__ import annotations

from typing import cast

import numpy as np

from kubetune.core.engine.base import History, StrategySettings
from kubetune.core.space import Params, Space


class RandomSettings(StrategySettings):
    """Random search takes no settings."""


class RandomSearch:
    def __init__(self, space: Space, settings: RandomSettings):
        self.space = space
        self._started = False

    def propose(self, n: int, history: History, rng: np.random.Generator) -> list[Params]:
        if not self._started:
            # A resumed run continues the seeded stream where the trials so far left it (one draw per column
            # and trial) instead of replaying their points.
            self._started = True
            cast(np.random.PCG64, rng.bit_generator).advance(len(history.taken_keys) * self.space.n_columns)
        return self.space.decode_many(rng.random((n, self.space.n_columns)))
