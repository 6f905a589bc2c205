"""Loading an Experiment manifest: YAML or a dict in, a validated :class:`Experiment` or a
:class:`ManifestError` listing every problem out.

Per-field checks live on the pydantic models; the checks here span fields: every placeholder of the trial
template and the metrics file's path is one kubetune knows (:func:`kubetune.core.template.placeholder_problems`),
and the algorithm's settings fit the algorithm and the space. Command-line overrides are applied before
validation, so they are checked like the fields they replace. :func:`local_run_problems` is the one rule
that only running trials as local processes adds."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kubetune.core.engine.registry import parse_settings
from kubetune.core.errors import ManifestError, Problem, format_path, problems_from_validation
from kubetune.core.spec import Experiment, ExperimentSpec
from kubetune.core.stopping.registry import parse_settings as stopping_settings
from kubetune.core.template import placeholder_problems


def load_experiment_file(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Experiment:
    """Reads and validates a manifest file; ``overrides`` replace fields of its ``spec`` (by their manifest
    names, such as ``maxTrials``) before validation, so an override is checked like the field itself."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError([Problem("", f"cannot read the manifest: {exc.strerror or exc}")], str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = f"the manifest is not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start} cannot be read"
        raise ManifestError([Problem("", problem)], str(path)) from None
    return load_experiment_text(text, source=str(path), overrides=overrides)


def load_experiment_text(text: str, source: str | None = None,
                         overrides: Mapping[str, Any] | None = None) -> Experiment:
    try:
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except RecursionError:
        raise ManifestError([Problem("", "not valid YAML: nested too deeply")], source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise ManifestError([Problem("", f"not valid YAML: {where}{reason}")], source) from None
    experiments = [d for d in documents if isinstance(d, dict) and d.get("kind") == "Experiment"]
    if len(documents) == 1:
        return load_experiment(documents[0], source, overrides)
    if len(experiments) != 1:
        raise ManifestError(
            [Problem("", f"expected one Experiment document, found {len(experiments)}")], source
        )
    return load_experiment(experiments[0], source, overrides)


def load_experiment(document: Any, source: str | None = None,
                    overrides: Mapping[str, Any] | None = None) -> Experiment:
    """Validates a manifest given as a dict (a parsed YAML document or a Kubernetes object)."""
    if not isinstance(document, dict):
        raise ManifestError([Problem("", "the manifest must be a mapping (an Experiment object)")], source)
    if overrides:
        spec = document.get("spec")
        document = {**document, "spec": {**spec, **overrides} if isinstance(spec, dict) else spec}
    try:
        experiment = Experiment.model_validate(document)
    except ValidationError as exc:
        raise ManifestError(problems_from_validation(exc), source) from None
    problems = list(cross_check(experiment.spec))
    if problems:
        raise ManifestError(problems, source)
    return experiment


def cross_check(spec: ExperimentSpec) -> Iterator[Problem]:
    """Problems that involve more than one field of an otherwise well-formed spec."""
    defined = {p.name for p in spec.parameters}
    template = spec.trial_template
    strings = list(_template_strings(template.spec, ["spec", "trialTemplate", "spec"]))
    if template.metrics_collector.path:
        strings.append((["spec", "trialTemplate", "metricsCollector", "path"], template.metrics_collector.path))
    for loc, text in strings:
        for message in placeholder_problems(text, defined):
            yield Problem(format_path(loc), message)
    yield from _early_stopping_problems(spec)
    algorithm = spec.algorithm
    try:
        settings = parse_settings(algorithm.name, algorithm.settings)
    except ValidationError as exc:
        yield from problems_from_validation(exc, ["spec", "algorithm", "settings"])
        return
    if algorithm.name == "grid":
        default_steps = getattr(settings, "steps", None)
        for index, parameter in enumerate(spec.parameters):
            try:
                parameter.axis(default_steps)
            except ValueError as exc:
                yield Problem(f"spec.parameters[{index}]",
                              f"{exc}: set steps on the parameter or in spec.algorithm.settings")


def _early_stopping_problems(spec: ExperimentSpec) -> Iterator[Problem]:
    stopping = spec.early_stopping
    if not stopping.enabled:
        if stopping.settings:
            yield Problem("spec.earlyStopping.settings", "settings are given but no rule (rule: none)")
        return
    try:
        stopping_settings(stopping.rule, stopping.settings)
    except ValidationError as exc:
        yield from problems_from_validation(exc, ["spec", "earlyStopping", "settings"])
    if stopping.resource == spec.objective.metric:
        yield Problem("spec.earlyStopping.resource", "the resource must be a field other than the objective "
                      f"metric ({spec.objective.metric!r})")


def _template_strings(node: Any, loc: list[str | int]) -> Iterator[tuple[list[str | int], str]]:
    if isinstance(node, str):
        yield loc, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _template_strings(value, [*loc, key])
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _template_strings(value, [*loc, index])


LOCAL_COMMAND_PATH = "spec.trialTemplate.spec.containers[0].command"


def local_run_problems(spec: ExperimentSpec) -> list[Problem]:
    """What keeps a valid experiment from running as local processes (``kubetune run``) although a cluster
    could run it: the first container must have a ``command``, since only a cluster knows the image's
    entrypoint. ``kubetune validate`` reports these as warnings and the local runner refuses to start."""
    container = spec.trial_template.spec["containers"][0]
    if container.get("command"):
        return []
    return [Problem(LOCAL_COMMAND_PATH, "locally the first container needs a command to run (the image's "
                    "entrypoint is not known without a cluster)")]
