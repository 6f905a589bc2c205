"""Translating a trial's GPU request (``trialTemplate.resources.gpu``, possibly fractional) into what a
cluster's GPU-sharing stack understands.

The mode is cluster-wide (operator flag, Helm value ``gpuSharing.mode``) and an experiment may override it
with the annotation ``kubetune.io/gpu-sharing``:

=========== ===================================================================================
mode        what a request of 0.25 becomes
=========== ===================================================================================
whole       ``nvidia.com/gpu: 1`` (rounded up)
kai         scheduler ``kai-scheduler``, annotation ``gpu-fraction: "0.25"``, label
            ``kai.scheduler/queue`` (NVIDIA KAI Scheduler, formerly Run:ai)
hami        ``nvidia.com/gpu: 1``, ``nvidia.com/gpumem-percentage: 25`` (and ``nvidia.com/gpucores:
            25`` when ``hamiCores`` is on)
volcano     scheduler ``volcano``, ``volcano.sh/vgpu-number: 1``, ``volcano.sh/vgpu-memory-percentage: 25``
timeslicing one replica of the shared GPU resource (``nvidia.com/gpu``, or a renamed
            ``nvidia.com/gpu.shared``); the fraction itself is not enforced by time-slicing
mig         the smallest MIG profile whose memory covers the fraction (``nvidia.com/mig-2g.20gb``)
=========== ===================================================================================

Requests of 1 or more are whole GPUs in every mode. A request a mode cannot express raises
:class:`GpuSharingError` naming the mode and the reason; the operator reports it as ``InvalidSpec``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

Mode = Literal["whole", "kai", "hami", "volcano", "timeslicing", "mig"]
MODES: tuple[Mode, ...] = get_args(Mode)
OVERRIDE_ANNOTATION = "kubetune.io/gpu-sharing"
NVIDIA_GPU = "nvidia.com/gpu"
# MIG profiles of an 80 GB H100/A100, by the share of the GPU's memory each gives.
DEFAULT_MIG_PROFILES: tuple[tuple[float, str], ...] = (
    (0.125, "nvidia.com/mig-1g.10gb"),
    (0.25, "nvidia.com/mig-2g.20gb"),
    (0.5, "nvidia.com/mig-3g.40gb"),
    (1.0, "nvidia.com/mig-7g.80gb"),
)


class GpuSharingError(ValueError):
    """The GPU request cannot be expressed in the chosen mode."""


@dataclass(frozen=True)
class GpuSharing:
    mode: Mode = "whole"
    kai_queue: str = "default"
    hami_cores: bool = False
    timeslicing_resource: str = NVIDIA_GPU
    mig_profiles: tuple[tuple[float, str], ...] = DEFAULT_MIG_PROFILES

    def for_experiment(self, annotations: dict[str, str]) -> GpuSharing:
        """The mode an experiment asks for with its annotation, else this one."""
        override = annotations.get(OVERRIDE_ANNOTATION)
        if override is None:
            return self
        if override not in MODES:
            raise GpuSharingError(
                f"annotation {OVERRIDE_ANNOTATION}: unknown GPU sharing mode {override!r}; "
                f"choose one of {', '.join(MODES)}"
            )
        return replace(self, mode=override)


@dataclass
class GpuPlacement:
    """What to add to a trial pod: resource limits of its first container, pod annotations and labels, and
    the scheduler to use."""

    limits: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    scheduler_name: str | None = None


def place(amount: float, sharing: GpuSharing) -> GpuPlacement:
    """The placement of one trial asking for ``amount`` GPUs (0 means none)."""
    if amount <= 0:
        return GpuPlacement()
    if amount > 1 and amount != int(amount):
        raise GpuSharingError(f"{sharing.mode}: a request above 1 GPU must be a whole number, got {amount}")
    whole = amount >= 1
    count = int(amount) if whole else 1
    percent = round(amount * 100)
    mode = sharing.mode
    if mode == "whole":
        return GpuPlacement(limits={NVIDIA_GPU: math.ceil(amount)})
    if mode == "kai":
        labels = {"kai.scheduler/queue": sharing.kai_queue}
        if whole:
            return GpuPlacement(limits={NVIDIA_GPU: count}, labels=labels, scheduler_name="kai-scheduler")
        return GpuPlacement(annotations={"gpu-fraction": _fraction(amount)}, labels=labels,
                            scheduler_name="kai-scheduler")
    if mode == "hami":
        if whole:
            return GpuPlacement(limits={NVIDIA_GPU: count})
        limits: dict[str, Any] = {NVIDIA_GPU: 1, "nvidia.com/gpumem-percentage": percent}
        if sharing.hami_cores:
            limits["nvidia.com/gpucores"] = percent
        return GpuPlacement(limits=limits)
    if mode == "volcano":
        limits = {"volcano.sh/vgpu-number": count}
        if not whole:
            limits["volcano.sh/vgpu-memory-percentage"] = percent
        return GpuPlacement(limits=limits, scheduler_name="volcano")
    if mode == "timeslicing":
        if not whole:
            return GpuPlacement(limits={sharing.timeslicing_resource: 1})
        if sharing.timeslicing_resource == NVIDIA_GPU:
            raise GpuSharingError(
                f"timeslicing: {count} whole GPU(s) cannot be guaranteed when every nvidia.com/gpu is a "
                "time-sliced replica; rename the shared resource (for example nvidia.com/gpu.shared) or "
                "use the whole mode for this experiment"
            )
        return GpuPlacement(limits={NVIDIA_GPU: count})
    if mode == "mig":
        if whole:
            _, largest = max(sharing.mig_profiles)
            return GpuPlacement(limits={largest: count})
        for share, profile in sorted(sharing.mig_profiles):
            if amount <= share + 1e-9:
                return GpuPlacement(limits={profile: 1})
        raise GpuSharingError(f"mig: no MIG profile in the table covers {amount} of a GPU")
    raise GpuSharingError(f"unknown GPU sharing mode {mode!r}; choose one of {', '.join(MODES)}")


def _fraction(amount: float) -> str:
    return f"{amount:.4f}".rstrip("0").rstrip(".")
