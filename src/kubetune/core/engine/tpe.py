"""The Tree-structured Parzen Estimator (``algorithm: {name: tpe}``): Optuna's ``TPESampler`` with its constant
liar, asked through :mod:`kubetune.core.engine.optuna_study`.

TPE splits the completed trials into the best few and the rest, fits a Parzen estimator (a mixture of
truncated Gaussians, categorical weights for categorical parameters) to each, and proposes the candidate
that maximizes the ratio of the two densities (Bergstra et al., NeurIPS 2011; Watanabe, 2023). With the
constant liar, a running trial counts as one of the worst, so workers asked while others run are sent
elsewhere instead of to the same promising spot. ``multivariate`` models the parameters jointly (Falkner et
al., ICML 2018), which helps when they interact. Restart-safe as it is: TPE keeps no state beyond the trials,
so a rebuilt study proposes as the original would have.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel

from kubetune.core.engine.base import StrategySettings
from kubetune.core.engine.optuna_study import OptunaStrategy
from kubetune.core.space import Space

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.samplers import BaseSampler


class TPESettings(StrategySettings):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    startup_trials: int = Field(default=10, ge=0, description="Random trials before the model is used.")
    ei_candidates: int = Field(default=24, ge=1, le=10_000,
                               description="Candidates drawn from the good trials' density at each proposal.")
    multivariate: bool = Field(default=True, description="Model the parameters jointly rather than one by one.")
    constant_liar: bool = Field(default=True, description="Count running trials as bad ones, so that parallel "
                                "workers are not sent to the same spot.")
    prior_weight: float = Field(default=1.0, gt=0, le=1e6, allow_inf_nan=False,
                                description="Weight of the flat prior mixed into each density.")


def tpe_sampler(settings: TPESettings) -> Any:
    def make(seed: int, _distributions: dict[str, BaseDistribution],
             _completed: list[tuple[dict[str, Any], float]]) -> BaseSampler:
        from optuna.samplers import TPESampler

        return TPESampler(seed=seed, n_startup_trials=settings.startup_trials, n_ei_candidates=settings.ei_candidates,
                          multivariate=settings.multivariate, constant_liar=settings.constant_liar,
                          prior_weight=settings.prior_weight, warn_independent_sampling=False)

    return make


class TPESearch(OptunaStrategy):
    def __init__(self, space: Space, settings: TPESettings):
        super().__init__(space, tpe_sampler(settings))
