"""The Experiment manifest: one pydantic model shared by the CLI, the runners and the operator.

Field names are the manifest's camelCase names (``maxTrials``, ``trialTemplate``...) through aliases, so the
same model parses a YAML file, a Kubernetes object and generates the CRD schema. Everything a user can get
wrong is checked here, and every error names the field path it is about (see :mod:`kubetune.core.errors`).
Checks that span several fields (``${params.NAME}`` references, grid steps) live in :func:`cross_check`.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from kubetune.core.template import env_name

PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# Trial names are "<experiment>-<n>" and end up in label values (at most 63 characters).
EXPERIMENT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_EXPERIMENT_NAME = 50
QUANTITY = re.compile(r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[numkKMGTPE]i?|Ki|Mi|Gi|Ti|Pi|Ei)?$")

# Bounds of int parameters: 64-bit integers, as a Kubernetes object stores them.
INT_LIMIT = 2**63 - 1
ParameterType = Literal["double", "int", "discrete", "categorical"]
Scalar = str | int | float | bool


class _Model(BaseModel):
    """Strict base: camelCase aliases, unknown fields rejected."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, alias_generator=to_camel, validate_default=True
    )


class Objective(_Model):
    """What the search optimizes."""

    metric: str = Field(description="Name of the metric the trials report and the optimizer optimizes.")
    direction: Literal["maximize", "minimize"] = Field(description="Whether larger or smaller is better.")
    target: float | None = Field(
        default=None, description="Stop the experiment once a trial reaches this objective value."
    )
    additional_metrics: list[str] = Field(
        default_factory=list, description="Further metrics to collect and store; not optimized."
    )
    strategy: Literal["latest", "min", "max"] = Field(
        default="latest", description="Which of the values a trial reports counts as its objective."
    )

    @field_validator("metric")
    @classmethod
    def _metric_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the objective metric name must not be empty")
        return value.strip()

    @field_validator("target")
    @classmethod
    def _target_finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError(f"target must be a finite number, got {value}")
        return value


class Parameter(_Model):
    """One dimension of the search space; which fields apply depends on ``type``."""

    name: str = Field(description="Parameter name, referenced in the trial template as ${params.NAME}.")
    type: ParameterType = Field(description="double | int | discrete | categorical.")
    min: float | None = Field(default=None, description="Lower bound (double, int).")
    max: float | None = Field(default=None, description="Upper bound (double, int).")
    scale: Literal["linear", "log"] = Field(default="linear", description="Search on a linear or log scale.")
    steps: int | None = Field(
        default=None, ge=2, description="Grid search: number of evenly spaced values (double, int)."
    )
    values: list[Scalar] | None = Field(default=None, description="The allowed values (discrete, categorical).")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not PARAMETER_NAME.match(value):
            raise ValueError(
                f"parameter name {value!r} must start with a letter or '_' and contain only letters, "
                "digits, '_', '-' and '.'"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Parameter:
        if self.type in ("double", "int"):
            self._check_range()
        else:
            self._check_values()
        return self

    def _check_range(self) -> None:
        kind = self.type
        if self.values is not None:
            raise ValueError(f"{kind} parameter {self.name!r} takes min and max, not values")
        if self.min is None or self.max is None:
            missing = " and ".join(k for k in ("min", "max") if getattr(self, k) is None)
            raise ValueError(f"{kind} parameter {self.name!r} needs {missing}")
        for bound in ("min", "max"):
            value = getattr(self, bound)
            if not math.isfinite(value):
                raise ValueError(f"{bound} of parameter {self.name!r} must be finite, got {value}")
            if kind == "int" and value != int(value):
                raise ValueError(f"{bound} of int parameter {self.name!r} must be a whole number, got {value}")
            if kind == "int" and abs(value) > INT_LIMIT:
                raise ValueError(f"{bound} of int parameter {self.name!r} must be between -{INT_LIMIT} and "
                                 f"{INT_LIMIT} (64-bit integers), got {_num(value)}")
        if self.max <= self.min:
            raise ValueError(f"max ({_num(self.max)}) must be greater than min ({_num(self.min)})")
        if not math.isfinite(self.max - self.min):
            raise ValueError(f"the range of parameter {self.name!r} is too wide: max - min must be a finite number")
        if self.scale == "log" and self.min <= 0:
            raise ValueError(
                f"log scale needs min > 0, but parameter {self.name!r} has min {_num(self.min)}"
            )

    def _check_values(self) -> None:
        kind = self.type
        if self.min is not None or self.max is not None or self.steps is not None:
            raise ValueError(f"{kind} parameter {self.name!r} takes values, not min/max/steps")
        if self.scale != "linear":
            raise ValueError(f"{kind} parameter {self.name!r} has no scale; it applies to double and int")
        if not self.values:
            raise ValueError(f"{kind} parameter {self.name!r} needs a non-empty list of values")
        if kind == "discrete":
            if any(isinstance(v, bool) or not isinstance(v, int | float) for v in self.values):
                raise ValueError(
                    f"discrete parameter {self.name!r} takes numbers; use type categorical for other values"
                )
            if any(not math.isfinite(v) for v in self.values):
                raise ValueError(f"discrete parameter {self.name!r} has a value that is not finite")
        keys = [_value_key(v) for v in self.values]
        if len(set(keys)) != len(keys):
            duplicate = next(v for i, v in enumerate(self.values) if _value_key(v) in keys[:i])
            raise ValueError(f"parameter {self.name!r} lists the value {duplicate!r} more than once")


class Algorithm(_Model):
    """The search strategy and its settings."""

    name: Literal["gp", "random", "grid", "sobol"] = Field(
        default="gp", description="Search strategy: gp (asynchronous constant-liar GP) | random | grid | sobol."
    )
    settings: dict[str, Any] = Field(default_factory=dict, description="Algorithm-specific settings.")


class Resources(_Model):
    """What one trial needs."""

    cpu: str | int | float | None = Field(default=None, description="CPU request, a Kubernetes quantity.")
    memory: str | int | None = Field(default=None, description="Memory request, a Kubernetes quantity.")
    gpu: float = Field(
        default=0, ge=0, description="GPUs per trial; a fraction below 1 shares a GPU, above 1 whole GPUs."
    )

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, value: str | int | float | None) -> str | int | float | None:
        if value is not None and not QUANTITY.match(str(value)):
            raise ValueError(f"{value!r} is not a Kubernetes quantity (for example 500m, 2, 1Gi)")
        return value

    @field_validator("gpu")
    @classmethod
    def _gpu_amount(cls, value: float) -> float:
        if value > 1 and value != int(value):
            raise ValueError(f"a GPU request above 1 must be a whole number of GPUs, got {value}")
        return value


class MetricsCollector(_Model):
    """Where a trial's metrics are read from."""

    kind: Literal["stdout", "file"] = Field(
        default="stdout", description="stdout: parse the trial's output; file: parse a file it writes."
    )
    path: str | None = Field(default=None, description="The file the trial writes its metrics to (file).")

    @model_validator(mode="after")
    def _path_for_file(self) -> MetricsCollector:
        if self.kind == "file" and not self.path:
            raise ValueError("the file collector needs a path")
        if self.kind == "stdout" and self.path:
            raise ValueError("path applies only to the file collector")
        return self


class TrialTemplate(_Model):
    """How each trial runs."""

    timeout_seconds: int | None = Field(default=None, gt=0, description="Kill a trial running longer.")
    retries: int = Field(default=0, ge=0, description="Re-runs of a failed trial before it counts as failed.")
    resources: Resources = Field(default_factory=Resources)
    metrics_collector: MetricsCollector = Field(default_factory=MetricsCollector)
    spec: dict[str, Any] = Field(
        description="A Kubernetes PodSpec; locally the first container's command and args run as a process."
    )

    @field_validator("spec")
    @classmethod
    def _has_containers(cls, value: dict[str, Any]) -> dict[str, Any]:
        containers = value.get("containers")
        if not isinstance(containers, list) or not containers:
            raise ValueError("the pod spec needs a non-empty containers list")
        for index, container in enumerate(containers):
            if not isinstance(container, dict):
                raise ValueError(f"containers[{index}] must be a mapping")
            for key in ("command", "args"):
                items = container.get(key)
                if items is not None and (
                    not isinstance(items, list) or not all(isinstance(i, str | int | float) for i in items)
                ):
                    raise ValueError(f"containers[{index}].{key} must be a list of strings")
        return value


class Metadata(BaseModel):
    """Kubernetes object metadata; fields set by the API server are kept as they are."""

    model_config = ConfigDict(extra="allow")

    name: str
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _dns_name(cls, value: str) -> str:
        if len(value) > MAX_EXPERIMENT_NAME or not EXPERIMENT_NAME.match(value):
            raise ValueError(
                f"name {value!r} must be at most {MAX_EXPERIMENT_NAME} lowercase letters, digits and '-', "
                "starting and ending with a letter or digit"
            )
        return value


class ExperimentSpec(_Model):
    """The desired search: space, objective, algorithm, limits and the trial template."""

    objective: Objective
    parameters: list[Parameter] = Field(min_length=1, description="The search space.")
    algorithm: Algorithm = Field(default_factory=Algorithm)
    seed: int | None = Field(default=None, ge=0, le=INT_LIMIT, description="Seed for reproducible suggestions.")
    parallelism: int = Field(default=1, ge=1, description="Trials running at once.")
    max_trials: int = Field(default=20, ge=1, description="Trials to run in total.")
    max_failed_trials: int = Field(
        default=3, ge=0, description="The experiment fails once more trials than this have failed."
    )
    suspend: bool = Field(default=False, description="Start no new trials while true.")
    trial_template: TrialTemplate

    @field_validator("parameters")
    @classmethod
    def _unique_names(cls, value: list[Parameter]) -> list[Parameter]:
        seen: set[str] = set()
        variables: dict[str, str] = {}
        for parameter in value:
            if parameter.name in seen:
                raise ValueError(f"parameter name {parameter.name!r} is used more than once")
            seen.add(parameter.name)
            variable = env_name(parameter.name)
            if variable in variables:
                raise ValueError(
                    f"parameters {variables[variable]!r} and {parameter.name!r} would both be passed to the "
                    f"trial as the environment variable {variable}; rename one of them"
                )
            variables[variable] = parameter.name
        return value


class Experiment(_Model):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel)

    api_version: Literal["kubetune.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Experiment"]
    metadata: Metadata
    spec: ExperimentSpec
    status: dict[str, Any] | None = Field(default=None, description="Written by kubetune.")

    @property
    def name(self) -> str:
        return self.metadata.name


def _num(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _value_key(value: Scalar) -> tuple[str, Scalar]:
    """Equality that keeps True apart from 1 and "1" apart from 1."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", float(value))
    return ("str", value)
