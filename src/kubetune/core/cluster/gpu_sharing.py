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
from collections.abc import Callable
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


@dataclass(frozen=True)
class GpuRequest:
    """One trial's GPU request, as the modes read it: a fraction of one GPU, or whole GPUs."""

    amount: float

    @property
    def whole(self) -> bool:
        return self.amount >= 1

    @property
    def count(self) -> int:
        """GPUs (or shared replicas) to ask for: the whole number, or 1 for a fraction."""
        return int(self.amount) if self.whole else 1

    @property
    def percent(self) -> int:
        return round(self.amount * 100)


def place(amount: float, sharing: GpuSharing) -> GpuPlacement:
    """The placement of one trial asking for ``amount`` GPUs (0 means none)."""
    if amount <= 0:
        return GpuPlacement()
    if amount > 1 and amount != int(amount):
        raise GpuSharingError(f"{sharing.mode}: a request above 1 GPU must be a whole number, got {amount}")
    placer = PLACERS.get(sharing.mode)
    if placer is None:
        raise GpuSharingError(f"unknown GPU sharing mode {sharing.mode!r}; choose one of {', '.join(MODES)}")
    return placer(GpuRequest(amount), sharing)


def _place_whole(request: GpuRequest, sharing: GpuSharing) -> GpuPlacement:
    return GpuPlacement(limits={NVIDIA_GPU: math.ceil(request.amount)})


def _place_kai(request: GpuRequest, sharing: GpuSharing) -> GpuPlacement:
    labels = {"kai.scheduler/queue": sharing.kai_queue}
    if request.whole:
        return GpuPlacement(limits={NVIDIA_GPU: request.count}, labels=labels, scheduler_name="kai-scheduler")
    return GpuPlacement(annotations={"gpu-fraction": _fraction(request.amount)}, labels=labels,
                        scheduler_name="kai-scheduler")


def _place_hami(request: GpuRequest, sharing: GpuSharing) -> GpuPlacement:
    if request.whole:
        return GpuPlacement(limits={NVIDIA_GPU: request.count})
    limits: dict[str, Any] = {NVIDIA_GPU: 1, "nvidia.com/gpumem-percentage": request.percent}
    if sharing.hami_cores:
        limits["nvidia.com/gpucores"] = request.percent
    return GpuPlacement(limits=limits)


def _place_volcano(request: GpuRequest, sharing: GpuSharing) -> GpuPlacement:
    limits: dict[str, Any] = {"volcano.sh/vgpu-number": request.count}
    if not request.whole:
        limits["volcano.sh/vgpu-memory-percentage"] = request.percent
    return GpuPlacement(limits=limits, scheduler_name="volcano")


def _place_timeslicing(request: GpuRequest, sharing: GpuSharing) -> GpuPlacement:
    if not request.whole:
        return GpuPlacement(limits={sharing.timeslicing_resource: 1})
    if sharing.timeslicing_resource == NVIDIA_GPU:
        raise GpuSharingError(
            f"timeslicing: {request.count} whole GPU(s) cannot be guaranteed when every nvidia.com/gpu is a "
            "time-sliced replica; rename the shared resource (for example nvidia.com/gpu.shared) or "
            "use the whole mode for this experiment"
        )
    return GpuPlacement(limits={NVIDIA_GPU: request.count})


def _place_mig(request: GpuRequest, sharing: GpuSharing) -> GpuPlacement:
    if request.whole:
        _, largest = max(sharing.mig_profiles)
        return GpuPlacement(limits={largest: request.count})
    for share, profile in sorted(sharing.mig_profiles):
        if request.amount <= share + 1e-9:
            return GpuPlacement(limits={profile: 1})
    raise GpuSharingError(f"mig: no MIG profile in the table covers {request.amount} of a GPU")


# One row per mode (see the module's table); a new mode is a Mode literal, a function and a row here.
PLACERS: dict[Mode, Callable[[GpuRequest, GpuSharing], GpuPlacement]] = {
    "whole": _place_whole,
    "kai": _place_kai,
    "hami": _place_hami,
    "volcano": _place_volcano,
    "timeslicing": _place_timeslicing,
    "mig": _place_mig,
}


def _fraction(amount: float) -> str:
    return f"{amount:.4f}".rstrip("0").rstrip(".")
