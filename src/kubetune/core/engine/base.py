"""What every search strategy sees and must provide.

A strategy proposes points; the :class:`~kubetune.core.engine.optimizer.Optimizer` owns the trials, ids,
duplicate filtering and the ask/tell bookkeeping. Strategies see the history through :class:`History`, with
objective values already oriented for minimization, so none of them needs to know the direction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from kubetune.core.engine.trials import TrialTable
from kubetune.core.space import Params, Space


class StrategySettings(BaseModel):
    """Base of every strategy's ``algorithm.settings`` model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class History:
    """The trials so far, as a strategy sees them: a view of the optimizer's :class:`TrialTable`, which
    is kept up to date as trials are asked, told and failed, so building a history costs nothing."""

    space: Space
    trials: TrialTable
    is_taken: Callable[[Params], bool] = lambda _params: False
    taken_keys: frozenset[tuple] | set[tuple] = frozenset()  # keys of every trial so far; do not modify

    @property
    def n_completed(self) -> int:
        return self.trials.n_completed

    @property
    def n_pending(self) -> int:
        return self.trials.n_pending

    @property
    def n_failed(self) -> int:
        return self.trials.n_failed

    # The completed trials in the order they were first seen (asked or restored), encoded in the unit cube,
    # with their keys (see Space.key) and losses; built in O(trials) when the table changed since last read.
    @property
    def completed_x(self) -> np.ndarray:  # (n_completed, n_columns)
        return self.trials.completed_in_order()[0]

    @property
    def losses(self) -> np.ndarray:  # (n_completed,) objective values, smaller is better
        return self.trials.completed_in_order()[1]

    @property
    def completed_keys(self) -> list[tuple]:
        return self.trials.completed_in_order()[2]

    @property
    def pending_x(self) -> np.ndarray:  # (n_pending, n_columns)
        return self.trials.pending_x

    @property
    def pending_keys(self) -> list[tuple]:
        return self.trials.pending_keys


class Strategy(Protocol):
    """Proposes up to ``n`` new assignments; fewer when the space has no more to give."""

    def propose(self, n: int, history: History, rng: np.random.Generator) -> list[Params]: ...
