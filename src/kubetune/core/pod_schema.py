"""``trialTemplate.spec`` checked against Kubernetes' own PodSpec schema (strict: unknown fields such as
``comand`` are errors), with kubernetes-validate, the published JSON schemas of every Kubernetes release. The
CRD cannot hold that schema (the embedded PodSpec keeps unknown fields), so without this check a mistake inside
the template would only show when the API server refuses the first pod.

kubernetes-validate is the ``schema`` extra (its schemas weigh about 100 MB, too much for the base install a
trial image needs): without it, :func:`pod_template_problems` returns None, and ``kubetune validate`` says the
template was not checked. The manifest loader runs the check, so the CLI, the runners and the operator refuse
the same templates.
"""

from __future__ import annotations

import functools
from typing import Any

from kubetune.core.errors import Problem, format_path
from kubetune.core.spec import ExperimentSpec

TEMPLATE_PATH = ["spec", "trialTemplate", "spec"]
MAX_PROBLEMS = 5


def pod_template_problems(spec: ExperimentSpec) -> list[Problem] | None:
    """What kube-apiserver's schema finds wrong in a trial's pod spec (placeholders still in their strings), at
    most a few problems; None when kubernetes-validate is not installed."""
    checker = _checker()
    if checker is None:
        return None
    validator, version = checker
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "trial"}, "spec": spec.trial_template.spec}
    errors = sorted(validator.iter_errors(pod), key=lambda error: list(map(str, error.path)))
    return [Problem(format_path([*TEMPLATE_PATH, *list(error.path)[1:]]),  # the path below the pod's "spec"
                    f"{_plain(error.message)} (the Kubernetes {version} PodSpec)") for error in errors[:MAX_PROBLEMS]]


def cluster_only_problems(spec: ExperimentSpec) -> list[Problem]:
    """What the schema allows but kube-apiserver refuses when it creates a pod, and a local run does not need:
    a container without an image."""
    containers = spec.trial_template.spec.get("containers") or []
    return [Problem(format_path([*TEMPLATE_PATH, "containers", index, "image"]), "a cluster refuses a container "
                    "without an image (a local run does not need one)")
            for index, container in enumerate(containers) if isinstance(container, dict) and not container.get("image")]


def schema_version() -> str | None:
    """The Kubernetes release whose PodSpec the templates are checked against; None without the extra."""
    checker = _checker()
    return None if checker is None else checker[1]


@functools.cache
def _checker() -> tuple[Any, str] | None:
    """A validator of Pods against kubernetes-validate's strict schema of its latest release, built once (the
    library's own validate() reads the schema files again on every call)."""
    try:
        import jsonschema
        import kubernetes_validate
        from kubernetes_validate.utils import schema_contents
        from referencing import Registry, Resource
    except ImportError:
        return None
    version = kubernetes_validate.latest_version()
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    pod, definitions = (schema_contents(f"{folder}/{name}.json", version) for name in ("pod-v1", "_definitions"))
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(pod) @ Registry())
    return jsonschema.Draft202012Validator(pod, registry=registry), version


def _plain(message: str) -> str:
    """jsonschema's wording, as a manifest's author reads it."""
    if message.startswith("Additional properties are not allowed"):
        unexpected = message.split("(", 1)[-1].split(" was unexpected")[0].split(" were unexpected")[0]
        return f"unknown field {unexpected}"
    if message.endswith("is a required property"):
        return f"required field {message.removesuffix(' is a required property')} is missing"
    return message
