"""The in-trial SDK: what a training script calls to read its parameters and report its metrics.

``report(step=3, accuracy=0.93)`` prints one JSON line (which the ``stdout`` collector reads), appends it to
``$KUBETUNE_METRICS_FILE`` (its folder made if need be) when a local run uses the ``file`` collector, and,
inside a Kubernetes pod, keeps a compact summary in ``/dev/termination-log`` whatever the collector, which is
what the operator reads (it never reads the metrics file). Where the operator gave the pod a report endpoint
(``$KUBETUNE_REPORT_URL``), each report is also pushed there (:mod:`kubetune.trial.push`), for early
stopping.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from kubetune.core import termination
from kubetune.trial.push import deliver

TERMINATION_LOG = Path("/dev/termination-log")
# The kubelet keeps at most 4096 bytes of a termination message.

_history: dict[str, dict[str, float]] = {}


def params() -> dict[str, Any]:
    """This trial's parameter assignment, from ``$KUBETUNE_PARAMS``."""
    raw = os.environ.get("KUBETUNE_PARAMS")
    if raw is None:
        raise RuntimeError("KUBETUNE_PARAMS is not set: this process was not started by kubetune")
    return json.loads(raw)


def gpu_share() -> float | None:
    """The fraction of each of its GPUs this trial may use (``resources.gpu`` below 1, else 1), from
    ``$KUBETUNE_GPU_SHARE``; None when it was given no GPU. Locally a share is not enforced: a trial that
    must stay within it caps itself, e.g. ``torch.cuda.set_per_process_memory_fraction(gpu_share())``."""
    raw = os.environ.get("KUBETUNE_GPU_SHARE")
    return float(raw) if raw else None


def report(step: int | None = None, **metrics: float) -> None:
    """Reports metric values, optionally for a training step. NaN and infinity are passed on as they are,
    and the collector then treats the trial as having no usable objective."""
    if not metrics:
        raise ValueError("report() needs at least one metric, for example report(accuracy=0.93)")
    row: dict[str, float | int] = {name: float(value) for name, value in metrics.items()}
    if step is not None:
        row["step"] = int(step)
    line = json.dumps(row)
    print(line, file=sys.stdout, flush=True)
    metrics_file = os.environ.get("KUBETUNE_METRICS_FILE")
    if metrics_file:
        Path(metrics_file).parent.mkdir(parents=True, exist_ok=True)
        with open(metrics_file, "a") as out:
            out.write(line + "\n")
    _remember(row)
    deliver(row)
    if TERMINATION_LOG.exists() and os.access(TERMINATION_LOG, os.W_OK):
        _write_termination_message()


def _remember(row: dict[str, float | int]) -> None:
    for name, value in row.items():
        if name != "step":
            termination.add(_history, name, float(value))


def _write_termination_message() -> None:
    message = termination.encode(_history)
    if message is not None:
        TERMINATION_LOG.write_text(message)
