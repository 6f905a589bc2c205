"""The optimizer's trials as arrays, kept up to date one trial at a time.

A strategy that models the observations needs the completed trials' points and values and the pending
trials' points as arrays. Rebuilding them from every trial record on each ask costs O(trials so far) in
Python; :class:`TrialTable` instead changes them as trials are asked, told and failed, so that an ask costs
what the strategy does with them.

Every trial has a sequence number, the order in which the optimizer first saw it (asked, or restored from a
record). Completed trials are stored in the order they reported, pending ones in sequence order; a strategy
that needs a canonical order (so that a restored optimizer computes what an uninterrupted one does) sorts
by sequence number.
"""

from __future__ import annotations

import numpy as np


class Rows:
    """Rows of a fixed width in a buffer that doubles when full."""

    def __init__(self, width: int):
        self._data = np.empty((16, width))
        self.n = 0

    @classmethod
    def of(cls, rows: np.ndarray) -> Rows:
        made = cls(rows.shape[1])
        made._data = np.empty((max(16, 2 * len(rows)), rows.shape[1]))
        made._data[: len(rows)] = rows
        made.n = len(rows)
        return made

    def append(self, row: np.ndarray) -> int:
        """Adds a row; returns its index."""
        if self.n == len(self._data):
            grown = np.empty((2 * len(self._data), self._data.shape[1]))
            grown[: self.n] = self._data[: self.n]
            self._data = grown
        self._data[self.n] = row
        self.n += 1
        return self.n - 1

    def keep(self, mask: np.ndarray) -> None:
        """Drops the rows where ``mask`` is False, keeping the order of the others."""
        kept = self._data[: self.n][mask]
        self._data[: len(kept)] = kept
        self.n = len(kept)

    @property
    def view(self) -> np.ndarray:
        return self._data[: self.n]


class TrialTable:
    """Completed trials (point, loss, key, sequence number) and pending trials (point, key, sequence
    number) of one optimizer; losses are oriented for minimization."""

    def __init__(self, width: int):
        self.width = width
        self._completed = Rows(width + 2)  # columns: point, loss, sequence number
        self._completed_keys: list[tuple] = []
        self._pending = Rows(width + 1)  # columns: point, sequence number
        self._pending_keys: list[tuple] = []
        self._pending_ids: list[str] = []
        self._pending_row: dict[str, int] = {}  # trial id -> row, for live pending rows
        self._pending_dead = 0  # rows left behind by trials that ended, dropped at the next read
        self.n_failed = 0
        self.version = 0  # changes whenever the table does
        self._in_order: tuple[int, tuple[np.ndarray, np.ndarray, list[tuple]]] | None = None

    # -- changes ------------------------------------------------------------------------------------------
    def add_pending(self, trial_id: str, sequence: int, x: np.ndarray, key: tuple) -> None:
        """A new pending trial; sequence numbers only grow, which keeps pending rows in sequence order."""
        self._pending_row[trial_id] = self._pending.n
        self._pending.append(np.r_[x, sequence])
        self._pending_keys.append(key)
        self._pending_ids.append(trial_id)
        self.version += 1

    def add_completed(self, sequence: int, x: np.ndarray, key: tuple, loss: float) -> None:
        self._completed.append(np.r_[x, loss, sequence])
        self._completed_keys.append(key)
        self.version += 1

    def complete(self, trial_id: str, loss: float) -> None:
        """A pending trial reported ``loss``."""
        row = self._end_pending(trial_id)
        point = self._pending.view[row]
        self._completed.append(np.r_[point[: self.width], loss, point[self.width]])
        self._completed_keys.append(self._pending_keys[row])

    def fail(self, trial_id: str) -> None:
        self._end_pending(trial_id)
        self.n_failed += 1

    def add_failed(self) -> None:
        self.n_failed += 1
        self.version += 1

    # -- reading ------------------------------------------------------------------------------------------
    @property
    def n_completed(self) -> int:
        return self._completed.n

    @property
    def n_pending(self) -> int:
        return len(self._pending_row)

    @property
    def completed_x(self) -> np.ndarray:
        """``(n_completed, width)``, in the order the trials reported."""
        return self._completed.view[:, : self.width]

    @property
    def losses(self) -> np.ndarray:
        return self._completed.view[:, self.width]

    @property
    def completed_sequence(self) -> np.ndarray:
        return self._completed.view[:, self.width + 1].astype(np.int64)

    @property
    def completed_keys(self) -> list[tuple]:
        """The completed trials' keys, in the order they reported (do not modify)."""
        return self._completed_keys

    def completed_in_order(self) -> tuple[np.ndarray, np.ndarray, list[tuple]]:
        """Points, losses and keys of the completed trials in sequence order (kept until the table
        changes)."""
        if self._in_order is None or self._in_order[0] != self.version:
            sequence = self._completed.view[:, self.width + 1]
            if np.all(sequence[1:] > sequence[:-1]):
                ordered = (self.completed_x.copy(), self.losses.copy(), list(self._completed_keys))
            else:
                order = np.argsort(sequence, kind="stable")
                ordered = (self.completed_x[order], self.losses[order], [self._completed_keys[i] for i in order])
            self._in_order = (self.version, ordered)
        return self._in_order[1]

    @property
    def pending_ids(self) -> list[str]:
        """The pending trials' ids, in sequence order (do not modify)."""
        self._compact()
        return self._pending_ids

    @property
    def pending_x(self) -> np.ndarray:
        """``(n_pending, width)``, in sequence order."""
        self._compact()
        return self._pending.view[:, : self.width]

    @property
    def pending_sequence(self) -> np.ndarray:
        self._compact()
        return self._pending.view[:, self.width].astype(np.int64)

    @property
    def pending_keys(self) -> list[tuple]:
        """The pending trials' keys, in sequence order (do not modify)."""
        self._compact()
        return self._pending_keys

    # -- internals ----------------------------------------------------------------------------------------
    def _end_pending(self, trial_id: str) -> int:
        """Marks a pending trial's row dead (it is dropped at the next read) and returns it."""
        row = self._pending_row.pop(trial_id)
        self._pending_dead += 1
        self.version += 1
        return row

    def _compact(self) -> None:
        if not self._pending_dead:
            return
        alive = np.zeros(self._pending.n, dtype=bool)
        alive[list(self._pending_row.values())] = True
        self._pending.keep(alive)
        self._pending_keys = [key for key, keep in zip(self._pending_keys, alive, strict=True) if keep]
        self._pending_ids = [i for i, keep in zip(self._pending_ids, alive, strict=True) if keep]
        self._pending_row = {trial_id: row for row, trial_id in enumerate(self._pending_ids)}
        self._pending_dead = 0
