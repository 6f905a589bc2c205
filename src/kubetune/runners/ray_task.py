"""What runs inside the Ray task of one attempt: the trial's command as a process group on the node Ray chose.

The standard library only, and shipped to the cluster by value (``cloudpickle.register_pickle_by_value``), so
a Ray cluster needs no kubetune installed. The task is a *streaming generator*: every ``POLL_SECONDS`` it
yields what the trial wrote since the last look (``("stdout", bytes)``, ``("stderr", bytes)``, the whole
metrics file ``("metrics", bytes)`` when it changed), and at the end ``("exit", code)`` or
``("timeout", seconds)``. The driver writes the chunks into the attempt's log files as they come, so it
follows reports (early stopping) the same way as for local processes. A cancel (a stop, Ctrl-C) or the end
of the task kills the whole process group; if the worker itself dies, the trial's process gets SIGKILL from
the kernel (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

POLL_SECONDS = 0.2
KILL_GRACE_SECONDS = 5.0
NODE_ENV = "KUBETUNE_RAY_NODE_ID"  # the Ray node the trial runs on, for the trial (and the tests) to read


def run_attempt(command: list[str], env: dict[str, str], metrics: str | None,
                timeout: float | None) -> Iterator[tuple[str, object]]:
    """Runs ``command`` in the task's working folder (the runtime_env's copy of the manifest's folder);
    ``metrics`` is the metrics file relative to that folder, or None."""
    import ray  # on the worker, where Ray is installed

    full = {**os.environ, **env}
    # "python" in a manifest means the interpreter of the cluster's workers, with the cluster's packages.
    full["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), full.get("PATH", "")])
    full[NODE_ENV] = ray.get_runtime_context().get_node_id()
    metrics_path = Path.cwd() / metrics if metrics else None
    if metrics_path is not None:
        full["KUBETUNE_METRICS_FILE"] = str(metrics_path)
        try:
            metrics_path.unlink(missing_ok=True)
        except OSError as exc:
            yield "start-error", f"cannot prepare {metrics_path}: {exc.strerror or exc}"
            return
    with tempfile.TemporaryDirectory(prefix="kubetune-") as logs:
        out, err = Path(logs) / "stdout", Path(logs) / "stderr"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            try:
                process = subprocess.Popen(command, env=full, stdout=stdout, stderr=stderr,
                                           stdin=subprocess.DEVNULL, start_new_session=True,
                                           preexec_fn=_die_with_parent)
            except (OSError, ValueError) as exc:  # ValueError: an argument or variable the OS cannot take
                yield "start-error", f"cannot start {command[0]!r}: {getattr(exc, 'strerror', None) or exc}"
                return
        follow = _Follow(out, err, metrics_path)
        try:
            yield from _watch(process, follow, timeout)
        finally:
            if process.poll() is None:
                _kill_group(process)


def _watch(process: subprocess.Popen[bytes], follow: _Follow,
           timeout: float | None) -> Iterator[tuple[str, object]]:
    deadline = None if timeout is None else time.monotonic() + timeout
    while process.poll() is None:
        if deadline is not None and time.monotonic() > deadline:
            _kill_group(process)
            yield from follow.news()
            yield "timeout", timeout
            return
        yield from follow.news()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(POLL_SECONDS)  # returns the moment the trial exits
    yield from follow.news()
    yield "exit", process.returncode


class _Follow:
    """What the trial wrote since the last look."""

    def __init__(self, stdout: Path, stderr: Path, metrics: Path | None):
        self.offsets = {"stdout": (stdout, 0), "stderr": (stderr, 0)}
        self.metrics = metrics
        self.metrics_seen: tuple[float, int] | None = None

    def news(self) -> Iterator[tuple[str, object]]:
        for stream, (path, offset) in list(self.offsets.items()):
            with path.open("rb") as file:
                file.seek(offset)
                chunk = file.read()
            if chunk:
                self.offsets[stream] = (path, offset + len(chunk))
                yield stream, chunk
        if self.metrics is not None:
            with contextlib.suppress(OSError):
                stat = self.metrics.stat()
                if (stat.st_mtime, stat.st_size) != self.metrics_seen:
                    self.metrics_seen = (stat.st_mtime, stat.st_size)
                    yield "metrics", self.metrics.read_bytes()


def _die_with_parent() -> None:
    """In the trial's process, before exec: SIGKILL when the Ray worker that started it dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the trial's whole process group, SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
