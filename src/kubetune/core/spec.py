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

from kubetune.core.manifest_model import JSON_INT_LIMIT, ManifestModel
from kubetune.core.parameters import Parameter
from kubetune.core.template import env_name

# Trial names are "<experiment>-<n>" and end up in label values (at most 63 characters).
EXPERIMENT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_EXPERIMENT_NAME = 50
QUANTITY = re.compile(r"^[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[numkKMGTPE]i?|Ki|Mi|Gi|Ti|Pi|Ei)?$")


class Objective(ManifestModel):
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


class Algorithm(ManifestModel):
    """The search strategy and its settings."""

    name: str = Field(
        default="gp", description="Search strategy, one of the registered algorithms (gp, the default: an "
        "asynchronous constant-liar Gaussian process).",
        json_schema_extra=lambda schema: schema.update(enum=[*algorithm_names()]),
    )
    settings: dict[str, Any] = Field(default_factory=dict, description="Algorithm-specific settings.")

    @field_validator("name")
    @classmethod
    def _registered(cls, value: str) -> str:
        names = algorithm_names()
        if value not in names:
            raise ValueError(f"unknown algorithm {value!r}; choose one of {', '.join(map(repr, names))}")
        return value


class EarlyStopping(ManifestModel):
    """Stopping hopeless trials early, from the values they report while they run."""

    rule: str = Field(default="none", description="none (the default), median or asha.",
                      json_schema_extra=lambda schema: schema.update(enum=["none", *rule_names()]))
    resource: str = Field(default="step", description="The reported field that measures a trial's progress.")
    settings: dict[str, Any] = Field(default_factory=dict, description="The rule's settings (median: "
                                     "minTrialsRequired, startStep; asha: minResource, maxResource, reductionFactor).")

    @field_validator("rule")
    @classmethod
    def _registered(cls, value: str) -> str:
        names = ["none", *rule_names()]
        if value not in names:
            raise ValueError(f"unknown early-stopping rule {value!r}; choose one of {', '.join(map(repr, names))}")
        return value

    @field_validator("resource")
    @classmethod
    def _resource_named(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the resource field name must not be empty")
        return value.strip()

    @property
    def enabled(self) -> bool:
        return self.rule != "none"


def rule_names() -> list[str]:
    from kubetune.core.stopping.registry import RULES

    return list(RULES)


def algorithm_names() -> list[str]:
    """The algorithms of :mod:`kubetune.core.engine.registry` (imported here on use: the registry's
    strategies import the search space, which imports this module)."""
    from kubetune.core.engine.registry import ALGORITHMS

    return list(ALGORITHMS)


class Resources(ManifestModel):
    """What one trial needs."""

    # Quantities are an integer or a string, as in every CRD (x-kubernetes-int-or-string): "500m" or "0.5".
    cpu: str | int | None = Field(default=None, description="CPU request, a Kubernetes quantity: 2, \"500m\" or "
                                  "\"0.5\".")
    memory: str | int | None = Field(default=None, description="Memory request, a Kubernetes quantity: \"1Gi\".")
    gpu: float = Field(
        default=0, ge=0, allow_inf_nan=False,
        description="GPUs per trial; a fraction below 1 shares a GPU, above 1 whole GPUs.",
    )

    @field_validator("cpu", "memory", mode="before")
    @classmethod
    def _whole_or_text(cls, value: object) -> object:
        if isinstance(value, float):
            raise ValueError(f"a quantity is an integer or a string: write {str(value)!r} in quotes, or in "
                             "millicores such as '500m'")
        return value

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, value: str | int | None) -> str | int | None:
        if value is not None and not QUANTITY.match(str(value)):
            raise ValueError(f"{value!r} is not a Kubernetes quantity (for example 500m, 2, 1Gi)")
        return value

    @field_validator("gpu")
    @classmethod
    def _gpu_amount(cls, value: float) -> float:
        if value > 1 and value != int(value):
            raise ValueError(f"a GPU request above 1 must be a whole number of GPUs, got {value}")
        return value


class MetricsCollector(ManifestModel):
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


class TrialTemplate(ManifestModel):
    """How each trial runs."""

    timeout_seconds: int | None = Field(
        default=None, gt=0, le=JSON_INT_LIMIT, description="Kill a trial running longer."
    )
    retries: int = Field(
        default=0, ge=0, le=JSON_INT_LIMIT, description="Re-runs of a failed trial before it counts as failed."
    )
    resources: Resources = Field(default_factory=Resources)
    metrics_collector: MetricsCollector = Field(default_factory=MetricsCollector)
    retain: Literal["all", "failed", "none"] = Field(
        default="failed",
        description="On a cluster, which ended trials keep their pods (and the pods' logs) once their result is "
        "recorded: all, failed (the default: the pods of trials that failed or reported no metric stay for "
        "debugging, the others go, so thousands of finished pods do not weigh on etcd) or none. Pods of trials "
        "the operator stops (early stopping, the experiment's end) are deleted whatever it says.",
    )
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


class ExperimentSpec(ManifestModel):
    """The desired search: space, objective, algorithm, limits and the trial template."""

    objective: Objective
    parameters: list[Parameter] = Field(min_length=1, description="The search space.")
    algorithm: Algorithm = Field(default_factory=Algorithm)
    seed: int | None = Field(
        default=None, ge=0, le=JSON_INT_LIMIT, description="Seed for reproducible suggestions."
    )
    parallelism: int = Field(default=1, ge=1, le=JSON_INT_LIMIT, description="Trials running at once.")
    max_trials: int = Field(default=20, ge=1, le=JSON_INT_LIMIT, description="Trials to run in total.")
    max_failed_trials: int = Field(
        default=3, ge=0, le=JSON_INT_LIMIT, description="The experiment fails once more trials than this have failed."
    )
    suspend: bool = Field(default=False, description="Start no new trials while true.")
    early_stopping: EarlyStopping = Field(default_factory=EarlyStopping)
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


class Experiment(ManifestModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel)

    api_version: Literal["kubetune.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Experiment"]
    metadata: Metadata
    spec: ExperimentSpec
    status: dict[str, Any] | None = Field(default=None, description="Written by kubetune.")

    @property
    def name(self) -> str:
        return self.metadata.name
