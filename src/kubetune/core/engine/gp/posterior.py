"""A Gaussian-process posterior that grows one row at a time, for the constant liar.

Notation (all inputs live in the unit cube, targets are standardized):

======== ============ ========================================================
symbol   shape        meaning
======== ============ ========================================================
X        (N, D)       the rows: observed points, then pending points (lies)
y        (N,)         their targets: observed values or the lie value
K        (N, N)       Matern-5/2 ARD kernel matrix plus noise on the diagonal
L        (N, N)       lower Cholesky factor, ``K = L L^T``
z        (N,)         ``L^{-1} y``; the posterior mean at c is ``v(c)^T z``
V        (N, C)       ``L^{-1} K(X, C)`` for a pool of C candidate points
======== ============ ========================================================

Appending a row is a rank-one extension of ``L`` (one triangular solve, O(N^2)) and one new row of every
pool's ``V`` (O(N C)); changing targets (a pending trial reports, the lie moves) only recomputes ``z``
(O(N^2)). The posterior covariance does not depend on ``y``, which is why lies cost no refactorisation and
hyperparameters stay fixed until the next refit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.linalg import cholesky, solve_triangular

SQRT5 = math.sqrt(5.0)
JITTERS = (0.0, 1e-8, 1e-6, 1e-4)


@dataclass(frozen=True)
class Hyperparameters:
    lengthscales: np.ndarray  # (D,)
    signal: float  # signal variance s2
    noise: float  # noise variance

    def key(self) -> tuple:
        return (*np.round(self.lengthscales, 12), self.signal, self.noise)


def matern52(a: np.ndarray, b: np.ndarray, hp: Hyperparameters) -> np.ndarray:
    """``(len(a), len(b))`` kernel matrix, computed in place: with thousands of rows every temporary of
    that shape costs hundreds of megabytes."""
    a_scaled = a / hp.lengthscales
    b_scaled = b / hp.lengthscales
    r = a_scaled @ b_scaled.T
    r *= -2.0
    r += np.sum(a_scaled**2, axis=1)[:, None]
    r += np.sum(b_scaled**2, axis=1)[None, :]
    np.maximum(r, 0.0, out=r)
    np.sqrt(r, out=r)
    out = np.multiply(r, -SQRT5)
    np.exp(out, out=out)
    out *= hp.signal
    r *= 5.0 / 3.0 * r + SQRT5  # r becomes sqrt5 r + 5/3 r^2
    r += 1.0
    out *= r
    return out


def matern52_grad(x: np.ndarray, rows: np.ndarray, hp: Hyperparameters) -> tuple[np.ndarray, np.ndarray]:
    """For one point ``x`` (D,): ``k(x, rows)`` (N,) and its gradient with respect to ``x``, (N, D)."""
    diff = (x[None, :] - rows) / hp.lengthscales**2  # (N, D)
    r = np.sqrt(np.maximum(np.sum(((x[None, :] - rows) / hp.lengthscales) ** 2, axis=1), 0.0))
    decay = np.exp(-SQRT5 * r)
    k = hp.signal * (1.0 + SQRT5 * r + (5.0 / 3.0) * r**2) * decay
    dk_scale = -hp.signal * (5.0 / 3.0) * (1.0 + SQRT5 * r) * decay  # (N,)
    return k, dk_scale[:, None] * diff


class Posterior:
    """The posterior over rows ``X`` with fixed hyperparameters; see the module docstring.

    ``L`` is kept in two blocks, ``[[L0, 0], [B, C]]``: ``L0`` factors the rows given at construction and
    stays a contiguous array (LAPACK copies a strided view on every solve, which costs more than the solve),
    ``B`` and ``C`` hold the appended rows in preallocated buffers.
    """

    def __init__(self, X: np.ndarray, hp: Hyperparameters, extra_capacity: int = 64,
                 noise: np.ndarray | None = None):
        """``noise`` (n,) overrides the noise variance per row: pending trials are modelled as noise-free
        fantasies, so that a point being evaluated is not suggested again next to itself."""
        self.hp = hp
        self.n0, dims = X.shape
        self._X0 = np.array(X, dtype=float)
        row_noise = np.full(self.n0, hp.noise) if noise is None else np.asarray(noise, dtype=float)
        self._L0 = _cholesky(matern52(X, X, hp), row_noise) if self.n0 else np.zeros((0, 0))
        self.m = 0  # appended rows
        self._Xe = np.empty((extra_capacity, dims))
        self._B = np.empty((extra_capacity, self.n0))
        self._C = np.zeros((extra_capacity, extra_capacity))
        self._z = np.zeros(self.n0 + extra_capacity)
        self._alpha: np.ndarray | None = None
        self.pools: list[CandidatePool] = []

    @property
    def n(self) -> int:
        return self.n0 + self.m

    @property
    def X(self) -> np.ndarray:
        return np.vstack([self._X0, self._Xe[: self.m]])

    @property
    def z(self) -> np.ndarray:
        return self._z[: self.n]

    def solve(self, k: np.ndarray) -> np.ndarray:
        """``L^{-1} k`` for ``k`` of shape (n,) or (n, C)."""
        v0 = solve_triangular(self._L0, k[: self.n0], lower=True, check_finite=False) if self.n0 else k[:0]
        if not self.m:
            return v0
        rest = k[self.n0 :] - self._B[: self.m] @ v0
        v1 = solve_triangular(self._C[: self.m, : self.m], rest, lower=True, check_finite=False)
        return np.concatenate([v0, v1])

    def solve_transposed(self, v: np.ndarray) -> np.ndarray:
        """``L^{-T} v`` for ``v`` of shape (n,)."""
        w1 = (
            solve_triangular(self._C[: self.m, : self.m], v[self.n0 :], lower=True, trans="T", check_finite=False)
            if self.m
            else v[self.n0 :]
        )
        rest = v[: self.n0] - self._B[: self.m].T @ w1
        w0 = solve_triangular(self._L0, rest, lower=True, trans="T", check_finite=False) if self.n0 else rest
        return np.concatenate([w0, w1])

    def kernel_to(self, points: np.ndarray) -> np.ndarray:
        """``K(X, points)``, (n, len(points))."""
        return np.vstack([matern52(self._X0, points, self.hp), matern52(self._Xe[: self.m], points, self.hp)])

    def set_targets(self, y: np.ndarray, believed: np.ndarray | None = None) -> None:
        """Sets the targets of every row. Rows marked in ``believed`` (the Kriging believer) take the
        posterior mean given the rows before them as their target, which is exactly ``z = 0`` there: their
        values in ``y`` are ignored, and the other rows are solved on the sub-factor without them."""
        y = np.asarray(y, dtype=float)
        if believed is None or not np.any(believed):
            self._z[: self.n] = self.solve(y)
        else:
            keep = np.flatnonzero(~np.asarray(believed, dtype=bool))
            z = np.zeros(self.n)
            if len(keep):
                sub = self._dense_factor()[np.ix_(keep, keep)]
                z[keep] = solve_triangular(sub, y[keep], lower=True, check_finite=False)
            self._z[: self.n] = z
        self._alpha = None
        for pool in self.pools:
            pool.refresh_mean(self.z)

    def targets(self) -> np.ndarray:
        """Every row's target, ``L z``: for believed rows, the value they are believed to take."""
        return self._dense_factor() @ self.z

    def _dense_factor(self) -> np.ndarray:
        L = np.zeros((self.n, self.n))
        L[: self.n0, : self.n0] = self._L0
        L[self.n0 :, : self.n0] = self._B[: self.m]
        L[self.n0 :, self.n0 :] = self._C[: self.m, : self.m]
        return L

    def append(self, x: np.ndarray, target: float | None, noise: float | None = None) -> None:
        """Adds one row: an observation or a constant lie (``target``), or with ``target=None`` a believed
        row whose target is the current posterior mean there. A rank-one extension of ``L``."""
        if self.m == len(self._Xe):
            self._grow()
        k = self.kernel_to(x[None, :])[:, 0]
        l_row = self.solve(k)
        row_noise = self.hp.noise if noise is None else noise
        d = math.sqrt(max(self.hp.signal + row_noise - l_row @ l_row, 1e-12 * self.hp.signal))
        z_new = 0.0 if target is None else (target - l_row @ self.z) / d
        for pool in self.pools:
            pool.extend(x, l_row, d, z_new)
        i = self.m
        self._B[i] = l_row[: self.n0]
        self._C[i, :i] = l_row[self.n0 :]
        self._C[i, i] = d
        self._Xe[i] = x
        self._z[self.n] = z_new
        self.m += 1
        self._alpha = None

    def append_many(self, X: np.ndarray, targets: np.ndarray) -> None:
        """Adds observed rows ``X`` (b, D) with ``targets`` (b,) at once: the same factor as ``b`` calls of
        :meth:`append`, from one block extension (triangular solves with ``b`` right-hand sides)."""
        b = len(X)
        if not b:
            return
        while self.m + b > len(self._Xe):
            self._grow()
        rows = self.solve(self.kernel_to(X)).T  # (b, n): the new rows of L left of the diagonal block
        block = matern52(X, X, self.hp) - rows @ rows.T
        diagonal = _cholesky(block, self.hp.noise)
        z_new = solve_triangular(diagonal, np.asarray(targets, dtype=float) - rows @ self.z, lower=True,
                                 check_finite=False)
        for pool in self.pools:
            pool.extend_many(X, rows, diagonal, z_new)
        i, j = self.m, self.m + b
        self._B[i:j] = rows[:, : self.n0]
        self._C[i:j, :i] = rows[:, self.n0 :]
        self._C[i:j, i:j] = diagonal
        self._Xe[i:j] = X
        self._z[self.n : self.n + b] = z_new
        self.m += b
        self._alpha = None

    def _grow(self) -> None:
        capacity = 2 * len(self._Xe)
        m = self.m
        Xe = np.empty((capacity, self._Xe.shape[1]))
        B = np.empty((capacity, self.n0))
        C = np.zeros((capacity, capacity))
        Xe[:m], B[:m], C[:m, :m] = self._Xe[:m], self._B[:m], self._C[:m, :m]
        z = np.zeros(self.n0 + capacity)
        z[: self.n] = self.z
        self._Xe, self._B, self._C, self._z = Xe, B, C, z
        for pool in self.pools:
            pool.reserve(self.n0 + capacity)

    def pool(self, points: np.ndarray) -> CandidatePool:
        """Candidate points whose ``V`` is kept up to date as rows are appended."""
        pool = CandidatePool(self, points)
        self.pools.append(pool)
        return pool

    def predict(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and latent variance at ``points`` (C, D); O(N^2 C)."""
        V = self.solve(self.kernel_to(points))
        return V.T @ self.z, np.maximum(self.hp.signal - np.sum(V**2, axis=0), 1e-12 * self.hp.signal)

    def predict_with_grad(self, x: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
        """Mean, variance and their gradients at one point (for the acquisition polish)."""
        k, dk = matern52_grad(x, self.X, self.hp)  # (N,), (N, D)
        if self._alpha is None:
            self._alpha = self.solve_transposed(self.z)  # K^{-1} y
        v = self.solve(k)
        w = self.solve_transposed(v)  # K^{-1} k
        mean = float(k @ self._alpha)
        var = max(self.hp.signal - float(v @ v), 1e-12 * self.hp.signal)
        return mean, var, dk.T @ self._alpha, -2.0 * (dk.T @ w)


class CandidatePool:
    """A fixed set of candidate points with ``V = L^{-1} K(X, C)`` and the variances kept current."""

    def __init__(self, posterior: Posterior, points: np.ndarray):
        self.points = points
        self.hp = posterior.hp
        self._V = np.empty((posterior.n0 + len(posterior._Xe), len(points)))
        self._n = posterior.n
        if posterior.n:
            self._V[: self._n] = posterior.solve(posterior.kernel_to(points))
        self.var = np.maximum(self.hp.signal - np.sum(self.V**2, axis=0), 1e-12 * self.hp.signal)
        self.mean = self.V.T @ posterior.z

    def refresh_mean(self, z: np.ndarray) -> None:
        """After the targets changed: ``mean = V^T z`` (appends keep it current on their own)."""
        self.mean = self.V.T @ z

    @property
    def V(self) -> np.ndarray:
        return self._V[: self._n]

    def extend(self, x: np.ndarray, l_row: np.ndarray, d: float, z_new: float) -> None:
        k = matern52(x[None, :], self.points, self.hp)[0]
        v_new = (k - l_row @ self.V) / d
        self._V[self._n] = v_new
        self._n += 1
        self.var = np.maximum(self.var - v_new**2, 1e-12 * self.hp.signal)
        self.mean = self.mean + v_new * z_new

    def extend_many(self, X: np.ndarray, rows: np.ndarray, diagonal: np.ndarray, z_new: np.ndarray) -> None:
        """:meth:`extend` for a block of rows: ``rows`` (b, n) left of the lower-triangular ``diagonal``."""
        V_new = solve_triangular(diagonal, matern52(X, self.points, self.hp) - rows @ self.V, lower=True,
                                 check_finite=False)
        self._V[self._n : self._n + len(X)] = V_new
        self._n += len(X)
        self.var = np.maximum(self.var - np.sum(V_new**2, axis=0), 1e-12 * self.hp.signal)
        self.mean = self.mean + V_new.T @ z_new

    def reserve(self, rows: int) -> None:
        V = np.empty((rows, len(self.points)))
        V[: self._n] = self.V
        self._V = V


def _cholesky(K: np.ndarray, noise: float | np.ndarray) -> np.ndarray:
    """Cholesky factor of ``K + noise I``, adding jitter when rounding makes it indefinite. ``K`` is
    overwritten."""
    diagonal = np.diag_indices_from(K)
    scale = float(np.mean(K[diagonal])) if len(K) else 1.0
    base = K[diagonal].copy()
    for jitter in JITTERS:
        K[diagonal] = base + noise + jitter * scale
        try:
            return cholesky(K, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            continue
    raise np.linalg.LinAlgError("kernel matrix is not positive definite even with jitter")
