"""Fixtures and helpers for the tests that run the operator against the real control plane: one control plane
per test session (etcd, kube-apiserver, kube-scheduler, the garbage collector), a fresh namespace per test
(Pod Security "restricted" enforced by the API server), the operator as a process of its own
(``kubetune operator``) authenticated as the chart's ServiceAccount, and kubectl to apply and read."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cluster import Behaviour, ControlPlane, FakeNode, OperatorIdentity, TestKubelet, free_port
from cluster.identity import kubectl

from conftest import manifest

ROOT = Path(__file__).parent.parent
CRDS = ROOT / "crds"


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    with ControlPlane() as cluster:
        kubectl(cluster.admin_kubeconfig, "apply", "--server-side", "-f", str(CRDS))
        kubectl(cluster.admin_kubeconfig, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        # the OpenAPI documents (kubectl explain, client-side validation) follow a moment later, one CRD at a
        # time: the group's document can exist with only one of the kinds in it
        wait_for(lambda: all(kubectl(cluster.admin_kubeconfig, "explain", kind, check=False).returncode == 0
                             for kind in ("experiments.spec", "trials.spec")), timeout=60,
                 what="both CRDs in the OpenAPI documents")
        yield cluster


@pytest.fixture(scope="session")
def bare_cluster() -> Iterator[ControlPlane]:
    """A second control plane: etcd and kube-apiserver only, without the CRDs (for the chart's install) and
    without kube-scheduler (pods are bound by the test kubelet)."""
    with ControlPlane(scheduler=False, controller_manager=False) as cluster:
        yield cluster


class Namespace:
    """One test's namespace on the control plane, with kubectl as the admin."""

    def __init__(self, cluster: ControlPlane, name: str, tmp: Path):
        self.cluster, self.name, self.tmp = cluster, name, tmp

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None, namespaced: bool = True) -> str:
        scope = ("--namespace", self.name) if namespaced else ()
        result = kubectl(self.cluster.admin_kubeconfig, *scope, *args, check=check, stdin=stdin)
        return result.stdout if check else result.stdout + result.stderr

    def apply(self, document: dict[str, Any], *extra: str, check: bool = True) -> str:
        return self.kubectl("apply", "-f", "-", *extra, stdin=yaml.safe_dump(document), check=check)

    def get(self, kind: str, name: str | None = None) -> Any:
        out = self.kubectl("get", kind, *([name] if name else []), "-o", "json")
        document = json.loads(out)
        return document if name else document["items"]

    def status(self, name: str) -> dict[str, Any]:
        return self.get("experiment", name).get("status") or {}

    def trials(self) -> list[dict[str, Any]]:
        return self.get("trials")

    def pods(self) -> list[dict[str, Any]]:
        return self.get("pods")

    def events(self) -> list[dict[str, Any]]:
        return self.get("events")

    def phase(self, experiment: str) -> str | None:
        return self.status(experiment).get("phase")

    def kubelet(self, nodes: list[FakeNode] | None = None,
                behaviour: Callable[[dict[str, Any]], Behaviour] | None = None, **options: Any) -> TestKubelet:
        """A test kubelet for this namespace's pods (one node, node-1, unless given)."""
        if behaviour is not None:
            options["behaviour"] = behaviour
        return TestKubelet(self.cluster, nodes, namespaces=[self.name], **options)


@pytest.fixture
def namespace(control_plane: ControlPlane, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Namespace]:
    name = namespace_name(request.node.name)
    control_plane.create_namespace(name, {"pod-security.kubernetes.io/enforce": "restricted"})
    yield Namespace(control_plane, name, tmp_path)
    while _started:
        _started.pop().stop()
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:  # what the cluster held, and what the operator said
        print(kubectl(control_plane.admin_kubeconfig, "get", "experiments,trials,pods", "-n", name, "-o", "wide",
                      check=False).stdout)
        for log in sorted(tmp_path.glob("*.log")):
            print(f"--- {log.name} (last 60 lines)")
            print("\n".join(log.read_text(errors="replace").splitlines()[-60:]))
    # the namespace controller is not running: delete what the test left, so nothing keeps running
    kubectl(control_plane.admin_kubeconfig, "delete", "experiments,trials,pods", "--all", "-n", name,
            "--wait=false", "--grace-period=0", "--force", check=False)


def namespace_name(test: str) -> str:
    short = re.sub(r"[^a-z0-9]+", "-", test.lower().removeprefix("test_"))[:40].strip("-")
    return f"{short}-{uuid.uuid4().hex[:5]}"


_started: list[Operator] = []  # stopped when the test's namespace goes, whatever the test did


class Operator:
    """``kubetune operator`` in its own process, as the chart's ServiceAccount (its token in a kubeconfig)."""

    def __init__(self, namespace: Namespace, kubeconfig: Path, watch: list[str], args: tuple[str, ...] = (),
                 name: str = "operator"):
        self.namespace, self.kubeconfig, self.watch, self.args = namespace, kubeconfig, watch, args
        self.log_path = namespace.tmp / f"{name}.log"
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.reports_url: str | None = None  # the report endpoint trial pods are given (a free local port)

    def start(self) -> Operator:
        assert not self.alive(), "the operator is running already"
        scope = [arg for ns in self.watch for arg in ("--namespace", ns)]
        if not any(arg.startswith("--reports-port") for arg in self.args):
            port = free_port()
            self.reports_url = f"http://127.0.0.1:{port}"
            scope += ["--reports-port", str(port), "--reports-url", self.reports_url,
                      "--report-key-namespace", self.namespace.name]
        log = self.log_path.open("a")
        _started.append(self)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kubetune.cli", "operator", *scope, "--liveness",
             f"http://127.0.0.1:{free_port()}/healthz", "--metrics-port", "0", *self.args],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "KUBECONFIG": str(self.kubeconfig)})
        log.close()
        self.starts += 1
        return self

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Operator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def operator_identity(namespace: Namespace, watch: list[str] | None = None, leader_election: bool = False,
                      edit: Callable[[OperatorIdentity], None] | None = None) -> Path:
    """Installs the chart's ServiceAccount and RBAC (watching ``watch``, default the test's namespace) in the
    test's namespace and returns a kubeconfig with that ServiceAccount's token."""
    identity = OperatorIdentity(namespace.cluster, namespace.name, watch=watch or [namespace.name],
                                leader_election=leader_election)
    if edit is not None:
        edit(identity)
    return identity.install(namespace.tmp / "operator.kubeconfig")


def run_operator(namespace: Namespace, *args: str, watch: list[str] | None = None, name: str = "operator",
                 kubeconfig: Path | None = None) -> Operator:
    """An operator (not yet started) for the test's namespace (or ``watch``), with the chart's RBAC."""
    watch = watch or [namespace.name]
    kubeconfig = kubeconfig or operator_identity(namespace, watch)
    return Operator(namespace, kubeconfig, watch, args, name)


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.25,
             what: str = "the condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def experiment(name: str = "demo", **spec) -> dict:
    document = manifest(**{"maxTrials": 6, "parallelism": 2, "algorithm": {"name": "random"}, **spec})
    document["metadata"]["name"] = name
    document["spec"]["trialTemplate"]["spec"]["containers"][0].update(command=["python", "train.py"])
    return document


def succeeded(namespace: Namespace, name: str = "demo", timeout: float = 90.0) -> dict:
    return wait_for(lambda: (s := namespace.status(name)).get("phase") == "Succeeded" and s, timeout=timeout,
                    what=f"experiment {name} to succeed")


def ended(namespace: Namespace, name: str, timeout: float = 90.0) -> dict:
    return wait_for(lambda: (s := namespace.status(name)).get("phase") in ("Succeeded", "Failed") and s,
                    timeout=timeout, what=f"experiment {name} to end")


def release_until_ended(namespace: Namespace, kubelet: TestKubelet, name: str = "demo", timeout: float = 120.0
                        ) -> dict:
    """Lets every held trial (``Behaviour(held=True)``) end as soon as it runs, until the experiment ends;
    returns its final status."""
    def ended_yet() -> dict | None:
        kubelet.release(kubelet.holding())
        status = namespace.status(name)
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    return wait_for(ended_yet, timeout=timeout, interval=0.1, what=f"experiment {name} to end")


def by_name(items: list[dict]) -> dict[str, dict]:
    return {item["metadata"]["name"]: item for item in items}
