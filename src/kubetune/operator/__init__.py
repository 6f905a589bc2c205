"""The Kubernetes operator: kopf handlers (thin) over a level-triggered reconciler and a small API adapter.

Its packages are the ``operator`` extra (``pip install 'kubetune[operator]'``), not the base install, so a
trial image or a laptop running ``kubetune run`` carries no cluster client. Importing this package itself
needs none of them: :func:`require_operator_extra` says clearly what is missing before anything else is
imported.
"""

from __future__ import annotations

import importlib

# The distributions of the operator extra, by the module each is imported as.
OPERATOR_EXTRA = {"kopf": "kopf", "kubernetes": "kubernetes", "prometheus_client": "prometheus-client",
                  "aiohttp": "aiohttp", "urllib3": "urllib3"}
MISSING_EXTRA_MESSAGE = "kubetune operator needs the operator extra: pip install 'kubetune[operator]'"


class MissingOperatorExtra(ImportError):
    """A package of the ``operator`` extra cannot be imported; the message is one line saying what to install."""

    def __init__(self, missing: list[str]):
        super().__init__(MISSING_EXTRA_MESSAGE)
        self.missing = missing  # the distributions that could not be imported


def require_operator_extra() -> None:
    """Imports the operator extra's packages, or raises :class:`MissingOperatorExtra` when one is missing
    (the CLI prints its message and exits 2). The operator imports them right after, so this costs nothing."""
    missing = []
    for module, distribution in OPERATOR_EXTRA.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(distribution)
    if missing:
        raise MissingOperatorExtra(missing)
