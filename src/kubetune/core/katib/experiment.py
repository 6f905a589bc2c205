"""A Katib ``kubeflow.org/v1beta1`` Experiment as a kubetune Experiment: the objective, the limits, the resume
policy and the metadata here; the algorithm, parameters and trial template in their own modules. The result
is checked by the manifest loader, so a conversion that is not refused is a manifest ``kubetune validate``
accepts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubetune.core.errors import ManifestError
from kubetune.core.katib.algorithms import convert_algorithm, convert_early_stopping
from kubetune.core.katib.notes import Context, Conversion, Note, Refused, decimal, items, known, mapping, text, whole
from kubetune.core.katib.parameters import convert_parameters
from kubetune.core.katib.trial_template import convert_trial_template
from kubetune.core.manifest import load_experiment, local_run_problems

KATIB_API = "kubeflow.org/v1beta1"
DIRECTIONS = ("minimize", "maximize")
# Katib's default metric strategy for a metric it was not given one for (additional metrics too).
DEFAULT_STRATEGY = {"minimize": "min", "maximize": "max"}
RESUME_POLICIES = {
    "Never": "kubetune has no resume policy: it rebuilds the search from the Experiment's Trials, so any "
             "experiment may go on when maxTrials is raised; that cannot be turned off",
    "LongRunning": "kubetune keeps no suggestion service running: it rebuilds the search from the Experiment's "
                   "Trials, so the experiment may always go on when maxTrials is raised",
    "FromVolume": "kubetune keeps no suggestion state in a volume: it rebuilds the search from the Experiment's "
                  "Trials, so the experiment may always go on when maxTrials is raised",
}
# Metadata that the API server sets, which a manifest leaves out.
SERVER_SET = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink",
              "deletionTimestamp", "deletionGracePeriodSeconds", "finalizers", "ownerReferences")
APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def convert_objective(ctx: Context) -> None:
    path = "spec.objective"
    objective = mapping(ctx.katib.get("objective"), path)
    direction = objective.get("type")
    if direction not in DIRECTIONS:
        raise Refused(f"{path}.type", f"must be minimize or maximize, got {direction!r}")
    metric = text(objective.get("objectiveMetricName", ""), f"{path}.objectiveMetricName")
    if not metric.strip():
        raise Refused(f"{path}.objectiveMetricName", "the objective needs a metric name")
    additional = [text(m, f"{path}.additionalMetricNames[{i}]")
                  for i, m in enumerate(items(objective.get("additionalMetricNames"), f"{path}.additionalMetricNames"))]
    strategies = _strategies(ctx, objective, path)
    converted: dict[str, Any] = {"metric": metric, "direction": direction}
    if objective.get("goal") is not None:
        converted["target"] = float(decimal(objective["goal"], f"{path}.goal"))
    if additional:
        converted["additionalMetrics"] = additional
    converted["strategy"] = strategies.get(metric, DEFAULT_STRATEGY[direction])
    ctx.spec["objective"] = converted
    not_latest = [m for m in additional if strategies.get(m, DEFAULT_STRATEGY[direction]) != "latest"]
    if not_latest:
        recorded = ", ".join(f"{m} by {strategies.get(m, DEFAULT_STRATEGY[direction])}" for m in not_latest)
        default = " (by default Katib takes the objective's direction)" if set(not_latest) - set(strategies) else ""
        ctx.warn(f"{path}.metricStrategies", f"kubetune records the latest value of additional metrics; Katib "
                 f"recorded {recorded}{default}")


def _strategies(ctx: Context, objective: dict[str, Any], path: str) -> dict[str, str]:
    found = {}
    for index, item in enumerate(items(objective.get("metricStrategies"), f"{path}.metricStrategies")):
        where = f"{path}.metricStrategies[{index}]"
        entry = mapping(item, where)
        value = entry.get("value")
        if value not in ("min", "max", "latest"):
            raise Refused(f"{where}.value", f"must be min, max or latest, got {value!r}")
        found[text(entry.get("name"), f"{where}.name")] = value
    return found


def convert_limits(ctx: Context) -> None:
    """parallelTrialCount, maxTrialCount, maxFailedTrialCount (Katib fails the experiment once more trials than
    that have failed, as kubetune does)."""
    katib = ctx.katib
    ctx.spec["parallelism"] = whole(katib.get("parallelTrialCount", 3), "spec.parallelTrialCount", minimum=1)
    if katib.get("maxTrialCount") is not None:
        ctx.spec["maxTrials"] = whole(katib["maxTrialCount"], "spec.maxTrialCount", minimum=1)
    else:
        ctx.warn("spec.maxTrialCount", "not given: Katib ran until the goal or the end of the search; kubetune stops "
                 "at maxTrials, 20 unless set")
    if katib.get("maxFailedTrialCount") is not None:
        ctx.spec["maxFailedTrials"] = whole(katib["maxFailedTrialCount"], "spec.maxFailedTrialCount", minimum=0)
    elif "maxTrials" in ctx.spec:  # Katib's experiment never failed for failed trials
        ctx.spec["maxFailedTrials"] = ctx.spec["maxTrials"]


def convert_resume_policy(ctx: Context) -> None:
    policy = ctx.katib.get("resumePolicy")
    if policy is None:
        return
    if not known(policy, RESUME_POLICIES):
        raise Refused("spec.resumePolicy", f"must be one of {', '.join(RESUME_POLICIES)}, got {policy!r}")
    ctx.warn("spec.resumePolicy", f"left out: {RESUME_POLICIES[policy]}")


KATIB_FIELDS = ("parameters", "objective", "algorithm", "trialTemplate", "parallelTrialCount", "maxTrialCount",
                "maxFailedTrialCount", "metricsCollectorSpec", "nasConfig", "resumePolicy", "earlyStopping")


def note_other_fields(ctx: Context) -> None:
    for key in ctx.katib:
        if key == "nasConfig":
            ctx.warn("spec.nasConfig", "is for Katib's neural-architecture searches (enas, darts); left out")
        elif key not in KATIB_FIELDS:
            ctx.warn(f"spec.{key}", "is not a field of Katib's v1beta1 Experiment; left out")


# The steps in order: the algorithm may fix a parameter (hyperband's resource) and set early stopping; the
# trial template reads the parameters' names and the objective's metrics.
STEPS: list[Callable[[Context], None]] = [convert_algorithm, convert_parameters, convert_objective,
                                          convert_early_stopping, convert_limits, convert_resume_policy,
                                          convert_trial_template, note_other_fields]
SPEC_ORDER = ("objective", "parameters", "algorithm", "seed", "parallelism", "maxTrials", "maxFailedTrials",
              "earlyStopping", "trialTemplate")


def convert_experiment(document: dict[str, Any]) -> Conversion:
    """A Katib Experiment (a parsed document) as a kubetune one, with a note for each field not carried over."""
    try:
        metadata = _metadata(document)
        katib = mapping(document.get("spec"), "spec")
    except Refused as refused:
        return Conversion(None, [refused.note])
    ctx = Context(katib, metadata.get("namespace"))
    for step in STEPS:
        try:
            step(ctx)
        except Refused as refused:
            ctx.notes.append(refused.note)
            if refused.final:
                break
    if any(note.refusal for note in ctx.notes):
        return Conversion(None, ctx.notes, metadata["name"])
    spec = {key: ctx.spec[key] for key in SPEC_ORDER if key in ctx.spec}
    manifest = {"apiVersion": "kubetune.io/v1alpha1", "kind": "Experiment", "metadata": metadata, "spec": spec}
    return _checked(Conversion(manifest, ctx.notes, metadata["name"]))


def _metadata(document: dict[str, Any]) -> dict[str, Any]:
    if document.get("apiVersion") != KATIB_API:
        raise Refused("apiVersion", f"convert reads Katib's {KATIB_API} Experiments, got "
                      f"{document.get('apiVersion')!r}", final=True)
    given = mapping(document.get("metadata"), "metadata")
    name = text(given.get("name", ""), "metadata.name")
    if not name:
        raise Refused("metadata.name", "the Experiment needs a name")
    metadata: dict[str, Any] = {"name": name}
    if given.get("namespace"):
        metadata["namespace"] = text(given["namespace"], "metadata.namespace")
    for key in ("labels", "annotations"):
        values = {k: v for k, v in mapping(given.get(key), f"metadata.{key}").items() if k != APPLIED}
        if values:
            metadata[key] = values
    return metadata


def _checked(conversion: Conversion) -> Conversion:
    """The conversion, refused when the manifest loader refuses what it made; the local-run warnings added."""
    assert conversion.manifest is not None
    try:
        experiment = load_experiment(conversion.manifest)
    except ManifestError as error:
        notes = [Note("", f"the converted Experiment is not valid: {problem}", refusal=True)
                 for problem in error.problems]
        return Conversion(None, [*conversion.notes, *notes], conversion.name)
    for problem in local_run_problems(experiment.spec):
        conversion.notes.append(Note("", f"{problem} (kubetune run refuses it; a cluster runs the image's entrypoint)"))
    return conversion

