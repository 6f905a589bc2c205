"""Acquisition functions on standardized targets, for minimization, with gradients for the polish.

``ei`` (default) is the log of expected improvement, computed stably for very unlikely improvements (the
form of Ament et al., "Unexpected improvements to expected improvement", 2023); ``pi`` is the log
probability of improvement; ``ucb`` is the lower confidence bound ``-(mean - kappa * sd)``. Larger is
better for all three. ``xi`` is the improvement margin for ``ei`` and ``pi``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import erfcx, log_ndtr, ndtr

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
SQRT_HALF_PI = math.sqrt(math.pi / 2)

Kind = Literal["ei", "pi", "ucb"]


def log_h(z: np.ndarray) -> np.ndarray:
    """``log(phi(z) + z * Phi(z))``, accurate for very negative ``z``."""
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    upper = z > -1.0
    zu = z[upper]
    out[upper] = np.log(np.exp(-0.5 * zu**2 - LOG_SQRT_2PI) + zu * ndtr(zu))
    zl = np.maximum(z[~upper], -1e6)
    log_phi = -0.5 * zl**2 - LOG_SQRT_2PI
    ratio = -zl * SQRT_HALF_PI * erfcx(-zl / math.sqrt(2))  # -z * Phi(z) / phi(z), in (0, 1)
    tail = np.where(zl < -1e3, -2.0 * np.log(-zl), np.log1p(-np.minimum(ratio, 1 - 1e-16)))
    out[~upper] = log_phi + tail
    return out


@dataclass(frozen=True)
class Acquisition:
    kind: Kind = "ei"
    xi: float = 0.0
    kappa: float = 2.0

    def value(self, mean: np.ndarray, var: np.ndarray, best: float) -> np.ndarray:
        sd = np.sqrt(var)
        if self.kind == "ucb":
            return -(mean - self.kappa * sd)
        z = (best - mean - self.xi) / sd
        if self.kind == "pi":
            return log_ndtr(z)
        return np.log(sd) + log_h(z)

    def value_and_grad(
        self, mean: float, var: float, d_mean: np.ndarray, d_var: np.ndarray, best: float
    ) -> tuple[float, np.ndarray]:
        sd = math.sqrt(var)
        d_sd = d_var / (2 * sd)
        if self.kind == "ucb":
            return -(mean - self.kappa * sd), -(d_mean - self.kappa * d_sd)
        z = (best - mean - self.xi) / sd
        d_z = (-d_mean - z * d_sd) / sd
        if self.kind == "pi":
            log_cdf = float(log_ndtr(z))
            return log_cdf, math.exp(-0.5 * z * z - LOG_SQRT_2PI - log_cdf) * d_z
        lh = float(log_h(np.array([z]))[0])
        # d log EI = d_sd / sd + (Phi(z) / h(z)) d_z, with the ratio taken in log space
        ratio = math.exp(float(log_ndtr(z)) - lh)
        return math.log(sd) + lh, d_sd / sd + ratio * d_z
