"""The algorithms a manifest may name, each with its settings model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubetune.core.engine.base import Strategy, StrategySettings
from kubetune.core.engine.cmaes import CmaEsSearch, CmaEsSettings
from kubetune.core.engine.gp.strategy import GPSearch, GPSettings
from kubetune.core.engine.grid import GridSearch, GridSettings
from kubetune.core.engine.optuna_study import OPTUNA_EXTRA, missing_packages
from kubetune.core.engine.random import RandomSearch, RandomSettings
from kubetune.core.engine.sobol import SOBOL_MAX_COLUMNS, SobolSearch, SobolSettings
from kubetune.core.engine.tpe import TPESearch, TPESettings
from kubetune.core.parameters import CategoricalParameter
from kubetune.core.space import Space


@dataclass(frozen=True)
class Algorithm:
    settings: type[StrategySettings]
    build: Callable[[Space, Any], Strategy]
    max_columns: int | None = None  # the widest encoded space it can search (Space.n_columns), if bounded
    requires: tuple[str, ...] = ()  # packages of an extra it needs (import names)
    install: str = ""  # how to get them
    space_problem: Callable[[Space], str | None] = lambda _space: None  # why it cannot search a space


def _ordered_parameter_needed(space: Space) -> str | None:
    if all(isinstance(d.parameter, CategoricalParameter) for d in space.dimensions):
        return ("cmaes searches double, int and discrete parameters and draws categorical ones at random; with "
                "only categorical parameters it would be random search: use tpe")
    return None


ALGORITHMS: dict[str, Algorithm] = {
    "gp": Algorithm(GPSettings, GPSearch, SOBOL_MAX_COLUMNS),  # its first points are Sobol's
    "random": Algorithm(RandomSettings, RandomSearch),
    "sobol": Algorithm(SobolSettings, SobolSearch, SOBOL_MAX_COLUMNS),
    "grid": Algorithm(GridSettings, GridSearch),
    "tpe": Algorithm(TPESettings, TPESearch, requires=("optuna",), install=OPTUNA_EXTRA),
    "cmaes": Algorithm(CmaEsSettings, CmaEsSearch, requires=("optuna", "cmaes"), install=OPTUNA_EXTRA,
                       space_problem=_ordered_parameter_needed),
}
DEFAULT_ALGORITHM = "gp"


def parse_settings(name: str, settings: Mapping[str, Any] | None) -> StrategySettings:
    """Validates ``algorithm.settings``; raises ValueError for an unknown algorithm and pydantic's
    ValidationError for bad settings."""
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name].settings.model_validate(dict(settings or {}))


def missing_extra(name: str) -> str | None:
    """Why algorithm ``name`` cannot run here (packages of an extra not installed), in one line; else None."""
    algorithm = ALGORITHMS[name]
    missing = missing_packages(algorithm.requires)
    if not missing:
        return None
    return (f"algorithm {name} needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
            f"installed: {algorithm.install}")


def build_strategy(name: str, settings: Mapping[str, Any] | None, space: Space) -> Strategy:
    parsed = parse_settings(name, settings)
    problem = missing_extra(name) or ALGORITHMS[name].space_problem(space)
    if problem:
        raise ValueError(problem)
    return ALGORITHMS[name].build(space, parsed)
