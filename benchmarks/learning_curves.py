"""Learning-curve problems for the early-stopping benchmark: a trial is a configuration whose objective is
reported after every epoch, up to :data:`MAX_EPOCHS`, and what counts is its value at the last epoch.

- ``sgd-digits``: scikit-learn's ``SGDClassifier`` trained epoch by epoch with ``partial_fit`` on the digits
  data scikit-learn ships (1,197 images to train on, 600 to validate on), told digits 0-4 from 5-9 (one
  binary model, so an epoch takes a few milliseconds); the objective is the validation error after each
  epoch. Hyperparameters: ``alpha`` and ``eta0`` (log scale), ``learning_rate`` and
  ``penalty`` (categorical). Curves are real: noisy, sometimes non-monotone, and a bad learning rate shows
  early while a slow schedule only looks bad early.
- ``hartmann3-curves``: a synthetic multi-fidelity function. The value at the last epoch is Hartmann-3 (known
  optimum), earlier epochs add a gap that shrinks as a power of the epoch and whose size depends on the
  configuration (``x1``: near the optimum the curves converge slowly, so early ranks cross the final ones),
  plus Gaussian noise that vanishes at the last epoch. Early values are noisy, correlated predictors.

``start(params, stream)`` begins a trial and returns a callable ``epoch -> value`` (epochs from 1, called in
order); ``stream`` seeds the trial's own randomness (the SGD shuffles, the synthetic noise).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

MAX_EPOCHS = 27


@dataclass(frozen=True)
class CurveProblem:
    name: str
    parameters: list[dict[str, Any]]
    start: Callable[[dict[str, Any], int], Callable[[int], float]]
    optimum: float | None  # the best final value possible, when known


# -- sgd-digits -----------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    X = X[order] / 16.0
    X = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-3)
    y = (y[order] >= 5).astype(int)  # 0-4 against 5-9: one binary model, a tenth of ten one-vs-rest ones
    return X[600:], y[600:], X[:600], y[:600]


def sgd_digits(params: dict[str, Any], stream: int) -> Callable[[int], float]:
    from sklearn.linear_model import SGDClassifier

    X, y, X_val, y_val = _digits()
    classes = np.array([0, 1])
    model = SGDClassifier(loss="log_loss", alpha=params["alpha"], eta0=params["eta0"],
                          learning_rate=params["learning_rate"], penalty=params["penalty"], random_state=stream)

    def epoch(_: int) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.partial_fit(X, y, classes=classes)
            return float(np.mean(model.predict(X_val) != y_val))

    return epoch


SGD_PARAMETERS = [
    {"name": "alpha", "type": "double", "min": 1e-7, "max": 1e-1, "scale": "log"},
    {"name": "eta0", "type": "double", "min": 1e-5, "max": 1.0, "scale": "log"},
    {"name": "learning_rate", "type": "categorical", "values": ["constant", "optimal", "invscaling", "adaptive"]},
    {"name": "penalty", "type": "categorical", "values": ["l2", "l1", "elasticnet"]},
]


# -- hartmann3-curves -----------------------------------------------------------------------------------------
_H3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_H3_P = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]])
_H3_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
HARTMANN3_OPTIMUM = -3.86278214782076


def hartmann3(x: np.ndarray) -> float:
    return float(-np.sum(_H3_ALPHA * np.exp(-np.sum(_H3_A * (x - _H3_P) ** 2, axis=1))))


def hartmann3_curves(params: dict[str, Any], stream: int) -> Callable[[int], float]:
    """``value(t) = hartmann3(x) + gap(x) * ((T/t)^0.7 - 1) / (T^0.7 - 1) + noise(t)``: the gap is
    ``0.5 + 2.5 * x1`` at the first epoch and 0 at the last; the noise's standard deviation is
    ``0.3 * sqrt(1 - t/T)``."""
    x = np.array([params["x0"], params["x1"], params["x2"]])
    final = hartmann3(x)
    gap = 0.5 + 2.5 * x[1]
    rng = np.random.default_rng(stream)
    scale = MAX_EPOCHS ** 0.7 - 1

    def epoch(t: int) -> float:
        shape = ((MAX_EPOCHS / t) ** 0.7 - 1) / scale
        noise = 0.3 * math.sqrt(max(0.0, 1 - t / MAX_EPOCHS)) * rng.standard_normal()
        return final + gap * shape + noise

    return epoch


CURVE_PROBLEMS = {
    "sgd-digits": CurveProblem("sgd-digits", SGD_PARAMETERS, sgd_digits, None),
    "hartmann3-curves": CurveProblem(
        "hartmann3-curves", [{"name": f"x{i}", "type": "double", "min": 0, "max": 1} for i in range(3)],
        hartmann3_curves, HARTMANN3_OPTIMUM),
}
