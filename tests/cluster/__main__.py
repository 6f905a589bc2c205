"""``python -m tests.cluster up``: start a test control plane (etcd, kube-apiserver, kube-scheduler, the
garbage collector) and a test kubelet with a few fake nodes, print the admin kubeconfig's path, and keep them
running until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .control_plane import ControlPlane, ControlPlaneError
from .kubelet import FakeNode, TestKubelet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start a control plane and wait")
    up.add_argument("--nodes", type=int, default=3, help="fake nodes, each with 4 nvidia.com/gpu (default 3)")
    up.add_argument("--no-kubelet", action="store_true", help="no test kubelet: pods stay Pending")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with ControlPlane() as cluster:
            nodes = [FakeNode(f"node-{i}", extended={"nvidia.com/gpu": "4"}) for i in range(args.nodes)]
            kubelet = None if args.no_kubelet else TestKubelet(cluster, nodes).__enter__()
            print(cluster.admin_kubeconfig, flush=True)
            print(f"export KUBECONFIG={cluster.admin_kubeconfig}   # Ctrl-C stops everything", file=sys.stderr)
            try:
                stop.wait()
            except KeyboardInterrupt:
                pass
            finally:
                if kubelet is not None:
                    kubelet.__exit__(None, None, None)
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
