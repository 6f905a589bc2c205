"""A real multi-node Ray cluster on this machine for the tests that run trials on Ray: a head (fake resource
``node_a``) and a worker node (``node_b``), each with one CPU and one fake GPU, started with ``ray start
--block`` on free ports so that every process of the cluster is ours to stop (also on failure). One cluster
serves the whole session (the Ray backend's tests and the scenario suite's Ray shell)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster.control_plane import free_port

RAY = Path(sys.executable).with_name("ray")
SRC = Path(__file__).resolve().parents[1] / "src"
# Ray 2.5x+ turns token authentication on for a cluster when ~/.ray/auth_token exists (a local ray.init() writes
# it), but a driver given host:port does not read it: the test cluster and its drivers run without it.
RAY_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
NODE_PORTS = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-grpc-port",
              "--dashboard-agent-listen-port", "--metrics-export-port", "--runtime-env-agent-port")


class Cluster:
    """The Ray processes this module started: ``ray start --block`` per node, and what it spawned."""

    def __init__(self, temp: Path):
        self.temp = temp
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *, gpus: int = 1, head: bool = False) -> None:
        args = [str(RAY), "start", "--block", "--num-cpus=1", f"--num-gpus={gpus}",
                f"--resources={json.dumps({name: 1})}", "--disable-usage-stats",
                *(f"{option}={free_port()}" for option in NODE_PORTS)]
        if head:
            args += ["--head", f"--port={self.port}", f"--temp-dir={self.temp}", "--include-dashboard=false"]
        else:
            args += [f"--address={self.address}"]
        log = (self.temp / f"{name}.log").open("wb")
        self.nodes[name] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            env=RAY_ENV)

    def node_ids(self, expected: int) -> dict[str, str]:
        """The fake resource name of each live node (``node_a``...) by Ray node id, once ``expected`` are up."""
        script = (f"import json, ray; ray.init(address={self.address!r}, logging_level='ERROR'); "
                  "print('NODES', json.dumps("
                  "{n['NodeID']: sorted(k for k in n['Resources'] if k.startswith('node_')) for n in ray.nodes() "
                  "if n['Alive']}))")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if any(node.poll() is not None for node in self.nodes.values()):
                break
            try:
                done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                                      env=RAY_ENV)
            except subprocess.TimeoutExpired:
                continue
            if done.returncode == 0:
                line = next(line for line in done.stdout.splitlines() if line.startswith("NODES "))
                alive = {node: names[0] for node, names in json.loads(line[6:]).items() if names}
                if len(alive) == expected:
                    return alive
            time.sleep(1)
        raise RuntimeError(f"the Ray cluster has not {expected} nodes: {self.logs()}")

    def lose(self, name: str) -> None:
        """Ends a node the way a lost machine ends: SIGKILL to all its processes at once (its raylet, its
        workers; not the trials, which die with their worker)."""
        process = self.nodes.pop(name)
        for pid in [process.pid, *_descendants(process.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(10)

    def kill(self, name: str) -> None:
        """Stops a node (SIGTERM to ``ray start --block``, which stops its raylet and workers)."""
        process = self.nodes.pop(name)
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(30)
        _kill_group(process)

    def stop(self) -> None:
        for name in list(self.nodes):
            self.kill(name)
        for pid in _pids_under(self.temp):  # anything of ours still alive (a worker, an agent)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def logs(self) -> str:
        return " | ".join(f"{p.name}: {p.read_text(errors='replace')[-800:]}" for p in self.temp.glob("*.log"))


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(10)


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children of children...), except those in a session of their own."""
    parents: dict[int, int] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                if int(stat[3]) != int(proc.name):  # not a session leader: a trial is one
                    parents[int(proc.name)] = int(stat[1])
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _pids_under(temp: Path) -> list[int]:
    """Processes whose command line names this cluster's temp folder (its session folder is inside)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if str(temp).encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
    return pids


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Cluster]:
    pytest.importorskip("ray")
    temp = Path(tempfile.mkdtemp(prefix="ktray", dir="/tmp"))  # short: Ray's socket paths live under it
    cluster = Cluster(temp)
    try:
        cluster.start("node_a", head=True)
        cluster.node_ids(1)
        cluster.start("node_b")
        cluster.node_ids(2)
        yield cluster
    finally:
        cluster.stop()
