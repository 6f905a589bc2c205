"""``algorithm.settings`` of the ``gp`` algorithm: every field, its default and its bounds, in one model.

Fields are written in camelCase in a manifest (``maxModelTrials``) and accepted in snake_case from Python;
unknown fields and out-of-range values are refused with the field named.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

from kubetune.core.engine.base import StrategySettings

Model = Literal["auto", "exact", "scalable"]


class GPSettings(StrategySettings):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    acquisition: Literal["ei", "pi", "ucb"] = Field(default="ei", description="ei | pi | ucb")
    xi: float = Field(default=0.0, ge=0, description="Improvement margin for ei and pi.")
    kappa: float = Field(default=2.0, gt=0, description="Exploration weight for ucb.")
    liar: Literal["min", "mean", "max", "believer"] = Field(
        default="believer", description="What pending trials pretend: a constant (min, mean, max of the observed "
        "values) or, believer, the model's own prediction there.")
    initial_trials: int | None = Field(default=None, ge=2, description="Sobol trials first; default 2d+2.")
    candidates: int = Field(default=1024, ge=32, description="Size of the Sobol candidate pool.")
    polish: int = Field(default=1, ge=0, description="Suggestions per ask polished by L-BFGS-B.")
    max_model_trials: int = Field(default=1000, ge=50, description="Observations the exact posterior holds at most.")
    max_fit_trials: int = Field(default=200, ge=20, description="Observations a hyperparameter fit uses.")
    refit_every: int = Field(default=200, ge=1, description="Refit on every tell up to this many observations.")
    warp: bool = Field(default=True, description="Yeo-Johnson output warping of the objective values.")
    pending_prior_shift: float = Field(
        default=2.0, ge=0, description="While trials are pending (or for a batch of several points), the GP "
        "prior mean sits this many standard deviations of the (warped) observed values above their mean, so that "
        "the other workers are not spent where nothing is known yet; 0 keeps the neutral prior.")
    scalable_model_trials: int = Field(
        default=750, ge=50, le=5000, description="Completed trials the scalable model's posterior mean holds at "
        "most (the best, the most recent and a random rest, chosen again at every ask).")
    pending_neighbours: int = Field(
        default=8, ge=1, le=64, description="Nearest pending trials (in the kernel's scaled distance) that "
        "condition each candidate of the scalable model; farther ones are screened by them.")
    model: Model = Field(
        default="auto", description="auto | exact | scalable: the exact believer over every pending trial; the "
        "scalable model, whose cost per suggestion does not grow with the trials in flight; or auto: exact below "
        "512 trials in flight (pending plus asked for), scalable from there (the README says why).")

    @field_validator("model")
    @classmethod
    def _scalable_needs_the_believer(cls, model: Model, info: ValidationInfo) -> Model:
        liar = info.data.get("liar", "believer")
        if model == "scalable" and liar != "believer":
            raise ValueError(f"the scalable model conditions on pending trials as the believer does; it cannot "
                             f"use liar {liar!r} (use model exact, or liar believer)")
        return model
