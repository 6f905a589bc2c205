"""CMA-ES (``algorithm: {name: cmaes}``): Optuna's ``CmaEsSampler`` (on the ``cmaes`` library), asked through
:mod:`kubetune.core.engine.optuna_study`.

CMA-ES samples a generation of ``popsize`` points from a multivariate normal distribution and moves its mean,
step size and covariance towards the best of them (Hansen, 2016). Asynchronous workers fit it as Optuna runs
it: a trial belongs to the generation that was current when it was asked, the generation is told once
``popsize`` of its trials have completed, in whatever order they finished, and further asks before that draw
more points of the same generation (trials of an older generation that finish later are simply not used).
CMA-ES needs many generations: in the quality benchmark's 100 evaluations it gains little over random search
with 8 or 32 workers, with a ``popsize`` of ``parallelism`` or without (``benchmarks/results/quality_tpe_cmaes.md``).

Doubles, ints and discrete parameters (as the index of their value) are searched by CMA-ES; categorical
parameters, which it cannot model, are drawn at random. The distribution lives in memory: an optimizer rebuilt
from its trials after a restart warm-starts a new CMA-ES from the best tenth of the completed trials
(WS-CMA-ES, Nomura et al., AAAI 2021, Optuna's ``source_trials``), so the search goes on around what was
found rather than from the middle of the space; with fewer than ten completed trials it starts afresh.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from kubetune.core.engine.base import StrategySettings
from kubetune.core.engine.optuna_study import OptunaStrategy
from kubetune.core.space import Space

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.samplers import BaseSampler
    from optuna.trial import FrozenTrial

# The warm start estimates its distribution from the best tenth of the trials: it needs at least ten.
WARM_START_TRIALS = 10


class CmaEsSettings(StrategySettings):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    popsize: int | None = Field(default=None, ge=2, le=100_000, description="Points per generation (default "
                                "4 + 3 ln d, d the number of searched parameters).")
    startup_trials: int = Field(default=1, ge=0, description="Random trials before CMA-ES starts.")
    separable: bool = Field(default=False, description="A diagonal covariance (sep-CMA-ES): faster to learn, "
                            "for parameters that do not interact.")
    with_margin: bool = Field(default=False, description="CMA-ES with margin: keeps int and discrete parameters "
                              "from collapsing onto one value.")
    lr_adapt: bool = Field(default=False, description="Learning-rate adaptation, for multimodal or noisy "
                           "objectives.")

    @model_validator(mode="after")
    def _compatible(self) -> CmaEsSettings:
        if self.separable and self.with_margin:
            raise ValueError("separable and withMargin cannot be combined")
        if self.lr_adapt and (self.separable or self.with_margin):
            raise ValueError("lrAdapt cannot be combined with separable or withMargin")
        return self


def cmaes_sampler(settings: CmaEsSettings) -> Any:
    def make(seed: int, distributions: dict[str, BaseDistribution],
             completed: list[tuple[dict[str, Any], float]]) -> BaseSampler:
        from optuna.samplers import CmaEsSampler, RandomSampler

        source = None if settings.separable else warm_start_trials(distributions, completed)
        return CmaEsSampler(seed=seed, n_startup_trials=settings.startup_trials, popsize=settings.popsize,
                            use_separable_cma=settings.separable, with_margin=settings.with_margin,
                            lr_adapt=settings.lr_adapt, source_trials=source, warn_independent_sampling=False,
                            independent_sampler=RandomSampler(seed=seed))

    return make


def warm_start_trials(distributions: dict[str, BaseDistribution],
                      completed: list[tuple[dict[str, Any], float]]) -> list[FrozenTrial] | None:
    """The completed trials as Optuna trials over the parameters CMA-ES searches (ranges and ordered indices
    with more than one value), or None when there are too few to warm-start from."""
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import create_trial

    searched = {name: d for name, d in distributions.items()
                if not isinstance(d, CategoricalDistribution) and not d.single()}
    if len(completed) < WARM_START_TRIALS or not searched:
        return None
    return [create_trial(params={name: params[name] for name in searched}, distributions=searched, value=loss)
            for params, loss in completed]


class CmaEsSearch(OptunaStrategy):
    def __init__(self, space: Space, settings: CmaEsSettings):
        super().__init__(space, cmaes_sampler(settings))
