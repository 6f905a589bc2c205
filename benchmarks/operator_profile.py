"""Where the operator's CPU goes, from py-spy: a sampling profiler attached to the running operator (and its
suggestion worker) for a whole scenario, and a summary of its samples that fits in a results table.

py-spy (``pip install py-spy``) samples, ``rate`` times a second and without pausing the process
(``--nonblocking``), the thread that holds the GIL (``--gil``): the operator's Python work, all of which one
core at most can do for it. A thread that waits (for the API server, for the GIL, the event loop in
``epoll``) holds no GIL and is not counted; without ``--gil``, py-spy took such waits for work here. A thread
holding the GIL while the kernel has it wait for a core is counted, so on a busy machine a long hold weighs
more than its CPU time. It writes the stacks it saw with their counts (``--format raw``).

The summary attributes each sample three ways: the function on top of the stack (self time), the package
that function belongs to, and the innermost kubetune function below it (what of the operator's own work led
there; samples with no kubetune frame are kopf's, the client's or asyncio's own, named by the first library
below the event loop).
"""

from __future__ import annotations

import collections
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

RATE = 50  # samples per second: enough for shares of a percent over minutes, little work for the profiler
PROCESS_FRAME = re.compile(r'^process \d+:"(.*)"$')
FRAME = re.compile(r"^(.*) \((.*)\)$")


def py_spy() -> str | None:
    """The py-spy executable beside this interpreter, or on the PATH; None when it is not installed."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    """``with Profiler(pid, path):`` samples the process ``pid`` and its children until the block ends."""

    def __init__(self, pid: int, output: Path, rate: int = RATE):
        executable = py_spy()
        if executable is None:
            raise RuntimeError("--profile needs py-spy: pip install py-spy")
        self.output = output
        self._command = [executable, "record", "--pid", str(pid), "--subprocesses", "--nolineno", "--nonblocking",
                         "--gil", "--rate", str(rate), "--format", "raw", "-o", str(output)]
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Profiler:
        self._process = subprocess.Popen(self._command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGINT)  # py-spy writes what it sampled, then exits
        try:
            self._process.wait(60)
        except subprocess.TimeoutExpired:
            self._process.kill()


def summarize(path: Path, top: int = 12) -> dict[str, Any]:
    """The shares of the samples (``--format raw`` lines: ``frame;frame;... count``), per process kind (the
    operator, its suggestion worker), by function on top, by its package and by innermost kubetune function."""
    by_process: dict[str, dict[str, collections.Counter[str]]] = {}
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        processes = [m.group(1) for m in map(PROCESS_FRAME.match, frames) if m]
        code = [f for f in frames if not PROCESS_FRAME.match(f)]
        if not code:
            continue
        kind = "suggestion worker" if "worker" in (processes[-1] if processes else "") else "operator"
        tallies = by_process.setdefault(kind, {"self": collections.Counter(), "package": collections.Counter(),
                                               "kubetune": collections.Counter()})
        samples = int(count)
        tallies["self"][_short(code[-1])] += samples
        tallies["package"][_package(code[-1])] += samples
        own = [f for f in code if "kubetune/" in f and not f.endswith(ENTRY_POINTS)]
        tallies["kubetune"][_short(own[-1]) if own else f"(no kubetune frame) {_outside(code)}"] += samples
    summary: dict[str, Any] = {}
    for kind, tallies in by_process.items():
        total = sum(tallies["self"].values())
        summary[kind] = {"samples": total, **{name: [(what, n / total) for what, n in counter.most_common(top)]
                                              for name, counter in tallies.items()}}
    return summary


# below everything the operator does: they attribute nothing
ENTRY_POINTS = ("(kubetune/cli.py)", "(kubetune/operator/startup.py)", "(kubetune/__main__.py)")
RUNNERS = ("asyncio", "threading", "concurrent", "contextlib", "selectors", "runpy", "<frozen", "kubetune")


def _outside(code: list[str]) -> str:
    """For a sample with no kubetune work in it: the first library below the event loop and the threads that
    run it (``kopf``, ``urllib3``...), or the package on top when there is none (``asyncio``, ``selectors``)."""
    libraries = [_package(f) for f in code if not _package(f).startswith(RUNNERS)]
    return libraries[0] if libraries else _package(code[-1])


def _short(frame: str) -> str:
    """``function (package/module.py)``, as py-spy names a frame without its line."""
    return frame.strip()


def _package(frame: str) -> str:
    """The top-level package (or standard-library module) of a frame: ``json``, ``kopf``, ``kubetune``..."""
    match = FRAME.match(frame.strip())
    where = match.group(2) if match else frame
    if where.startswith("<"):
        return where
    return re.split(r"[/.]", where, maxsplit=1)[0] or where


def table(summary: dict[str, Any], what: str, rows: int = 10) -> list[str]:
    """Markdown rows of one attribution (``self``, ``package`` or ``kubetune``) for the operator process."""
    operator = summary.get("operator")
    if not operator:
        return []
    return [f"| {name.replace('|', '/')} | {share:.1%} |" for name, share in operator[what][:rows]]
