"""How pending trials condition the scalable model: each candidate by the pending trials nearest to it.

Under the Kriging believer a pending trial leaves the posterior mean unchanged and only removes variance
near itself, so what the pending set ``P`` changes at a candidate ``c`` is its variance. With ``O`` the rows
of the model's posterior mean, the scalable model takes

    var(c | O, P)  ~  var(c | O) * var(c | N_O(c), N_P(c)) / var(c | N_O(c))

where ``N_O(c)`` and ``N_P(c)`` are the ``k_O`` nearest rows and the ``k_P`` nearest pending points to ``c`` in
the kernel's scaled distance (each column divided by its lengthscale): the exact variance given the rows,
times the share of it left once the nearest pending points are known as well as the nearest rows are (the
rows in the local set keep a pending point next to an observation from counting as new information). A
pending point beyond the nearest ``k_P`` is screened by nearer ones, as in nearest-neighbour (Vecchia) GPs,
and without pending points the factor is 1. Pending points are noise-free fantasies, as in the exact model,
so a candidate on top of one has no variance left. The local sets are small, so the factors of a block of
candidates are one batch of ``(k_O + k_P + 1)``-square Cholesky factorizations; a new pending point (one
chosen earlier in the same batch) makes stale only the candidates it is nearer to than their farthest
neighbour, whose factors are recomputed when they are needed (:mod:`.batch`).
"""

from __future__ import annotations

import numpy as np

from kubetune.core.engine.gp.posterior import SQRT5, Hyperparameters
from kubetune.core.engine.trials import Rows

# Nearest rows in each local set: at least MIN_ROW_NEIGHBOURS, and ROWS_PER_PENDING per pending neighbour (with
# fewer, the rows in the local set explain too little of the variance and the pending points appear to remove
# more of it than they do).
MIN_ROW_NEIGHBOURS = 16
ROWS_PER_PENDING = 2
# Rows of candidates per block of the distance computations (a block of distances is rows x points floats).
BLOCK = 256
# With this many points or more (and at least two chunks per neighbour sought), the nearest are found in single
# precision through the minima of chunks of CHUNK points.
CHUNKED_FROM = 512
CHUNK = 64
# Relative noise of a pending point's fantasy (as in the exact model) and jitter on the candidate itself.
FANTASY_NOISE = 1e-6
JITTER = 1e-9
# Padding neighbours, for a candidate with fewer pending points than k_P: far from everything and from each
# other, so they correlate with nothing.
FAR = 1e6
# Scaled distance beyond which the kernel is below 1e-5 of the signal: a pending point that far away
# changes no candidate's variance, and does not displace padding.
REACH = 8.0


class PendingScreen:
    """The variance factors of a set of candidates, computed for the candidates a caller asks about (the
    others are never searched for neighbours). A pending point added later updates the neighbours of the
    screened candidates near it and marks them ``stale``: their factor is recomputed by :meth:`refresh`, which
    a caller does only for the candidates it is about to choose from (a stale factor is at least the fresh
    one, give or take the approximation, so it bounds the candidate's acquisition from above)."""

    def __init__(self, candidates: np.ndarray, rows: np.ndarray, pending: np.ndarray, hp: Hyperparameters,
                 pending_neighbours: int):
        """``candidates`` (C, D), ``rows`` (M, D) and ``pending`` (P, D), all in the unit cube."""
        self.hp = hp
        self._scale = 1.0 / hp.lengthscales
        self._candidates = candidates * self._scale
        self._rows = rows * self._scale
        self.k_rows = min(max(MIN_ROW_NEIGHBOURS, ROWS_PER_PENDING * pending_neighbours), len(rows))
        self.k_pending = pending_neighbours
        padding = np.zeros((self.k_pending, candidates.shape[1]))
        padding[:, 0] = FAR * (1 + np.arange(self.k_pending))
        self._points = Rows.of(np.vstack([padding, pending * self._scale]))
        count = len(candidates)
        self.screened = np.zeros(count, dtype=bool)
        self.stale = np.zeros(count, dtype=bool)
        self.factor = np.ones(count)
        self._row_neighbours = np.zeros((count, self.k_rows), dtype=np.int64)
        self._neighbours = np.zeros((count, self.k_pending), dtype=np.int64)
        self._distances = np.full((count, self.k_pending), np.inf)

    def screen(self, which: np.ndarray) -> None:
        """Finds the neighbours of the candidates ``which`` (not screened yet) and computes their factors."""
        self._row_neighbours[which], _ = nearest(self._candidates[which], self._rows, self.k_rows)
        self._neighbours[which], self._distances[which] = self._nearest_points(self._candidates[which])
        self.screened[which] = True
        self.refresh(which)

    def add(self, point: np.ndarray) -> np.ndarray:
        """Adds a pending point (unit cube); returns the screened candidates it made stale."""
        scaled = point * self._scale
        index = self._points.append(scaled)
        screened = np.flatnonzero(self.screened)
        d2 = np.sum((self._candidates[screened] - scaled) ** 2, axis=1)
        farthest = np.argmax(self._distances[screened], axis=1)
        near = (d2 < self._distances[screened, farthest]) & (d2 < REACH**2)
        changed, slot = screened[near], farthest[near]
        self._neighbours[changed, slot] = index
        self._distances[changed, slot] = d2[near]
        self.stale[changed] = True
        return changed

    def factor_at(self, point: np.ndarray) -> float:
        """The factor of one point that is not a candidate (a polished one)."""
        scaled = (point * self._scale)[None, :]
        rows, _ = nearest(scaled, self._rows, self.k_rows)
        neighbours, _ = self._nearest_points(scaled)
        return float(self._factors(self._rows[rows], self._points.view[neighbours], scaled)[0])

    def _nearest_points(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ``k_pending`` nearest points to each (scaled) query, padding standing in for missing ones."""
        neighbours, distances = nearest(queries, self._points.view[self.k_pending :], self.k_pending)
        neighbours += self.k_pending
        missing = np.isinf(distances)
        neighbours[missing] = np.broadcast_to(np.arange(self.k_pending), distances.shape)[missing]
        return neighbours, distances

    def refresh(self, which: np.ndarray) -> None:
        """Computes the factors of the (screened) candidates ``which`` from their neighbours now."""
        self.stale[which] = False
        for start in range(0, len(which), BLOCK):
            block = which[start : start + BLOCK]
            self.factor[block] = self._factors(self._rows[self._row_neighbours[block]],
                                               self._points.view[self._neighbours[block]], self._candidates[block])

    def _factors(self, rows: np.ndarray, points: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """``var(c | N_O, N_P) / var(c | N_O)`` for candidates (b, D) with their row neighbours (b, k_O, D) and
        pending neighbours (b, k_P, D), all scaled: the last row of the Cholesky factor of the local set
        ``[N_O, N_P, c]`` holds both."""
        local = np.concatenate([rows, points, candidates[:, None, :]], axis=1)  # (b, K, D)
        K = local_kernel(local, self.hp)
        signal = self.hp.signal
        noise = np.r_[np.full(self.k_rows, self.hp.noise), np.full(self.k_pending, FANTASY_NOISE * signal),
                      JITTER * signal]
        K += np.diag(noise)[None]
        last = _cholesky(K)[:, -1, :]
        from_rows = signal - np.sum(last[:, : self.k_rows] ** 2, axis=1)
        given_all = last[:, -1] ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = given_all / from_rows
        return np.where(from_rows > 1e-9 * signal, np.clip(factor, 1e-12, 1.0), 1.0)


def local_kernel(points: np.ndarray, hp: Hyperparameters) -> np.ndarray:
    """Matern-5/2 kernel within each of ``b`` sets of already scaled points, (b, K, D) -> (b, K, K)."""
    squared = np.sum(points**2, axis=2)
    r = squared[:, :, None] + squared[:, None, :] - 2.0 * points @ points.transpose(0, 2, 1)
    np.maximum(r, 0.0, out=r)
    np.sqrt(r, out=r)
    return hp.signal * (1.0 + SQRT5 * r + (5.0 / 3.0) * r**2) * np.exp(-SQRT5 * r)


def nearest(queries: np.ndarray, points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (Q, k) of the ``k`` nearest ``points`` to each query, nearest first, and their squared
    distances; where there are fewer than ``k`` points, the missing ones have index -1 and distance ``inf``.
    Many points are searched in single precision (half the memory traffic of the search, which is most of
    its cost); the distances returned are recomputed in double precision."""
    indices = np.full((len(queries), k), -1, dtype=np.int64)
    distances = np.full((len(queries), k), np.inf)
    found = min(k, len(points))
    if not found:
        return indices, distances
    chunked = len(points) >= max(CHUNKED_FROM, 2 * CHUNK * found)  # enough chunks for their minima to bound
    searched: np.ndarray = np.asarray(points, dtype=np.float32 if chunked else np.float64)
    norms = np.sum(searched**2, axis=1)
    for start in range(0, len(queries), BLOCK):
        block: np.ndarray = np.asarray(queries[start : start + BLOCK], dtype=searched.dtype)
        d2 = block @ searched.T
        d2 *= -2.0
        d2 += norms[None, :]
        d2 += np.sum(block**2, axis=1)[:, None]
        if found == len(points):
            picked = np.broadcast_to(np.arange(found), (len(block), found))
        elif not chunked:
            picked = np.argpartition(d2, found - 1, axis=1)[:, :found]
        else:
            picked = _smallest_by_chunks(d2, found)
        d_picked = np.sum((points[picked] - queries[start : start + len(block), None, :]) ** 2, axis=2)
        order = np.argsort(d_picked, axis=1, kind="stable")
        indices[start : start + len(block), :found] = np.take_along_axis(picked, order, axis=1)
        distances[start : start + len(block), :found] = np.take_along_axis(d_picked, order, axis=1)
    return indices, distances


def _smallest_by_chunks(d2: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` smallest entries of each row of ``d2`` (b, P), without a selection over
    whole rows: the k-th smallest of the minima of ``CHUNK`` columns bounds the k-th smallest entry from
    above, so only the entries under that bound (a few per row) are sorted."""
    rows_count, width = d2.shape
    whole = width - width % CHUNK
    minima = d2[:, :whole].reshape(rows_count, -1, CHUNK).min(axis=2)
    if whole < width:
        minima = np.concatenate([minima, d2[:, whole:].min(axis=1, keepdims=True)], axis=1)
    bound = np.partition(minima, k - 1, axis=1)[:, k - 1]
    rows, columns = np.nonzero(d2 <= bound[:, None])
    order = np.lexsort((columns, d2[rows, columns], rows))
    rows, columns = rows[order], columns[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows)
    keep = rank < k
    picked = np.empty((rows_count, k), dtype=np.int64)
    picked[rows[keep], rank[keep]] = columns[keep]
    return picked


def _cholesky(K: np.ndarray) -> np.ndarray:
    """Batched lower Cholesky factors; a batch that rounding made indefinite is retried with more jitter."""
    scale = float(np.mean(np.diagonal(K, axis1=1, axis2=2))) if K.size else 1.0
    for jitter in (0.0, 1e-8, 1e-6, 1e-4):
        try:
            return np.linalg.cholesky(K + jitter * scale * np.eye(K.shape[1])[None])
        except np.linalg.LinAlgError:
            continue
    raise np.linalg.LinAlgError("local kernel matrices are not positive definite even with jitter")
