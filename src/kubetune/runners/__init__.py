"""Running an experiment without a cluster: :class:`~kubetune.runners.driver.Runner` over a backend."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubetune.core.lifecycle import TrialRecord
from kubetune.core.spec import Experiment
from kubetune.runners.backend import Backend
from kubetune.runners.driver import Runner
from kubetune.runners.process import ProcessBackend
from kubetune.runners.run_folder import RunFolder


def local_runner(experiment: Experiment, out: Path, workdir: Path, *, resume: bool = False, no_gpu: bool = False,
                 gpus: list[str] | None = None, backend_name: str = "process", address: str | None = None,
                 runtime_env: dict[str, Any] | None = None,
                 on_trial_end: Callable[[TrialRecord], None] = lambda _record: None) -> Runner:
    """The runner of ``kubetune run``: trials as processes on this machine (``process``) or as Ray tasks on a
    Ray cluster (``ray``, at ``address``, or a Ray started here when None, with the user's ``runtime_env``),
    results in ``out``."""
    backend: Backend
    if backend_name == "ray":
        from kubetune.runners.ray_backend import RayBackend  # Ray is imported only when chosen

        backend = RayBackend(experiment.spec.trial_template.resources, workdir, address=address, out=out,
                             runtime_env=runtime_env)
    else:
        backend = ProcessBackend(experiment.spec.trial_template.resources.gpu, no_gpu=no_gpu, gpus=gpus)
    return Runner(experiment, RunFolder(out), backend, workdir, resume=resume, on_trial_end=on_trial_end)
