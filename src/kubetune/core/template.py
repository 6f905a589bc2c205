"""Turning a trial's parameters into what its process or pod sees: placeholder substitution and
environment variables. Local runs and trial pods use these same functions, so a manifest behaves alike on
a laptop and in a cluster.

Placeholders: ``${params.NAME}``, ``${trial.id}`` (the trial's name, ``<experiment>-<n>``) and
``${experiment.name}``. Anything else in ``${...}`` is left alone (it may be meant for a shell).
"""

from __future__ import annotations

import json
import re
from typing import Any

PLACEHOLDER = re.compile(r"\$\{(params|trial|experiment)\.([A-Za-z0-9_.-]+)\}")
TRIAL_FIELDS = ("id",)
EXPERIMENT_FIELDS = ("name",)


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
