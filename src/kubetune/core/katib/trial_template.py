"""Katib's ``trialTemplate`` as kubetune's: the trial's pod spec, its placeholders, and what of the trial
resource cannot come along.

A kubetune trial is one Pod, so the pod spec is taken from the trial resource by kind (:data:`TRIAL_KINDS`): a
Job's pod template (its ``activeDeadlineSeconds`` and ``backoffLimit`` become ``timeoutSeconds`` and
``retries``), a Pod's spec, or the one replica of a Kubeflow training job that has only one; a distributed job,
an MPIJob, a workflow or a pipeline run is refused, since a kubetune trial cannot be several pods yet. Katib's
``${trialParameters.NAME}`` placeholders become ``${params.PARAMETER}`` (or ``${trial.id}``, or a constant),
the primary container becomes the first one (where kubetune reads metrics from), and its GPU limit becomes
``resources.gpu`` so the GPU-sharing modes apply.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from kubetune.core.katib.collectors import convert_collector
from kubetune.core.katib.notes import Context, Refused, items, known, mapping, number, text, whole
from kubetune.core.template import format_value

KATIB_PLACEHOLDER = re.compile(r"\$\{trialParameters\.([^}]*)\}")
METADATA_REFERENCE = re.compile(r"^\$\{trialSpec\.(Name|Namespace|Kind|APIVersion|Labels|Annotations)(?:\[(.+)\])?\}$")
GPU_RESOURCE = "nvidia.com/gpu"
SINGLE_POD = ("a kubetune trial is one pod (trial templates of several pods, such as Jobs of the training "
              "operator, are planned but not there yet)")
# Pod-spec fields of a Job that kubetune's trial template takes over: field -> (kubetune field, conversion).
JOB_FIELDS: dict[str, tuple[str, Callable[[Any, str], int]]] = {
    "activeDeadlineSeconds": ("timeoutSeconds", lambda value, path: whole(value, path, minimum=1)),
    "backoffLimit": ("retries", lambda value, path: whole(value, path, minimum=0)),
}


def convert_trial_template(ctx: Context) -> None:
    path = "spec.trialTemplate"
    template = mapping(ctx.katib.get("trialTemplate"), path)
    converted: dict[str, Any] = {}
    if template.get("configMap"):
        raise Refused(f"{path}.configMap", "the trial template lives in a ConfigMap, which convert does not read: "
                      "copy its trialSpec into spec.trialTemplate.trialSpec and convert again")
    trial_spec = mapping(template.get("trialSpec"), f"{path}.trialSpec")
    if not trial_spec:
        raise Refused(path, "needs a trialSpec (the trial's resource)")
    kind = trial_spec.get("kind")
    if not known(kind, TRIAL_KINDS):
        raise Refused(f"{path}.trialSpec.kind", f"a {kind} cannot be a trial: {SINGLE_POD}; kubetune converts a "
                      "Job, a Pod, or a training-operator job of one replica")
    pod = copy.deepcopy(TRIAL_KINDS[kind](ctx, trial_spec, f"{path}.trialSpec", converted))
    _primary_first(ctx, template, pod, path)
    _placeholders(ctx, template, trial_spec, pod, path)
    _restart_policy(ctx, pod, path)
    _gpu(pod, converted)
    _left_out(ctx, template, path)
    _retain(template, converted)
    converted["metricsCollector"] = convert_collector(ctx)
    converted["spec"] = pod
    ctx.spec["trialTemplate"] = converted


# -- the pod spec, by trial kind -------------------------------------------------------------------------------
def _job(ctx: Context, trial_spec: dict[str, Any], path: str, converted: dict[str, Any]) -> dict[str, Any]:
    job = mapping(trial_spec.get("spec"), f"{path}.spec")
    template = mapping(job.get("template"), f"{path}.spec.template")
    pod = mapping(template.get("spec"), f"{path}.spec.template.spec")
    left_out = [f"metadata.{key}" for key in ("labels", "annotations")
                if mapping(trial_spec.get("metadata"), f"{path}.metadata").get(key)]
    left_out += [f"spec.template.metadata.{key}"
                 for key in mapping(template.get("metadata"), f"{path}.spec.template.metadata")]
    taken = []
    for key, value in job.items():
        if key in JOB_FIELDS:
            field, convert = JOB_FIELDS[key]
            converted[field] = convert(value, f"{path}.spec.{key}")
            taken.append(f"spec.{key} became {field}")
        elif key != "template":
            left_out.append(f"spec.{key}")
    _deadline(pod, converted, f"{path}.spec.template.spec.activeDeadlineSeconds")
    said = [*taken]
    if left_out:
        said.append(f"left out: {', '.join(left_out)}")
        if any("metadata" in field for field in left_out):
            said.append("a trial pod's labels and annotations cannot be set yet (set what the pods need, such as "
                        "sidecar.istio.io/inject, on the namespace)")
    ctx.warn(f"{path}.kind", "each trial runs as a Pod made from the Job's pod template (kubetune has no Job trial "
             "templates yet)" + "".join(f"; {part}" for part in said))
    return _pod_spec(pod, f"{path}.spec.template.spec")


def _pod(ctx: Context, trial_spec: dict[str, Any], path: str, converted: dict[str, Any]) -> dict[str, Any]:
    pod = mapping(trial_spec.get("spec"), f"{path}.spec")
    _deadline(pod, converted, f"{path}.spec.activeDeadlineSeconds")
    metadata = mapping(trial_spec.get("metadata"), f"{path}.metadata")
    if metadata.get("labels") or metadata.get("annotations"):
        ctx.warn(f"{path}.metadata", "a trial pod's labels and annotations cannot be set yet; left out")
    return _pod_spec(pod, f"{path}.spec")


def _replicas(field: str) -> Callable[[Context, dict[str, Any], str, dict[str, Any]], dict[str, Any]]:
    """A Kubeflow training-operator job (``TFJob``, ``PyTorchJob``...): its one replica's pod, if it has one."""

    def pod(ctx: Context, trial_spec: dict[str, Any], path: str, converted: dict[str, Any]) -> dict[str, Any]:
        where = f"{path}.spec.{field}"
        roles = {role: mapping(spec, f"{where}.{role}") for role, spec in mapping(
            mapping(trial_spec.get("spec"), f"{path}.spec").get(field), where).items()}
        counts = {role: whole(spec.get("replicas", 1), f"{where}.{role}.replicas", minimum=0)
                  for role, spec in roles.items()}
        if sum(counts.values()) != 1:
            shown = ", ".join(f"{role} {n}" for role, n in counts.items()) or "none"
            raise Refused(where, f"{trial_spec.get('kind')} runs training across {sum(counts.values())} pods "
                          f"({shown}); {SINGLE_POD}. To tune it on one pod, keep one replica with replicas: 1 and "
                          "convert again")
        (role,) = [r for r, n in counts.items() if n == 1]
        template = mapping(roles[role].get("template"), f"{where}.{role}.template")
        ctx.warn(f"{path}.kind", f"the {role} replica's pod runs as the trial, without the training operator: "
                 "nothing sets TF_CONFIG, MASTER_ADDR, WORLD_SIZE or RANK, so the script must run as a single "
                 f"process; the rest of the {trial_spec.get('kind')} is left out ({SINGLE_POD})")
        return _pod_spec(mapping(template.get("spec"), f"{where}.{role}.template.spec"),
                         f"{where}.{role}.template.spec")

    return pod


def _refused(reason: str) -> Callable[[Context, dict[str, Any], str, dict[str, Any]], dict[str, Any]]:
    def refuse(ctx: Context, trial_spec: dict[str, Any], path: str, converted: dict[str, Any]) -> dict[str, Any]:
        raise Refused(f"{path}.kind", f"{reason}; {SINGLE_POD}")

    return refuse


TRIAL_KINDS: dict[str, Callable[[Context, dict[str, Any], str, dict[str, Any]], dict[str, Any]]] = {
    "Job": _job,
    "Pod": _pod,
    "TFJob": _replicas("tfReplicaSpecs"),
    "PyTorchJob": _replicas("pytorchReplicaSpecs"),
    "XGBoostJob": _replicas("xgbReplicaSpecs"),
    "MXJob": _replicas("mxReplicaSpecs"),
    "PaddleJob": _replicas("paddleReplicaSpecs"),
    "JAXJob": _replicas("jaxReplicaSpecs"),
    "MPIJob": _refused("an MPIJob's launcher runs mpirun across worker pods"),
    "TrainJob": _refused("a TrainJob names a training runtime rather than holding a pod template"),
    "Workflow": _refused("an Argo Workflow runs its steps as pods of their own"),
    "PipelineRun": _refused("a Tekton PipelineRun runs its tasks as pods of their own"),
}


def _pod_spec(pod: dict[str, Any], path: str) -> dict[str, Any]:
    if not items(pod.get("containers"), f"{path}.containers"):
        raise Refused(f"{path}.containers", "the trial's pod needs at least one container")
    return pod


def _deadline(pod: dict[str, Any], converted: dict[str, Any], path: str) -> None:
    if "activeDeadlineSeconds" in pod:
        deadline = whole(pod.pop("activeDeadlineSeconds"), path, minimum=1)
        converted["timeoutSeconds"] = min(deadline, converted.get("timeoutSeconds", deadline))


# -- inside the pod -------------------------------------------------------------------------------------------
def _primary_first(ctx: Context, template: dict[str, Any], pod: dict[str, Any], path: str) -> None:
    containers = pod["containers"]
    names = [c.get("name") if isinstance(c, dict) else None for c in containers]
    primary = template.get("primaryContainerName")
    if primary is None:
        ctx.warn(f"{path}.primaryContainerName", f"not given: kubetune reads metrics from the first container "
                 f"({names[0]})")
        return
    if primary not in names:
        raise Refused(f"{path}.primaryContainerName", f"no container of the trial's pod is named {primary!r} "
                      f"(containers: {', '.join(map(str, names))})")
    containers.insert(0, containers.pop(names.index(primary)))


def _placeholders(ctx: Context, template: dict[str, Any], trial_spec: dict[str, Any], pod: dict[str, Any],
                  path: str) -> None:
    """``${trialParameters.NAME}`` in every string of the pod spec becomes what NAME refers to."""
    replacements: dict[str, str] = {}
    for index, item in enumerate(items(template.get("trialParameters"), f"{path}.trialParameters")):
        where = f"{path}.trialParameters[{index}]"
        entry = mapping(item, where)
        name = text(entry.get("name"), f"{where}.name")
        replacements[name] = _replacement(ctx, text(entry.get("reference", ""), f"{where}.reference"),
                                          trial_spec, f"{where}.reference")
    unknown: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        if match.group(1) not in replacements:
            unknown.append(match.group(1))
            return match.group(0)
        return replacements[match.group(1)]

    pod.update(_each_string(pod, lambda value: KATIB_PLACEHOLDER.sub(substitute, value)))
    if unknown:
        raise Refused(f"{path}.trialSpec", f"references ${{trialParameters.{unknown[0]}}}, but trialParameters has "
                      f"no {unknown[0]!r} (it has {', '.join(replacements) or 'none'})")


def _replacement(ctx: Context, reference: str, trial_spec: dict[str, Any], path: str) -> str:
    if reference in ctx.constants:
        return format_value(ctx.constants[reference])
    if reference in ctx.names:
        return f"${{params.{ctx.names[reference]}}}"
    found = METADATA_REFERENCE.match(reference)
    if found is None:
        known = ", ".join(ctx.names) or "none"
        raise Refused(path, f"{reference!r} is neither a parameter (parameters: {known}) nor a trial metadata "
                      "reference such as ${trialSpec.Name}")
    field, key = found.groups()
    return METADATA[field](ctx, trial_spec, key, path)


def _namespace(ctx: Context, trial_spec: dict[str, Any], key: str | None, path: str) -> str:
    if not ctx.namespace:
        raise Refused(path, "${trialSpec.Namespace} needs metadata.namespace, which the Experiment does not give")
    return ctx.namespace


def _what_runs(value: str) -> Callable[[Context, dict[str, Any], str | None, str], str]:
    def literal(ctx: Context, trial_spec: dict[str, Any], key: str | None, path: str) -> str:
        ctx.warn(path, f"a kubetune trial is a Pod, so this is {value!r}")
        return value

    return literal


def _metadata_value(field: str) -> Callable[[Context, dict[str, Any], str | None, str], str]:
    def value(ctx: Context, trial_spec: dict[str, Any], key: str | None, path: str) -> str:
        values = mapping(mapping(trial_spec.get("metadata"), "spec.trialTemplate.trialSpec.metadata").get(field),
                         f"spec.trialTemplate.trialSpec.metadata.{field}")
        if key not in values:
            raise Refused(path, f"the trial's {field} have no {key!r}")
        return str(values[key])

    return value


METADATA: dict[str, Callable[[Context, dict[str, Any], str | None, str], str]] = {
    "Name": lambda *_: "${trial.id}",
    "Namespace": _namespace,
    "Kind": _what_runs("Pod"),
    "APIVersion": _what_runs("v1"),
    "Labels": _metadata_value("labels"),
    "Annotations": _metadata_value("annotations"),
}


def _each_string(node: Any, change: Callable[[str], str]) -> Any:
    if isinstance(node, str):
        return change(node)
    if isinstance(node, dict):
        return {key: _each_string(value, change) for key, value in node.items()}
    if isinstance(node, list):
        return [_each_string(value, change) for value in node]
    return node


def _restart_policy(ctx: Context, pod: dict[str, Any], path: str) -> None:
    if pod.get("restartPolicy") not in (None, "Never"):
        ctx.warn(f"{path}.trialSpec", f"restartPolicy {pod.pop('restartPolicy')} is left out: kubetune runs each "
                 "attempt once and retries a failed trial in a new pod (trialTemplate.retries)")


def _gpu(pod: dict[str, Any], converted: dict[str, Any]) -> None:
    """The primary container's GPU limit as ``resources.gpu``, so kubetune places it (GPU-sharing modes, local
    packing) instead of passing it through."""
    container = pod["containers"][0]
    resources = container.get("resources") if isinstance(container, dict) else None
    if not isinstance(resources, dict):
        return
    gpus = [part.pop(GPU_RESOURCE) for part in (resources.get("limits"), resources.get("requests"))
            if isinstance(part, dict) and GPU_RESOURCE in part]
    if gpus:
        converted["resources"] = {"gpu": number(gpus[0], "spec.trialTemplate.trialSpec (nvidia.com/gpu)")}
    for part in ("limits", "requests"):
        if resources.get(part) == {}:
            del resources[part]
    if not resources:
        del container["resources"]


# Fields of Katib's trialTemplate with no kubetune counterpart, and why.
LEFT_OUT = {
    "successCondition": "kubetune judges a trial by its pod: exit 0 with the objective reported is Succeeded",
    "failureCondition": "kubetune judges a trial by its pod: a non-zero exit is Failed",
    "primaryPodLabels": "a kubetune trial is one pod, so there is no primary pod to pick",
}


def _left_out(ctx: Context, template: dict[str, Any], path: str) -> None:
    for field, reason in LEFT_OUT.items():
        if template.get(field):
            ctx.warn(f"{path}.{field}", f"left out: {reason}")

def _retain(template: dict[str, Any], converted: dict[str, Any]) -> None:
    """Katib deletes a finished trial's workload unless ``retain`` is true; kubetune's default keeps the
    pods of failed trials only."""
    if template.get("retain") is True:
        converted["retain"] = "all"
