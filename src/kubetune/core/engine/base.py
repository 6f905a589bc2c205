"""What every search strategy sees and must provide.

A strategy proposes points; the :class:`~kubetune.core.engine.optimizer.Optimizer` owns the trials, ids,
duplicate filtering and the ask/tell bookkeeping. Strategies see the history through :class:`History`, with
objective values already oriented for minimization, so none of them needs to know the direction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict

from kubetune.core.space import Params, Space


class StrategySettings(BaseModel):
    """Base of every strategy's ``algorithm.settings`` model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class History:
    """The trials so far, as a strategy sees them."""

    space: Space
    completed: list[Params] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # objective values, smaller is better
    pending: list[Params] = field(default_factory=list)
    failed: list[Params] = field(default_factory=list)
    is_taken: Callable[[Params], bool] = lambda _params: False
    # The same trials encoded in the unit cube, and their keys (see Space.key), kept by the optimizer so
    # that strategies need not re-encode thousands of trials on every ask.
    completed_x: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (n_completed, n_columns)
    pending_x: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # (n_pending, n_columns)
    completed_keys: list[tuple] = field(default_factory=list)
    pending_keys: list[tuple] = field(default_factory=list)
    taken_keys: frozenset[tuple] | set[tuple] = frozenset()  # keys of every trial so far; do not modify


class Strategy(Protocol):
    """Proposes up to ``n`` new assignments; fewer when the space has no more to give. A strategy that
    proposes from the space alone (``reads_observations = False``) is given only which points are taken, so
    an ask does not cost a pass over every trial so far."""

    reads_observations: bool

    def propose(self, n: int, history: History, rng: np.random.Generator) -> list[Params]: ...

