"""What running an experiment on this machine (``kubetune run``) needs of its manifest beyond what the
cluster needs."""

from __future__ import annotations

from kubetune.core.spec import ExperimentSpec


def local_command(spec: ExperimentSpec) -> str | None:
    """Why the trials cannot run as local processes, or None. Locally the first container's ``command`` is
    what runs: without a cluster the image's entrypoint is not known."""
    containers = spec.trial_template.spec.get("containers") or [{}]
    if not containers[0].get("command"):
        return ("spec.trialTemplate.spec.containers[0].command: locally the first container needs a command to "
                "run (the image's entrypoint is not known without a cluster)")
    return None
