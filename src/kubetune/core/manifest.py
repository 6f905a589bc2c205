"""Loading an Experiment manifest: YAML or a dict in, a validated :class:`Experiment` or a
:class:`ManifestError` listing every problem out.

Per-field checks live on the pydantic models; the checks here span fields: every placeholder of the trial
template and the metrics file's path is one kubetune knows (:func:`kubetune.core.template.placeholder_problems`),
and the algorithm's settings fit the algorithm and the space. Command-line overrides are applied before
validation, so they are checked like the fields they replace. :func:`local_run_problems` is the one rule
that only running trials as local processes adds."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kubetune.core.engine.registry import ALGORITHMS, parse_settings
from kubetune.core.errors import ManifestError, Problem, format_path, problems_from_validation
from kubetune.core.pod_schema import pod_template_problems
from kubetune.core.space import Space
from kubetune.core.spec import Experiment, ExperimentSpec
from kubetune.core.stopping.registry import parse_settings as stopping_settings
from kubetune.core.template import placeholder_problems

# A manifest is a Kubernetes object, which etcd keeps to 1.5 MiB; reading stops past this, so that endless
# input (/dev/zero, a pipe that never closes its end) is refused instead of filling memory.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# Problems named at most, of one kind, in strings no manifest can hold.
MAX_TEXT_PROBLEMS = 10


def load_experiment_file(path: str | Path, overrides: Mapping[str, Any] | None = None) -> Experiment:
    """Reads and validates a manifest file; ``overrides`` replace fields of its ``spec`` (by their manifest
    names, such as ``maxTrials``) before validation, so an override is checked like the field itself."""
    path = Path(path)
    try:
        raw = read_limited(path)
    except (OSError, ValueError) as exc:  # ValueError: too large, or a NUL in the path
        reason = getattr(exc, "strerror", None) or exc
        raise ManifestError([Problem("", f"cannot read the manifest: {reason}")], str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = f"the manifest is not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset {exc.start} cannot be read"
        raise ManifestError([Problem("", problem)], str(path)) from None
    return load_experiment_text(text, source=str(path), overrides=overrides)


def read_limited(path: Path, limit: int = MAX_MANIFEST_BYTES) -> bytes:
    """A file the user hands kubetune (a manifest, a Ray runtime env), read to at most ``limit`` bytes: raises
    ValueError when there is more, OSError when it cannot be read."""
    with path.open("rb") as file:
        raw = file.read(limit + 1)
    if len(raw) > limit:
        raise ValueError(f"larger than {limit // 2**20} MiB")
    return raw


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
    problems = text_problems(document)
    if problems:
        raise ManifestError(problems, source)
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


def text_problems(document: Any) -> list[Problem]:
    """Strings (keys too) no command, path or Kubernetes object can hold: a NUL character, or a lone UTF-16
    surrogate (which a YAML or JSON escape such as ``"\\ud800"`` can spell, but no UTF-8 text can)."""
    problems: list[Problem] = []
    for loc, text in _strings(document, [], keys=True):
        problems.extend(Problem(format_path(loc), message) for message in _text_problems(text))
        if len(problems) >= MAX_TEXT_PROBLEMS:
            break
    return problems[:MAX_TEXT_PROBLEMS]


def _text_problems(text: str) -> Iterator[str]:
    if "\x00" in text:
        yield "contains a NUL character (\\0), which no command, path or name can hold"
    surrogate = next((c for c in text if "\ud800" <= c <= "\udfff"), None)
    if surrogate is not None:
        yield (f"contains a lone surrogate (\\u{ord(surrogate):04x}), which is not a character: write the "
               "character itself, or both halves of its escape")


def cross_check(spec: ExperimentSpec) -> Iterator[Problem]:
    """Problems that involve more than one field of an otherwise well-formed spec."""
    defined = {p.name for p in spec.parameters}
    template = spec.trial_template
    strings = list(_strings(template.spec, ["spec", "trialTemplate", "spec"]))
    if template.metrics_collector.path:
        strings.append((["spec", "trialTemplate", "metricsCollector", "path"], template.metrics_collector.path))
    for loc, text in strings:
        for message in placeholder_problems(text, defined):
            yield Problem(format_path(loc), message)
    yield from pod_template_problems(spec) or []
    yield from _early_stopping_problems(spec)
    algorithm = spec.algorithm
    try:
        settings = parse_settings(algorithm.name, algorithm.settings)
    except ValidationError as exc:
        yield from problems_from_validation(exc, ["spec", "algorithm", "settings"])
        return
    limit = ALGORITHMS[algorithm.name].max_columns
    columns = Space(spec.parameters).n_columns if limit is not None else 0
    if limit is not None and columns > limit:
        yield Problem("spec.parameters", f"the space is {columns} columns wide (one per double or int parameter, "
                      f"one per categorical value), and {algorithm.name} searches at most {limit}: use fewer "
                      "categorical values, or algorithm random")
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


def _strings(node: Any, loc: list[str | int], keys: bool = False) -> Iterator[tuple[list[str | int], str]]:
    """Every string in a parsed document with its path, in document order (breadth first, so that no nesting
    depth meets a recursion limit); with ``keys``, mapping keys too."""
    pending: deque[tuple[list[str | int], Any]] = deque([(loc, node)])
    while pending:
        where, value = pending.popleft()
        if isinstance(value, str):
            yield where, value
        elif isinstance(value, dict):
            for key, item in value.items():
                if keys and isinstance(key, str):
                    yield [*where, f"(the key {key!r})"], key
                pending.append(([*where, str(key)], item))
        elif isinstance(value, list):
            pending.extend(([*where, index], item) for index, item in enumerate(value))


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
