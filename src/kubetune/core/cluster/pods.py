"""A trial's Pod, rendered as a plain dict from the experiment's ``trialTemplate``.

The same placeholders and environment variables as a local run (:mod:`kubetune.core.template`), plus what
a cluster needs: ``restartPolicy: Never`` (a retry is a new pod, counted by the operator),
``activeDeadlineSeconds`` from ``timeoutSeconds``, the ``kubetune.io/experiment`` and ``kubetune.io/trial``
labels, the CPU and memory requests, the GPU request translated by :mod:`kubetune.core.cluster.gpu_sharing`, and the
Pod Security Standard "restricted" settings wherever the template leaves them unset.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from kubetune.core.cluster.gpu_sharing import GpuPlacement, GpuSharing, place
from kubetune.core.lifecycle import TrialState, trial_name
from kubetune.core.space import Space
from kubetune.core.spec import Experiment, Resources
from kubetune.core.template import substitute_all, trial_environment

EXPERIMENT_LABEL = "kubetune.io/experiment"
TRIAL_LABEL = "kubetune.io/trial"
ATTEMPT_LABEL = "kubetune.io/attempt"


REPORT_URL_VARIABLE = "KUBETUNE_REPORT_URL"
REPORT_TOKEN_VARIABLE = "KUBETUNE_REPORT_TOKEN"
NAMESPACE_VARIABLE = "KUBETUNE_NAMESPACE"


@dataclass(frozen=True)
class ReportTarget:
    """Where a trial pushes its intermediate reports: the operator's report endpoint and the token that
    authorises this attempt (computed by the operator, which holds the key)."""

    url: str
    token: str


def keeps_pods(retain: str, state: TrialState) -> bool:
    """Whether an ended trial in ``state`` keeps its pods under ``trialTemplate.retain``."""
    return retain == "all" or (retain == "failed" and state.is_failure)


def pod_name(trial: str, attempt: int) -> str:
    """The first attempt's pod carries the trial's name; retries add ``-r<attempt>``."""
    return trial if attempt <= 1 else f"{trial}-r{attempt}"


# Pod Security Standard "restricted", as the operator itself runs. Each key applies unless the experiment's pod
# spec sets it (so ``runAsUser: 1000`` or ``runAsNonRoot: false`` there wins); a non-root UID is given
# because many training images (the official python ones among them) would otherwise start as root and be
# refused by runAsNonRoot.
RESTRICTED_POD_SECURITY: dict[str, Any] = {
    "runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
}


def with_defaults(given: dict[str, Any] | None, defaults: dict[str, Any]) -> dict[str, Any]:
    return {**copy.deepcopy(defaults), **(given or {})}


def render_pod(
    experiment: Experiment,
    trial: str,
    params: dict[str, Any],
    sharing: GpuSharing,
    attempt: int = 1,
    owner: dict[str, Any] | None = None,
    report: ReportTarget | None = None,
) -> dict[str, Any]:
    """The Pod for one attempt of ``trial``. ``owner`` is an ownerReference (the Trial); ``report``, where
    the trial's intermediate values are pushed (the operator's endpoint and this attempt's token)."""
    template = experiment.spec.trial_template
    pod_spec = substitute_all(copy.deepcopy(template.spec), params, trial, experiment.name)
    pod_spec["restartPolicy"] = "Never"
    if template.timeout_seconds:
        pod_spec["activeDeadlineSeconds"] = template.timeout_seconds
    environment = trial_environment(params, trial, experiment.name, template.resources.gpu)
    if report is not None:
        environment.update({REPORT_URL_VARIABLE: report.url, REPORT_TOKEN_VARIABLE: report.token,
                            NAMESPACE_VARIABLE: experiment.metadata.namespace or "default"})
    _set_environment(pod_spec, environment)
    placement = place(template.resources.gpu, sharing.for_experiment(experiment.metadata.annotations))
    _set_resources(pod_spec["containers"][0], template.resources, placement)
    if placement.scheduler_name:
        pod_spec["schedulerName"] = placement.scheduler_name
    _restrict(pod_spec)
    metadata: dict[str, Any] = {
        "name": pod_name(trial, attempt),
        "labels": {EXPERIMENT_LABEL: experiment.name, TRIAL_LABEL: trial, ATTEMPT_LABEL: str(attempt),
                   **placement.labels},
    }
    if experiment.metadata.namespace:
        metadata["namespace"] = experiment.metadata.namespace
    if placement.annotations:
        metadata["annotations"] = dict(placement.annotations)
    if owner:
        metadata["ownerReferences"] = [owner]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


def first_pod(experiment: Experiment, sharing: GpuSharing) -> dict[str, Any]:
    """The pod of the experiment's first trial, at the centre of its space (no owner: the Trial does not exist
    yet): what the API server is asked to validate and admit, in a dry run, before any trial is created."""
    space = Space(experiment.spec.parameters)
    params = space.decode(np.full(space.n_columns, 0.5))
    return render_pod(experiment, trial_name(experiment.name, 0), params, sharing)


def _set_environment(pod_spec: dict[str, Any], variables: dict[str, str]) -> None:
    """Gives every container the trial's variables, in place of any of the same name the template sets."""
    environment = [{"name": k, "value": v} for k, v in variables.items()]
    for container in pod_spec["containers"]:
        known = {e["name"] for e in environment}
        container["env"] = [e for e in container.get("env") or [] if e.get("name") not in known] + environment


def _set_resources(container: dict[str, Any], resources: Resources, placement: GpuPlacement) -> None:
    """The trial's CPU and memory requests (unless the template sets them) and its GPU limits."""
    given = container.setdefault("resources", {})
    requests = given.setdefault("requests", {})
    if resources.cpu is not None:
        requests.setdefault("cpu", str(resources.cpu))
    if resources.memory is not None:
        requests.setdefault("memory", str(resources.memory))
    if placement.limits:
        given.setdefault("limits", {}).update({k: str(v) for k, v in placement.limits.items()})
    if not requests:
        del given["requests"]
    if not given:
        del container["resources"]


def _restrict(pod_spec: dict[str, Any]) -> None:
    """The restricted Pod Security settings, under those the template sets."""
    pod_spec["securityContext"] = with_defaults(pod_spec.get("securityContext"), RESTRICTED_POD_SECURITY)
    for container in pod_spec["containers"] + pod_spec.get("initContainers", []):
        container["securityContext"] = with_defaults(container.get("securityContext"),
                                                     RESTRICTED_CONTAINER_SECURITY)
