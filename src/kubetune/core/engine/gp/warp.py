"""Output warping: objective values are made roughly Gaussian before the GP sees them.

Objectives are often heavy-tailed (a loss that explodes in a corner of the space, an error rate piled up
near zero). Standardizing alone lets a few huge values set the GP's scale, and the region that matters, near
the optimum, becomes flat noise. A Yeo-Johnson power transform, with its exponent fitted by maximum
likelihood (scipy), makes the values roughly Gaussian while keeping their order, so the best value stays
the best. It is applied to standardized values and followed by a second standardization.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats


def standardize(values: np.ndarray) -> np.ndarray:
    sd = float(np.std(values))
    return (values - np.mean(values)) / (sd if sd > 0 else 1.0)


def warp(values: np.ndarray, enabled: bool = True) -> np.ndarray:
    """``values`` (n,) -> standardized, optionally Yeo-Johnson warped values, same order."""
    z = standardize(np.asarray(values, dtype=float))
    if not enabled or len(z) < 3:
        return z
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            transformed = stats.yeojohnson(z)[0]
        except (ValueError, FloatingPointError):
            return z
    if not np.all(np.isfinite(transformed)) or np.ptp(transformed) <= 0:
        return z
    return standardize(transformed)
