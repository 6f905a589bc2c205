"""Candidate points for the acquisition: where both GP models look for the next suggestions.

A Sobol pool covers the space; Gaussian perturbations of the best observed points, at a few scales, refine
around them. Every candidate is snapped to a valid assignment and kept once per assignment, so that a
candidate's key says which trial it would be.
"""

from __future__ import annotations

import math

import numpy as np

from kubetune.core.space import Space

LOCAL_CENTRES = 5
LOCAL_PER_CENTRE = 64
LOCAL_SCALES = (0.02, 0.08, 0.2)


def local_candidates(space: Space, X: np.ndarray, losses: np.ndarray, rng: np.random.Generator,
                     centres: int = LOCAL_CENTRES) -> np.ndarray:
    """``centres * LOCAL_PER_CENTRE`` snapped perturbations of the ``centres`` best points of ``X``."""
    best = X[np.argsort(losses, kind="stable")[:centres]]
    scales = np.repeat(LOCAL_SCALES, math.ceil(LOCAL_PER_CENTRE / len(LOCAL_SCALES)))[:LOCAL_PER_CENTRE]
    noise = rng.normal(size=(len(best), LOCAL_PER_CENTRE, X.shape[1])) * scales[None, :, None]
    points = np.clip(best[:, None, :] + noise, 0.0, 1.0).reshape(-1, X.shape[1])
    return space.snap(points)


def unique(space: Space, points: np.ndarray) -> tuple[np.ndarray, list[tuple]]:
    """The points with one representative per assignment, and their keys."""
    keys = space.keys_of_points(points)
    first: dict[tuple, int] = {}
    for index, key in enumerate(keys):
        first.setdefault(key, index)
    rows = list(first.values())
    return points[rows], [keys[i] for i in rows]


def continuous_columns(space: Space) -> np.ndarray:
    """The unit-cube columns of the double and int parameters (those a gradient polish may move)."""
    return np.array([c for d in space.dimensions if d.parameter.is_range for c in range(d.start, d.start + d.width)],
                    dtype=int)
