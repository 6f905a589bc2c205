"""kubetune: asynchronous hyperparameter optimization that runs the same manifest on a laptop and on
Kubernetes.

Public API: the ask/tell :class:`Optimizer` and, for code running inside a trial, :func:`report`,
:func:`params` and :func:`gpu_share`. The optimizer is imported on first use, so a trial script that only
reports metrics does not pay for loading numpy and scipy.
"""

from typing import Any

from kubetune.trial import gpu_share, params, report

__all__ = ["Optimizer", "Suggestion", "gpu_share", "params", "report"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("Optimizer", "Suggestion"):
        from kubetune.core import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'kubetune' has no attribute {name!r}")
