"""A tabular hyperparameter benchmark made here from data scikit-learn ships: an SVC on the breast-cancer data,
its 5-fold cross-validated error evaluated once over a grid of five hyperparameters and kept in
``benchmarks/data/svc-breast-cancer.csv.gz``.

The grid (30,420 configurations): ``C`` and ``gamma`` on log grids (half-decade steps), the kernel (rbf, poly of
degree 3, sigmoid), the number of features kept (an int from 1 to 30: the ones with the highest ANOVA F-score on
the training folds) and the class weighting (none or balanced). Each fold standardizes the features and ranks
them on its training part only. The quality benchmark serves the table as a problem whose space is exactly the
grid (discrete, int and categorical parameters), so every suggestion is a row, and regret is the row's error
minus the table's best.

    python -m benchmarks.tabular --build [--jobs 2]

The build evaluates 30,420 configurations x 5 folds: about 20 ms a configuration on an idle core (10 minutes on
one, 5 on two); the committed table took 57 minutes on 2 processes while other jobs shared the machine.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import itertools
import multiprocessing
import os
import time
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

TABLE = Path(__file__).parent / "data" / "svc-breast-cancer.csv.gz"
FOLDS = 5
# One misclassified validation sample moves a row's mean error by about 1 / 569 (the data has 569 samples); rows
# closer than half that misclassify as many samples and differ only by the sizes of the folds they fall in.
RESOLUTION = 0.5 / 569
# libsvm iterations per fit: a few corners of the grid (poly kernel, huge C and gamma) would otherwise run for
# minutes; the error reached at the cap is what such a configuration gets in the table.
MAX_ITERATIONS = 1_000_000
PARAMETERS: list[dict[str, Any]] = [
    {"name": "C", "type": "discrete", "values": [float(f"{10.0**e:.3g}") for e in np.arange(-2.0, 4.01, 0.5)]},
    {"name": "gamma", "type": "discrete", "values": [float(f"{10.0**e:.3g}") for e in np.arange(-5.0, 1.01, 0.5)]},
    {"name": "kernel", "type": "categorical", "values": ["rbf", "poly", "sigmoid"]},
    {"name": "features", "type": "int", "min": 1, "max": 30},
    {"name": "class_weight", "type": "categorical", "values": ["none", "balanced"]},
]
NAMES = [p["name"] for p in PARAMETERS]


def grid() -> list[tuple]:
    """Every configuration, as a tuple in the order of ``PARAMETERS``."""
    axes = [p["values"] if "values" in p else list(range(p["min"], p["max"] + 1)) for p in PARAMETERS]
    return list(itertools.product(*axes))


def _key(params: dict[str, Any]) -> tuple:
    return tuple(round(float(params[n]), 10) if isinstance(params[n], int | float) else params[n] for n in NAMES)


@lru_cache(maxsize=1)
def table() -> dict[tuple, float]:
    """Configuration key -> 5-fold validation error, read from the committed table."""
    if not TABLE.exists():
        raise FileNotFoundError(f"{TABLE} is missing; build it with `python -m benchmarks.tabular --build`")
    with gzip.open(TABLE, "rt", newline="") as handle:
        rows = list(csv.DictReader(handle))
    out = {}
    for row in rows:
        params: dict[str, Any] = {"C": float(row["C"]), "gamma": float(row["gamma"]), "kernel": row["kernel"],
                                  "features": int(row["features"]), "class_weight": row["class_weight"]}
        out[_key(params)] = float(row["error"])
    return out


def lookup(params: dict[str, Any]) -> float:
    """The table's error for a configuration of the grid (KeyError names one that is not in it)."""
    try:
        return table()[_key(params)]
    except KeyError:
        raise KeyError(f"configuration {params} is not a row of {TABLE.name}") from None


def best_error() -> float:
    return min(table().values())


# -- the build ------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _folds() -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per fold: standardized training and validation features (ranked by F-score on the training part), labels."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.feature_selection import f_classif
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    X, y = load_breast_cancer(return_X_y=True)
    folds = []
    for train, validation in StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(X, y):
        scaler = StandardScaler().fit(X[train])
        X_train, X_validation = scaler.transform(X[train]), scaler.transform(X[validation])
        order = np.argsort(-np.nan_to_num(f_classif(X_train, y[train])[0]), kind="stable")
        folds.append((X_train[:, order], y[train], X_validation[:, order], y[validation], order))
    return folds


def evaluate(configuration: tuple) -> tuple[tuple, float, float]:
    """(configuration, mean validation error over the folds, seconds)."""
    from sklearn.svm import SVC

    C, gamma, kernel, features, class_weight = configuration
    started = time.perf_counter()
    errors = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at the iteration cap
        for X_train, y_train, X_validation, y_validation, _ in _folds():
            model = SVC(C=C, gamma=gamma, kernel=kernel, class_weight=None if class_weight == "none" else class_weight,
                        max_iter=MAX_ITERATIONS)
            model.fit(X_train[:, :features], y_train)
            errors.append(float(np.mean(model.predict(X_validation[:, :features]) != y_validation)))
    return configuration, float(np.mean(errors)), time.perf_counter() - started


def build(jobs: int) -> None:
    configurations = grid()
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows = []
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        for i, row in enumerate(pool.imap(evaluate, configurations, chunksize=64)):
            rows.append(row)
            if (i + 1) % 2000 == 0:
                print(f"{i + 1}/{len(configurations)} configurations, {time.perf_counter() - started:.0f} s",
                      flush=True)
    with gzip.open(TABLE, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*NAMES, "error"])
        for configuration, error, _ in rows:
            writer.writerow([*(repr(v) if isinstance(v, float) else v for v in configuration), f"{error:.10f}"])
    seconds = [s for _, _, s in rows]
    errors = np.array([e for _, e, _ in rows])
    print(f"wrote {TABLE} ({TABLE.stat().st_size / 1024:.0f} KiB): {len(rows)} configurations in "
          f"{time.perf_counter() - started:.0f} s on {jobs} processes ({np.mean(seconds) * 1000:.0f} ms each); "
          f"best error {errors.min():.5f} ({int(np.sum(errors == errors.min()))} rows), median {np.median(errors):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true", help=f"evaluate the grid and write {TABLE.name}")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if not args.build:
        parser.error("nothing to do: pass --build to evaluate the grid")
    # One BLAS thread per process (the workers inherit it); the build runs processes in parallel instead.
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"
    build(args.jobs)


if __name__ == "__main__":
    main()
