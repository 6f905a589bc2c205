"""Output warping: objective values are made roughly Gaussian before the GP sees them.

Objectives are often heavy-tailed (a loss that explodes in a corner of the space, an error rate piled up
near zero). Standardizing alone lets a few huge values set the GP's scale, and the region that matters, near
the optimum, becomes flat noise. A Yeo-Johnson power transform, with its exponent fitted by maximum
likelihood (scipy), makes the values roughly Gaussian while keeping their order, so the best value stays
the best. It is applied to standardized values and followed by a second standardization.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats


def standardize(values: np.ndarray) -> np.ndarray:
    sd = float(np.std(values))
    return (values - np.mean(values)) / (sd if sd > 0 else 1.0)


@dataclass(frozen=True)
class OutputWarp:
    """A fitted warp. The exponent is fitted when the hyperparameters are (fitting it costs milliseconds,
    applying it microseconds), and applied to every set of observed values until the next fit."""

    exponent: float | None = None  # Yeo-Johnson lambda for standardized values; None: standardize only

    @classmethod
    def fit(cls, values: np.ndarray, enabled: bool = True) -> OutputWarp:
        z = standardize(np.asarray(values, dtype=float))
        if not enabled or len(z) < 3:
            return cls()
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            try:
                exponent = float(stats.yeojohnson_normmax(z))
            except (ValueError, FloatingPointError):
                return cls()
        return cls(exponent if np.isfinite(exponent) else None)

    def frozen(self, reference: np.ndarray) -> FrozenWarp:
        """This warp with the statistics of ``reference`` held, so that values arriving later are mapped as
        they would have been among ``reference`` (for a model that takes observations one at a time)."""
        reference = np.asarray(reference, dtype=float)
        mean, sd = float(np.mean(reference)), float(np.std(reference))
        sd = sd if sd > 0 else 1.0
        exponent = self.exponent if len(reference) >= 3 else None
        transformed = _yeojohnson((reference - mean) / sd, exponent)
        if transformed is None or np.ptp(transformed) <= 0:
            exponent, transformed = None, (reference - mean) / sd
        after_sd = float(np.std(transformed))
        return FrozenWarp(mean, sd, exponent, float(np.mean(transformed)), after_sd if after_sd > 0 else 1.0)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """``values`` (n,) -> standardized, optionally warped values, same order."""
        z = standardize(np.asarray(values, dtype=float))
        if self.exponent is None or len(z) < 3:
            return z
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            transformed = stats.yeojohnson(z, lmbda=self.exponent)
        if not np.all(np.isfinite(transformed)) or np.ptp(transformed) <= 0:
            return z
        return standardize(transformed)


@dataclass(frozen=True)
class FrozenWarp:
    """Standardize with a held mean and sd, Yeo-Johnson with a held exponent, standardize again with held
    statistics; see :meth:`OutputWarp.frozen`."""

    mean: float
    sd: float
    exponent: float | None
    after_mean: float
    after_sd: float

    def __call__(self, values: np.ndarray) -> np.ndarray:
        z = (np.asarray(values, dtype=float) - self.mean) / self.sd
        transformed = _yeojohnson(z, self.exponent)
        if transformed is None:  # a value far outside the reference overflows the power: order is what counts
            transformed = z
        return (transformed - self.after_mean) / self.after_sd


def _yeojohnson(z: np.ndarray, exponent: float | None) -> np.ndarray | None:
    """Yeo-Johnson of ``z`` (None: no exponent, or a value the power overflows)."""
    if exponent is None:
        return z
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        transformed = stats.yeojohnson(z, lmbda=exponent)
    return transformed if np.all(np.isfinite(transformed)) else None
