"""Random search: independent uniform draws from the unit cube (log scale handled by the encoding)."""

from __future__ import annotations

import numpy as np

from kubetune.core.engine.base import History, StrategySettings
from kubetune.core.space import Params, Space


class RandomSettings(StrategySettings):
    """Random search takes no settings."""


class RandomSearch:
    def __init__(self, space: Space, settings: RandomSettings):
        self.space = space

    def propose(self, n: int, history: History, rng: np.random.Generator) -> list[Params]:
        return self.space.decode_many(rng.random((n, self.space.n_columns)))
