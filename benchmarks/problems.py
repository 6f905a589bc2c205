"""Test problems for the quality benchmarks: classic functions (Branin, six-hump camel, Hartmann-6, Ackley-20),
a scikit-learn tuning task and a tabular benchmark made from one (:mod:`benchmarks.tabular`).

Every problem is a minimization over kubetune parameter dicts. ``optimum`` is the known minimum (the table's
best row for the tabular problem, read when first asked for), or None when it is unknown (the digits task), in
which case regret is taken against the best value any method found.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from benchmarks import tabular


@dataclass(frozen=True)
class Problem:
    name: str
    parameters: list[dict[str, Any]]
    objective: Callable[[dict[str, Any]], float]
    known_optimum: float | Callable[[], float] | None
    # Regrets closer than this are the same result: on a table of validation errors, rows less than one validation
    # sample apart differ only by how the folds split (0 for the functions).
    resolution: float = 0.0

    @property
    def optimum(self) -> float | None:
        return self.known_optimum() if callable(self.known_optimum) else self.known_optimum


def branin(p: dict[str, float]) -> float:
    x1, x2 = p["x1"], p["x2"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10


def six_hump_camel(p: dict[str, float]) -> float:
    x, y = p["x"], p["y"]
    return (4 - 2.1 * x**2 + x**4 / 3) * x**2 + x * y + (-4 + 4 * y**2) * y**2


_H6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8],
                  [17, 8, 0.05, 10, 0.1, 14]])
_H6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(p: dict[str, float]) -> float:
    x = np.array([p[f"x{i}"] for i in range(6)])
    return float(-np.sum(_H6_ALPHA * np.exp(-np.sum(_H6_A * (x - _H6_P) ** 2, axis=1))))


ACKLEY_DIMENSIONS = 20


def ackley(p: dict[str, float]) -> float:
    """Ackley's function (a = 20, b = 0.2, c = 2 pi); minimum 0 at the origin."""
    x = np.array([p[f"x{i}"] for i in range(len(p))])
    return float(-20.0 * np.exp(-0.2 * np.sqrt(np.mean(x**2))) - np.exp(np.mean(np.cos(2 * np.pi * x))) + 20.0 + np.e)


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))[:600]
    return X[order] / 16.0, y[order]


def digits_svc(p: dict[str, Any]) -> float:
    """1 - 3-fold cross-validated accuracy of an SVC on 600 digits (scikit-learn's own copy of the data)."""
    from sklearn.model_selection import cross_val_score
    from sklearn.svm import SVC

    X, y = _digits()
    model = SVC(C=p["C"], gamma=p["gamma"], kernel=p["kernel"])
    return 1.0 - float(np.mean(cross_val_score(model, X, y, cv=3)))


PROBLEMS = {
    "branin": Problem("branin", [{"name": "x1", "type": "double", "min": -5, "max": 10},
                                 {"name": "x2", "type": "double", "min": 0, "max": 15}], branin, 0.397887357729739),
    "hartmann6": Problem("hartmann6", [{"name": f"x{i}", "type": "double", "min": 0, "max": 1} for i in range(6)],
                         hartmann6, -3.322368011391339),
    "six-hump-camel": Problem("six-hump-camel", [{"name": "x", "type": "double", "min": -3, "max": 3},
                                                 {"name": "y", "type": "double", "min": -2, "max": 2}],
                              six_hump_camel, -1.031628453489877),
    "digits-svc": Problem("digits-svc", [
        {"name": "C", "type": "double", "min": 1e-2, "max": 1e3, "scale": "log"},
        {"name": "gamma", "type": "double", "min": 1e-4, "max": 1e1, "scale": "log"},
        {"name": "kernel", "type": "categorical", "values": ["rbf", "poly", "sigmoid"]},
    ], digits_svc, None),
    # On [-5, 10]^20, as in TuRBO's and BoTorch's high-dimensional examples (the minimum is off centre).
    "ackley20": Problem("ackley20", [{"name": f"x{i}", "type": "double", "min": -5, "max": 10}
                                     for i in range(ACKLEY_DIMENSIONS)], ackley, 0.0),
    "svc-tabular": Problem("svc-tabular", tabular.PARAMETERS, tabular.lookup, tabular.best_error, tabular.RESOLUTION),
}
