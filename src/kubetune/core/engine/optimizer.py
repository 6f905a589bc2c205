"""The ask/tell optimizer: the one object every runner and the operator drive.

It owns the trials (ids, assignments, states, values), filters duplicates, and delegates the choice of new
points to a strategy. It is pure: the caller chooses when to ask and tell, and a seeded generator makes the
same sequence of calls give the same suggestions. ``Optimizer(..., trials=past)`` rebuilds it from the
records of an earlier run, which is how a restarted runner or operator resumes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from kubetune.core.engine.base import History
from kubetune.core.engine.registry import DEFAULT_ALGORITHM, build_strategy
from kubetune.core.engine.trials import TrialTable
from kubetune.core.space import Params, Space
from kubetune.core.spec import Parameter

# How the optimizer sees a trial: still out, told a value, or given up on.
Standing = Literal["pending", "completed", "failed"]
# Trial states as runners and the operator record them, mapped to what the optimizer needs to know.
RECORD_STATES: dict[str, Standing] = {
    "queued": "pending",
    "pending": "pending",
    "running": "pending",
    "succeeded": "completed",
    "completed": "completed",
    "failed": "failed",
    "metricsunavailable": "failed",
    "killed": "failed",
}
# Draws of a strategy before a finite space is filled from its enumeration instead.
PROPOSAL_ROUNDS = 8
# Finite spaces up to this size are enumerated to find the assignments not yet tried.
ENUMERATION_LIMIT = 200_000


@dataclass(frozen=True)
class Suggestion:
    id: str
    params: Params


@dataclass
class _Trial:
    id: str
    params: Params
    state: Standing
    value: float | None = None


@dataclass
class Optimizer:
    """``ask(n)`` new suggestions, ``tell(id, value)`` results, ``fail(id)`` trials that gave none."""

    parameters: Sequence[Parameter | dict[str, Any]]
    direction: Literal["minimize", "maximize"] = "minimize"
    algorithm: str = DEFAULT_ALGORITHM
    settings: Mapping[str, Any] | None = None
    seed: int | None = None
    trials: Iterable[Any] = ()
    _trials: dict[str, _Trial] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.direction not in ("minimize", "maximize"):
            raise ValueError(f"direction must be 'minimize' or 'maximize', got {self.direction!r}")
        self.space = Space(self.parameters)
        self._strategy = build_strategy(self.algorithm, self.settings, self.space)
        # A strategy with its own finite set of points (grid) ends when that set is used up.
        strategy_size: int | None = getattr(self._strategy, "size", None)
        self._strategy_is_exhaustive = strategy_size is not None
        self._capacity = self.space.size() if strategy_size is None else strategy_size
        self._rng = np.random.default_rng(self.seed)
        self._taken: set[tuple] = set()
        self._table = TrialTable(self.space.n_columns)
        self._best: _Trial | None = None
        self._next_number = 0
        self._gave_up = False
        for record in self.trials:
            self._restore(record)

    # -- public API ---------------------------------------------------------------------------------------
    def ask(self, n: int = 1) -> list[Suggestion]:
        """Up to ``n`` new suggestions, none repeating a pending, completed or failed trial. Fewer (possibly
        none) only when the space has no unseen assignment left."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        chosen: list[Suggestion] = []
        for _ in range(PROPOSAL_ROUNDS):
            if len(chosen) >= n:
                break
            proposals = self._strategy.propose(n - len(chosen), self._history(), self._rng)
            if not proposals:
                break
            # Each accepted proposal is pending at once, so a further round is conditioned on it.
            chosen.extend(self._add(p) for p in proposals[: n - len(chosen)] if self._claim(p))
        if len(chosen) < n and self._capacity <= ENUMERATION_LIMIT and not self._strategy_is_exhaustive:
            chosen.extend(self._add(p) for p in self._fill_from_enumeration(n - len(chosen)))
        if len(chosen) < n:
            self._gave_up = True
        return chosen

    def tell(self, trial_id: str, value: float) -> None:
        """Records the objective value of a finished trial."""
        trial = self._pending_trial(trial_id)
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"value of trial {trial_id!r} must be finite, got {value}; call fail() instead")
        trial.state, trial.value = "completed", value
        self._table.complete(trial.id, self._loss(value))
        self._note_best(trial)

    def fail(self, trial_id: str) -> None:
        """Marks a trial that produced no usable value; its point is never suggested again."""
        trial = self._pending_trial(trial_id)
        trial.state = "failed"
        self._table.fail(trial.id)

    @property
    def pending(self) -> list[str]:
        return list(self._table.pending_ids)

    def is_pending(self, trial_id: str) -> bool:
        trial = self._trials.get(str(trial_id))
        return trial is not None and trial.state == "pending"

    @property
    def best(self) -> tuple[Params, float] | None:
        if self._best is None or self._best.value is None:
            return None
        return dict(self._best.params), self._best.value

    def params_of(self, trial_id: str) -> Params:
        return dict(self._trial(trial_id).params)

    @property
    def exhausted(self) -> bool:
        """True when the space has nothing new to give: every assignment of a finite space has been tried or
        is running, or an ask found fewer new assignments than it was asked for."""
        return self._gave_up or len(self._taken) >= self._capacity

    # -- internals ----------------------------------------------------------------------------------------
    def _loss(self, value: float) -> float:
        return value if self.direction == "minimize" else -value

    def _history(self) -> History:
        return History(self.space, self._table, is_taken=self._is_taken, taken_keys=self._taken)

    def _note_best(self, trial: _Trial) -> None:
        """Keeps the best completed trial (the first of equal values) as values arrive."""
        if trial.value is None:
            return
        if self._best is None or self._best.value is None or self._loss(trial.value) < self._loss(self._best.value):
            self._best = trial

    def _is_taken(self, params: Params) -> bool:
        return self.space.key(params) in self._taken

    def _claim(self, params: Params) -> bool:
        """Marks an assignment as taken; False when it already was."""
        key = self.space.key(params)
        if key in self._taken:
            return False
        self._taken.add(key)
        return True

    def _fill_from_enumeration(self, n: int) -> list[Params]:
        remaining = [p for p in self.space.grid() if not self._is_taken(p)]
        picks = self._rng.permutation(len(remaining))[:n]
        chosen = [remaining[i] for i in sorted(picks)]
        for params in chosen:
            self._claim(params)
        return chosen

    def _add(self, params: Params) -> Suggestion:
        trial_id = str(self._next_number)
        self._next_number += 1
        self._trials[trial_id] = _Trial(trial_id, params, "pending")
        self._table.add_pending(trial_id, len(self._trials), self.space.encode(params), self.space.key(params))
        return Suggestion(trial_id, dict(params))

    def _trial(self, trial_id: str) -> _Trial:
        try:
            return self._trials[str(trial_id)]
        except KeyError:
            raise KeyError(f"unknown trial id {trial_id!r}") from None

    def _pending_trial(self, trial_id: str) -> _Trial:
        trial = self._trial(trial_id)
        if trial.state != "pending":
            raise ValueError(f"trial {trial_id!r} is already {trial.state}")
        return trial

    def _restore(self, record: Any) -> None:
        get: Callable[..., Any] = record.get if isinstance(record, Mapping) else lambda k, d=None: getattr(record, k, d)
        trial_id = str(get("id"))
        state = RECORD_STATES.get(str(get("state", "")).lower())
        if state is None:
            raise ValueError(f"trial {trial_id!r} has unknown state {get('state')!r}")
        params = self.space.validate(dict(get("params")))
        value = get("value")
        if state == "completed" and (value is None or not math.isfinite(float(value))):
            state, value = "failed", None
        if trial_id in self._trials:
            raise ValueError(f"trial id {trial_id!r} appears twice")
        trial = self._trials[trial_id] = _Trial(trial_id, params, state, None if value is None else float(value))
        key = self.space.key(params)
        self._taken.add(key)
        sequence = len(self._trials)
        if state == "pending":
            self._table.add_pending(trial_id, sequence, self.space.encode(params), key)
        elif state == "completed" and trial.value is not None:
            self._table.add_completed(sequence, self.space.encode(params), key, self._loss(trial.value))
            self._note_best(trial)
        else:
            self._table.add_failed()
        if trial_id.isdigit():
            self._next_number = max(self._next_number, int(trial_id) + 1)
