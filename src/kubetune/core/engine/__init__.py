"""The optimizer engine: strategies that propose points, and the ask/tell Optimizer that drives them."""

from kubetune.core.engine.optimizer import Optimizer, Suggestion
from kubetune.core.engine.registry import ALGORITHMS, DEFAULT_ALGORITHM, parse_settings

__all__ = ["ALGORITHMS", "DEFAULT_ALGORITHM", "Optimizer", "Suggestion", "parse_settings"]
