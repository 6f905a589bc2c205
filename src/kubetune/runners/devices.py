"""Finding this machine's GPUs: ``CUDA_VISIBLE_DEVICES`` when it is set, else ``nvidia-smi``."""

from __future__ import annotations

import os
import shutil
import subprocess


def detect_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """GPU ids usable for ``CUDA_VISIBLE_DEVICES`` (indices or UUIDs); empty when there is none."""
    env = os.environ if environ is None else environ
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [d.strip() for d in visible.split(",") if d.strip()]
        # CUDA stops at the first invalid id; "-1" is the usual way to hide every GPU.
        usable = []
        for device in ids:
            if device.startswith("-"):
                break
            usable.append(device)
        return usable
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        result = subprocess.run(
            [smi, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20, check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]
