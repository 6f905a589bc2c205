"""A real Kubernetes control plane on 127.0.0.1 for the operator's tests and benchmarks: etcd and
kube-apiserver (RBAC, ServiceAccount tokens, the default admission plugins), and where asked kube-scheduler
and a kube-controller-manager that runs only the garbage collector and the ServiceAccount controller.

The binaries are the ones ``make control-plane`` builds from the Go module proxy (``.tools/k8s/bin``). Ports
are free ones picked at start, the PKI is made at start, and every process is stopped by its id and the
working folder removed when the control plane stops, also when a test fails or the interpreter exits.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .pki import Authority, KeyPair

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("KUBETUNE_K8S_BIN", ROOT / ".tools" / "k8s" / "bin"))
SERVICE_CIDR = "10.0.0.0/24"
START_SECONDS = 90.0
PR_SET_PDEATHSIG = 1
_running: list[ControlPlane] = []


class ControlPlaneError(RuntimeError):
    """A component did not start (the message carries the end of its log)."""


def _die_with_parent() -> None:
    """In the child before exec: Linux sends it SIGKILL when the thread that started it ends."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def binary(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        raise ControlPlaneError(f"{path} is missing: run `make control-plane` (builds it from the Go module proxy)")
    return path


@dataclass
class _Component:
    name: str
    args: list[str]
    log: Path
    process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            # its own session, so that a test's Ctrl-C does not reach it before the fixture stops it; and it
            # dies with the process that started it, however that one ends (SIGKILL included)
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True, preexec_fn=_die_with_parent)

    def stop(self, timeout: float = 15.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def check(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise ControlPlaneError(f"{self.name} exited with status {self.process.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ControlPlane:
    """``with ControlPlane() as cluster:`` starts etcd and kube-apiserver (plus kube-scheduler and the
    garbage-collecting kube-controller-manager unless told not to) and stops them all at the end."""

    def __init__(self, scheduler: bool = True, controller_manager: bool = True,
                 apiserver_args: tuple[str, ...] = (), workdir: Path | None = None,
                 scheduler_qps: int = 1000):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="kubetune-cluster-"))
        self._own_workdir = workdir is None
        self.with_scheduler, self.with_controller_manager = scheduler, controller_manager
        self.apiserver_args = apiserver_args
        self.scheduler_qps = scheduler_qps
        self.etcd_port, self.peer_port, self.port = free_port(), free_port(), free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.etcd_url = f"http://127.0.0.1:{self.etcd_port}"
        self.components: dict[str, _Component] = {}
        self.admin_kubeconfig = self.workdir / "admin.kubeconfig"
        self._context: ssl.SSLContext | None = None

    # -- lifecycle ----------------------------------------------------------------------------------------
    def __enter__(self) -> ControlPlane:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        _running.append(self)
        pki = Authority(self.workdir / "pki")
        self.ca = pki.ca
        serving = pki.issue("apiserver", "kube-apiserver", server=True,
                            hosts=("127.0.0.1", "localhost", "10.0.0.1", "kubernetes", "kubernetes.default",
                                   "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"))
        self.admin = pki.issue("admin", "kubetune-test-admin", organizations=("system:masters",))
        self.kubelet_client = pki.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                                        organizations=("system:masters",))
        self.kubelet_serving = pki.issue("kubelet", "kubetune-test-kubelet", server=True,
                                         hosts=("127.0.0.1", "localhost"))
        accounts = pki.signing_key("service-accounts")
        self._write_kubeconfig(self.admin_kubeconfig, "admin", {"client-certificate": str(self.admin.cert),
                                                                 "client-key": str(self.admin.key)})
        self._start_etcd()
        self._start_apiserver(serving, accounts)
        if self.with_controller_manager:
            self._start_controller_manager()
        if self.with_scheduler:
            self._start_scheduler()

    def stop(self) -> None:
        for component in reversed(list(self.components.values())):
            component.stop()
        if self in _running:
            _running.remove(self)
        if self._own_workdir and not os.environ.get("KUBETUNE_KEEP_CLUSTER"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def restart_apiserver(self) -> None:
        """Stops kube-apiserver and starts it again with the same flags (etcd keeps the data)."""
        apiserver = self.components["kube-apiserver"]
        apiserver.stop()
        apiserver.start()
        self._wait_ready(apiserver)

    def stop_apiserver(self) -> None:
        self.components["kube-apiserver"].stop()

    def start_apiserver(self) -> None:
        apiserver = self.components["kube-apiserver"]
        apiserver.start()
        self._wait_ready(apiserver)

    def pid(self, name: str) -> int | None:
        component = self.components.get(name)
        return component.process.pid if component and component.process else None

    # -- components ---------------------------------------------------------------------------------------
    def _component(self, name: str, args: list[str]) -> _Component:
        component = _Component(name, args, self.workdir / f"{name}.log")
        self.components[name] = component
        component.start()
        return component

    def _start_etcd(self) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        etcd = self._component("etcd", [
            str(binary("etcd")), "--name=default", f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=default={peer}", "--log-level=warn",
            "--unsafe-no-fsync",  # a test cluster: durability across a machine crash is not needed
            "--quota-backend-bytes=8589934592",
        ])
        self._wait(etcd, lambda: _get(f"{self.etcd_url}/health") is not None)

    def _start_apiserver(self, serving: KeyPair, accounts: KeyPair) -> None:
        args = [
            str(binary("kube-apiserver")), f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={self.port}",
            f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={self.ca.cert}", "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={accounts.cert}", f"--service-account-signing-key-file={accounts.key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--allow-privileged=true",
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={self.kubelet_client.cert}",
            f"--kubelet-client-key={self.kubelet_client.key}",
            # a loopback address cannot back the "kubernetes" Service's endpoints; nothing here needs them
            "--endpoint-reconciler-type=none", "--profiling=false", "--v=1",
            *self.apiserver_args,
        ]
        self._wait_ready(self._component("kube-apiserver", args))
        # the bootstrap controller creates the default namespaces just after the server is ready
        self._wait(self.components["kube-apiserver"], lambda: self.get("/api/v1/namespaces/default") is not None)

    def _start_controller_manager(self) -> None:
        self._component("kube-controller-manager", [
            str(binary("kube-controller-manager")), f"--kubeconfig={self.admin_kubeconfig}",
            # deleting an Experiment cascades through ownerReferences; namespaces get their default ServiceAccount;
            # ClusterRoles labelled aggregate-to-view/edit/admin join the built-in roles; ResourceQuotas get their
            # status (hard and used), without which admission refuses every pod of their namespace
            "--controllers=garbagecollector,serviceaccount,clusterrole-aggregation,resourcequota",
            "--leader-elect=false",
            "--secure-port=0",
            "--kube-api-qps=200", "--kube-api-burst=400", "--concurrent-gc-syncs=20", "--v=1",
        ])

    def _start_scheduler(self) -> None:
        config = self.workdir / "scheduler.yaml"
        config.write_text(yaml.safe_dump({
            "apiVersion": "kubescheduler.config.k8s.io/v1", "kind": "KubeSchedulerConfiguration",
            "clientConnection": {"kubeconfig": str(self.admin_kubeconfig), "qps": self.scheduler_qps,
                                 "burst": self.scheduler_qps * 2},
            "leaderElection": {"leaderElect": False},
        }))
        self._component("kube-scheduler", [str(binary("kube-scheduler")), f"--config={config}", "--secure-port=0",
                                           "--v=1"])

    def _wait_ready(self, apiserver: _Component) -> None:
        self._wait(apiserver, lambda: self.get("/readyz") == "ok")

    def _wait(self, component: _Component, ready, timeout: float = START_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            component.check()
            with contextlib.suppress(Exception):
                if ready():
                    return
            time.sleep(0.1)
        raise ControlPlaneError(f"{component.name} was not ready after {timeout:.0f} s:\n{component.tail()}")

    # -- talking to it ------------------------------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        """The admin's TLS context, made once: loading certificates for every request also tripped over
        errors that other TLS connections of the same thread had left in OpenSSL's error queue."""
        if self._context is None:
            self._context = ssl.create_default_context(cafile=str(self.ca.cert))
            self._context.load_cert_chain(str(self.admin.cert), str(self.admin.key))
        return self._context

    def get(self, path: str) -> Any:
        """GET as the admin: parsed JSON, text for non-JSON answers, None for 404."""
        return _get(self.url + path, self.ssl_context())

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": content_type, "Accept": "application/json"})
        with urllib.request.urlopen(request, context=self.ssl_context(), timeout=30) as response:
            text = response.read().decode()
        return json.loads(text) if text else None

    def metrics(self) -> str:
        return self.get("/metrics")

    def kubeconfig_for_token(self, path: Path, user: str, token: str) -> Path:
        self._write_kubeconfig(path, user, {"token": token})
        return path

    def service_account_kubeconfig(self, path: Path, namespace: str, name: str,
                                   seconds: int = 86400) -> Path:
        """A kubeconfig that authenticates as ServiceAccount ``namespace/name``, with a token from the
        TokenRequest API (as a projected token in a pod would)."""
        answer = self.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
                              {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                               "spec": {"expirationSeconds": seconds}})
        return self.kubeconfig_for_token(path, f"system:serviceaccount:{namespace}:{name}",
                                         answer["status"]["token"])

    def _write_kubeconfig(self, path: Path, user: str, credentials: dict[str, str]) -> None:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "kubetune-test",
            "clusters": [{"name": "kubetune-test", "cluster": {"server": self.url,
                                                               "certificate-authority": str(self.ca.cert)}}],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": "kubetune-test", "context": {"cluster": "kubetune-test", "user": user,
                                                               "namespace": "default"}}],
        }))
        path.chmod(0o600)

    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        """A namespace with its ``default`` ServiceAccount (which pods need to be admitted)."""
        self.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                    "metadata": {"name": name, "labels": labels or {}}})
        path = f"/api/v1/namespaces/{name}/serviceaccounts/default"
        if self.with_controller_manager:
            deadline = time.monotonic() + 30
            while self.get(path) is None and time.monotonic() < deadline:
                time.sleep(0.05)
        if self.get(path) is None:
            self.request("POST", f"/api/v1/namespaces/{name}/serviceaccounts",
                         {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})


def _get(url: str, context: ssl.SSLContext | None = None) -> Any:
    try:
        with urllib.request.urlopen(url, context=context, timeout=10) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise
    try:
        return json.loads(text)
    except ValueError:
        return text


@contextlib.contextmanager
def control_plane(**options: Any) -> Iterator[ControlPlane]:
    with ControlPlane(**options) as cluster:
        yield cluster


@atexit.register
def _stop_all() -> None:
    for cluster in list(_running):
        cluster.stop()
