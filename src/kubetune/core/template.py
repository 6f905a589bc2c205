"""Turning a trial's parameters into what its process or pod sees: placeholder substitution and
environment variables. Local runs and trial pods use these same functions, so a manifest behaves alike on
a laptop and in a cluster.

Placeholders: ``${params.NAME}``, ``${trial.id}`` (the trial's name, ``<experiment>-<n>``) and
``${experiment.name}``. ``${NAME}`` without a dot and ``$(...)`` are left alone (a shell's variable, a
Kubernetes ``$(VAR)`` reference), but what looks like a mistyped placeholder (``${param.x}``,
``$(params.x)``, ``${trialParameters.x}``, an unclosed ``${params.x``) is refused by :func:`placeholder_problems`
before anything runs, since it would otherwise reach the trial as literal text.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Collection, Iterator
from typing import Any

PLACEHOLDER = re.compile(r"\$\{(params|trial|experiment)\.([A-Za-z0-9_.-]+)\}")
TRIAL_FIELDS = ("id",)
EXPERIMENT_FIELDS = ("name",)
SCOPES = {"params": None, "trial": TRIAL_FIELDS, "experiment": EXPERIMENT_FIELDS}
ACCEPTED_FORMS = "${params.NAME}, ${trial.id} and ${experiment.name}"
# Anything of the shape of a placeholder: "$" then "{" or "(", a body, and the closing bracket if there is one.
_LOOKALIKE = re.compile(r"\$([{(])([^{}()$]*)([})]?)")
# Scope names other tools use for parameters (Katib's ${trialParameters.NAME}), and plural slips.
_SCOPE_ALIASES = {"param": "params", "parameter": "params", "parameters": "params", "trialparameters": "params",
                  "trialparameter": "params", "trials": "trial", "experiments": "experiment"}


def format_value(value: Any) -> str:
    """How a parameter value is written into a command line or an environment variable."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def substitute(text: str, params: dict[str, Any], trial_id: str, experiment: str) -> str:
    scopes = {"params": params, "trial": {"id": trial_id}, "experiment": {"name": experiment}}

    def replace(match: re.Match[str]) -> str:
        scope, name = match.group(1), match.group(2)
        if name not in scopes[scope]:
            raise KeyError(f"${{{scope}.{name}}} is not defined")
        return format_value(scopes[scope][name])

    return PLACEHOLDER.sub(replace, text)


def substitute_all(node: Any, params: dict[str, Any], trial_id: str, experiment: str) -> Any:
    """Substitutes placeholders in every string of a nested structure (a container, a pod spec)."""
    if isinstance(node, str):
        return substitute(node, params, trial_id, experiment)
    if isinstance(node, dict):
        return {k: substitute_all(v, params, trial_id, experiment) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute_all(v, params, trial_id, experiment) for v in node]
    return node


def env_name(parameter: str) -> str:
    return "KUBETUNE_PARAM_" + re.sub(r"[^A-Za-z0-9]", "_", parameter).upper()


def trial_environment(params: dict[str, Any], trial_id: str, experiment: str, gpu: float = 0.0) -> dict[str, str]:
    """The variables every trial gets: its id, its parameters as JSON and one variable per parameter; with a
    GPU, ``KUBETUNE_GPU_SHARE``: the fraction of each of its GPUs it may use (1 for whole GPUs)."""
    env = {
        "KUBETUNE_TRIAL": trial_id,
        "KUBETUNE_EXPERIMENT": experiment,
        "KUBETUNE_PARAMS": json.dumps(params),
    }
    env.update({env_name(name): format_value(value) for name, value in params.items()})
    if gpu > 0:
        env["KUBETUNE_GPU_SHARE"] = format_value(min(float(gpu), 1.0))
    return env


def placeholder_problems(text: str, parameters: Collection[str]) -> Iterator[str]:
    """What is wrong with the placeholders of one template string: an undefined parameter, an unknown field
    of ``trial`` or ``experiment``, or text that looks like a mistyped placeholder; each message says what
    to write instead."""
    for match in _LOOKALIKE.finditer(text):
        found = match.group(0)
        opening, body, closing = match.groups()
        scope, dot, name = body.strip().partition(".")
        known = _known_scope(scope)
        if opening == "{" and closing == "}" and PLACEHOLDER.fullmatch(found):
            yield from _reference_problems(scope, name, parameters)
        elif known and (dot or scope.strip() in SCOPES) or (opening == "{" and dot):
            yield _malformed(found, known, name.strip(), parameters)


def _known_scope(scope: str) -> str | None:
    """The placeholder scope ``scope`` stands for, when it is one or a likely slip for one."""
    word = scope.strip().lower()
    if word in SCOPES:
        return word
    if word in _SCOPE_ALIASES:
        return _SCOPE_ALIASES[word]
    close = difflib.get_close_matches(word, SCOPES, n=1, cutoff=0.75)
    return close[0] if close else None


def _reference_problems(scope: str, name: str, parameters: Collection[str]) -> Iterator[str]:
    fields = SCOPES[scope]
    if scope == "params" and name not in parameters:
        defined = ", ".join(sorted(parameters))
        yield f"references ${{params.{name}}}, but no parameter {name!r} is defined (defined: {defined})"
    elif fields is not None and name not in fields:
        forms = ", ".join(f"${{{scope}.{f}}}" for f in fields)
        yield f"references ${{{scope}.{name}}}; {scope} placeholders are {forms}"


def _malformed(found: str, scope: str | None, name: str, parameters: Collection[str]) -> str:
    suggestion = ""
    if scope == "params" and name in parameters:
        suggestion = f"${{params.{name}}}"
    elif scope is not None and name in (SCOPES[scope] or ()):
        suggestion = f"${{{scope}.{name}}}"
    elif name in parameters:
        suggestion = f"${{params.{name}}}"
    hint = f"did you mean {suggestion}? " if suggestion else ""
    return f"{found!r} is not a placeholder kubetune knows; {hint}placeholders are {ACCEPTED_FORMS}"
