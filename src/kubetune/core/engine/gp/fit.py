"""Fitting the GP hyperparameters by maximizing the log marginal likelihood.

The model is ``signal * Matern52(one lengthscale per column) + noise``, on standardized targets; the
parameters are optimized in log space (maximum a posteriori, with weak log-normal priors that matter only
while there are few observations) by L-BFGS-B with analytic gradients, from the previous fit (warm
start) and, on the first fit, a few random starts as well. The likelihood and its gradient are written out
here rather than taken from scikit-learn's ``GaussianProcessRegressor``: for the few hundred rows a fit uses,
scikit-learn spends most of its time on generic kernel machinery (a gradient tensor per kernel term,
parameter bookkeeping), and this direct form is several times faster, which is what keeps a refit inside
the time of one suggestion. The fit runs on at most ``max_fit_trials`` rows, chosen by :func:`select_rows`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import cho_solve, cholesky
from scipy.optimize import minimize

from kubetune.core.engine.gp.posterior import SQRT5, Hyperparameters

LENGTHSCALE_BOUNDS = (1e-2, 2e1)
SIGNAL_BOUNDS = (5e-2, 2e1)
NOISE_BOUNDS = (1e-6, 5e-1)
FIT_ITERATIONS = 60
# Weak log-normal priors (mean, sd of the log) that keep a fit on few points from extreme values: the
# maximum a posteriori fit is the likelihood fit once there are enough observations.
PRIOR_LOG_LENGTHSCALE = (0.0, 1.5)
PRIOR_LOG_SIGNAL = (0.0, 1.5)
PRIOR_LOG_NOISE = (math.log(1e-3), 2.0)


def default_hyperparameters(dims: int) -> Hyperparameters:
    return Hyperparameters(np.full(dims, 0.5), 1.0, 1e-4)


def squared_differences(X: np.ndarray) -> np.ndarray:
    """``(D, n * n)``: ``(x_id - x_jd)^2`` for every pair, computed once per fit."""
    return ((X[:, None, :] - X[None, :, :]) ** 2).reshape(-1, X.shape[1]).T.copy()


def negative_log_likelihood(theta: np.ndarray, S: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """``theta = [log lengthscales (D), log signal, log noise]``, ``S`` from :func:`squared_differences`;
    returns ``-log p(y | X, theta)`` and its gradient with respect to ``theta``."""
    n, dims = len(y), S.shape[0]
    lengthscales, signal, noise = np.exp(theta[:dims]), math.exp(theta[dims]), math.exp(theta[dims + 1])
    inv_sq = 1.0 / lengthscales**2
    r = np.sqrt(np.maximum(inv_sq @ S, 0.0)).reshape(n, n)
    decay = np.exp(-SQRT5 * r)
    matern = (1.0 + SQRT5 * r + (5.0 / 3.0) * r**2) * decay
    K = signal * matern + (noise + 1e-10) * np.eye(n)
    try:
        L = cholesky(K, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return 1e25, np.zeros_like(theta)
    alpha = cho_solve((L, True), y, check_finite=False)
    nll = 0.5 * y @ alpha + np.sum(np.log(np.diag(L))) + 0.5 * n * math.log(2 * math.pi)
    W = np.outer(alpha, alpha) - cho_solve((L, True), np.eye(n), check_finite=False)  # (n, n)
    grad = np.empty_like(theta)
    # d K / d log l_j = signal * 5/3 (1 + sqrt5 r) exp(-sqrt5 r) * (x_j - x'_j)^2 / l_j^2
    common = W * (signal * (5.0 / 3.0) * (1.0 + SQRT5 * r) * decay)
    grad[:dims] = -0.5 * (S @ common.ravel()) * inv_sq
    grad[dims] = -0.5 * np.sum(W * (signal * matern))
    grad[dims + 1] = -0.5 * noise * np.trace(W)
    means = np.r_[np.full(dims, PRIOR_LOG_LENGTHSCALE[0]), PRIOR_LOG_SIGNAL[0], PRIOR_LOG_NOISE[0]]
    sds = np.r_[np.full(dims, PRIOR_LOG_LENGTHSCALE[1]), PRIOR_LOG_SIGNAL[1], PRIOR_LOG_NOISE[1]]
    nll += 0.5 * float(np.sum(((theta - means) / sds) ** 2))
    grad += (theta - means) / sds**2
    return float(nll), grad


def fit_hyperparameters(
    X: np.ndarray, y: np.ndarray, start: Hyperparameters | None, restarts: int, seed: int
) -> Hyperparameters:
    """``X`` (n, D) in the unit cube, ``y`` (n,) standardized. Raises ValueError when no start converges."""
    dims = X.shape[1]
    bounds = np.log([LENGTHSCALE_BOUNDS] * dims + [SIGNAL_BOUNDS, NOISE_BOUNDS])
    start = start or default_hyperparameters(dims)
    starts = [np.log(np.concatenate([start.lengthscales, [start.signal, start.noise]]))]
    rng = np.random.default_rng(seed)
    starts += [rng.uniform(bounds[:, 0], bounds[:, 1]) for _ in range(restarts)]
    S = squared_differences(X)
    best: tuple[float, np.ndarray] | None = None
    for theta0 in starts:
        result = minimize(negative_log_likelihood, np.clip(theta0, bounds[:, 0], bounds[:, 1]), args=(S, y),
                          jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": FIT_ITERATIONS})
        if np.isfinite(result.fun) and result.fun < 1e24 and (best is None or result.fun < best[0]):
            best = (float(result.fun), result.x)
    if best is None:
        raise ValueError("no hyperparameter start gave a finite likelihood")
    theta = best[1]
    return Hyperparameters(np.exp(theta[:dims]), float(math.exp(theta[dims])), float(math.exp(theta[dims + 1])))


def select_rows(X: np.ndarray, y: np.ndarray, recency: np.ndarray, limit: int, rng: np.random.Generator,
                spread_sample: int = 20, best_share: float | None = None) -> np.ndarray:
    """Indices of at most ``limit`` rows to model when there are more: the best values (a third, or
    ``best_share``; where the optimum is), half the rest the most recent (where the search is now), the others
    spread over the space by greedy farthest-point selection among the remaining rows (so the model still
    knows the landscape), from a random sample of at most ``spread_sample * limit`` of them."""
    n = len(y)
    if n <= limit:
        return np.arange(n)
    top = limit // 3 if best_share is None else int(limit * best_share)
    chosen = list(np.argsort(y, kind="stable")[:top])
    taken = np.zeros(n, dtype=bool)
    taken[chosen] = True
    for index in np.argsort(-recency, kind="stable"):
        if len(chosen) >= top + (limit - top) // 2:
            break
        if not taken[index]:
            chosen.append(index)
            taken[index] = True
    rest = np.flatnonzero(~taken)
    if len(rest) > spread_sample * limit:  # bound the farthest-point search on huge histories
        rest = rng.choice(rest, spread_sample * limit, replace=False)
    X_rest = X[rest]
    distance = np.min(_sq_dist(X_rest, X[chosen]), axis=1)
    while len(chosen) < limit and len(rest):
        pick = int(np.argmax(distance))
        chosen.append(rest[pick])
        distance = np.minimum(distance, _sq_dist(X_rest, X_rest[pick][None, :])[:, 0])
        distance[pick] = -1.0
    return np.array(sorted(chosen))


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum(np.sum(a**2, 1)[:, None] + np.sum(b**2, 1)[None, :] - 2 * a @ b.T, 0.0)
