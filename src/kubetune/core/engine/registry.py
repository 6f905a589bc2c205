"""The algorithms a manifest may name, each with its settings model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubetune.core.engine.base import Strategy, StrategySettings
from kubetune.core.engine.gp.strategy import GPSearch, GPSettings
from kubetune.core.engine.grid import GridSearch, GridSettings
from kubetune.core.engine.random import RandomSearch, RandomSettings
from kubetune.core.engine.sobol import SOBOL_MAX_COLUMNS, SobolSearch, SobolSettings
from kubetune.core.space import Space


@dataclass(frozen=True)
class Algorithm:
    settings: type[StrategySettings]
    build: Callable[[Space, Any], Strategy]
    max_columns: int | None = None  # the widest encoded space it can search (Space.n_columns), if bounded


ALGORITHMS: dict[str, Algorithm] = {
    "gp": Algorithm(GPSettings, GPSearch, SOBOL_MAX_COLUMNS),  # its first points are Sobol's
    "random": Algorithm(RandomSettings, RandomSearch),
    "sobol": Algorithm(SobolSettings, SobolSearch, SOBOL_MAX_COLUMNS),
    "grid": Algorithm(GridSettings, GridSearch),
}
DEFAULT_ALGORITHM = "gp"


def parse_settings(name: str, settings: Mapping[str, Any] | None) -> StrategySettings:
    """Validates ``algorithm.settings``; raises ValueError for an unknown algorithm and pydantic's
    ValidationError for bad settings."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name].settings.model_validate(dict(settings or {}))


def build_strategy(name: str, settings: Mapping[str, Any] | None, space: Space) -> Strategy:
    return ALGORITHMS[name].build(space, parse_settings(name, settings))
