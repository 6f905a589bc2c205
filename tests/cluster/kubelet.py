"""A test kubelet for the real API server: fake Nodes, and their pods moved through Pending → Running →
Succeeded/Failed the way a kubelet reports them, with no containers behind them.

It registers Nodes (addresses, allocatable ``pods``, CPU, memory and any GPU resources; the not-ready taint
that admission adds on create is removed, as the node lifecycle controller would once the node is Ready),
watches every pod, and runs those bound to its nodes: ``pods/status`` with the container's running and
terminated states (exit code, reason, a termination message cut to its last 4 KiB as a kubelet does), the
pod-level reasons of an eviction or a deadline, and a log served on the kubelet's HTTPS endpoint, so that the
API server's ``pods/log`` (and ``kubectl logs``) works. Pods being deleted are force-deleted, as a kubelet
does once their containers stopped. Without kube-scheduler it binds pods itself through ``pods/binding``.

What each pod does is a :class:`Behaviour`, chosen per pod by a function the test gives; by default a trial
reports ``(x - 2)^2`` of its ``x`` parameter in the SDK's termination-message summary and exits 0
(``Behaviour(objective=hartmann6)`` reports Hartmann-6 of ``x0`` ... ``x5`` instead, for the scale benchmark).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import math
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import aiohttp.web

from kubetune.core import termination

RETRY_SECONDS = 120.0
MAX_TERMINATION_MESSAGE = 4096  # bytes a kubelet keeps of a container's termination message (the last ones)
TERMINAL = ("Succeeded", "Failed")


@dataclass(frozen=True)
class Behaviour:
    """What one pod's trial container does."""

    seconds: float = 0.0  # how long it runs
    exit_code: int = 0
    report: str = "termination"  # termination: the SDK's summary in the termination message; log: name=value lines
    log: str = ""  # printed before the report
    message: str | None = None  # the termination message, instead of the report
    oom: bool = False  # killed for exceeding its memory limit (exit code 137, OOMKilled)
    evict: bool = False  # evicted by the kubelet (pod-level reason Evicted)
    lose_node: bool = False  # its node disappears while it runs
    pending_seconds: float = 0.0  # Pending (pulling the image) before it runs
    reports: int = 0  # intermediate reports pushed while it runs (steps 1..reports, spread over ``seconds``)
    forge: str | None = None  # also pushes reports for this other trial: with its own token, and a made-up one
    held: bool = False  # after ``seconds``, runs on until the test lets it end (TestKubelet.release)
    objective: Callable[[dict[str, Any]], float] = lambda pod: objective(pod)  # the value it reports, from its pod


def _params(pod: dict[str, Any]) -> dict[str, Any]:
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    params: dict[str, Any] = json.loads(env.get("KUBETUNE_PARAMS") or "{}")
    return params


def objective(pod: dict[str, Any]) -> float:
    """The test trial's objective: ``(x - 2)^2`` of the pod's ``KUBETUNE_PARAMS``."""
    return (float(_params(pod).get("x", 0.0)) - 2.0) ** 2


# Hartmann-6 (Dixon and Szego's constants): six dimensions on the unit cube, four local minima, the global one
# -3.32237 at (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573).
_H6_A = ((10, 3, 17, 3.5, 1.7, 8), (0.05, 10, 17, 0.1, 8, 14), (3, 3.5, 1.7, 10, 17, 8), (17, 8, 0.05, 10, 0.1, 14))
_H6_P = ((0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886), (0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991),
         (0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650), (0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381))
_H6_ALPHA = (1.0, 1.2, 3.0, 3.2)
HARTMANN6_MINIMUM = -3.322368011391339


def hartmann6(pod: dict[str, Any]) -> float:
    """Hartmann-6 of the pod's ``x0`` ... ``x5`` (each in [0, 1]) from its ``KUBETUNE_PARAMS``."""
    params = _params(pod)
    x = [float(params.get(f"x{i}", 0.0)) for i in range(6)]
    return -sum(alpha * math.exp(-sum(a * (xi - p) ** 2 for a, xi, p in zip(row, x, centre, strict=True)))
                for alpha, row, centre in zip(_H6_ALPHA, _H6_A, _H6_P, strict=True))


def default_behaviour(pod: dict[str, Any]) -> Behaviour:
    return Behaviour()


@dataclass(frozen=True)
class FakeNode:
    name: str
    pods: int = 110
    cpu: str = "64"
    memory: str = "512Gi"
    extended: dict[str, str] = field(default_factory=dict)  # e.g. {"nvidia.com/gpu": "4"}

    def body(self, port: int) -> dict[str, Any]:
        resources = {"pods": str(self.pods), "cpu": self.cpu, "memory": self.memory, **self.extended}
        now = _now()
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": {"kubernetes.io/hostname": self.name, "kubernetes.io/os": "linux",
                                                       "kubernetes.io/arch": "amd64", "kubetune.io/test-node": "true"}},
            "status": {
                "capacity": resources, "allocatable": resources,
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                "message": "kubelet is posting ready status", "lastHeartbeatTime": now,
                                "lastTransitionTime": now}],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                              {"type": "Hostname", "address": self.name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
                "nodeInfo": {"kubeletVersion": "v1.37.2", "containerRuntimeVersion": "kubetune-test://1",
                             "architecture": "amd64", "operatingSystem": "linux", "machineID": self.name,
                             "systemUUID": self.name, "bootID": self.name, "kernelVersion": "6.1",
                             "osImage": "kubetune test node", "kubeProxyVersion": ""},
            },
        }


@dataclass(frozen=True)
class Connection:
    """How to reach the API server as an admin (picklable, for a kubelet in its own process)."""

    url: str
    ca: str
    cert: str
    key: str
    serving_cert: str  # the kubelet's own HTTPS endpoint
    serving_key: str

    @classmethod
    def of(cls, cluster: Any) -> Connection:
        return cls(cluster.url, str(cluster.ca.cert), str(cluster.admin.cert), str(cluster.admin.key),
                   str(cluster.kubelet_serving.cert), str(cluster.kubelet_serving.key))

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca)
        context.load_cert_chain(self.cert, self.key)
        return context

    def serving_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.serving_cert, self.serving_key)
        return context


@dataclass
class _Container:
    """What the kubelet knows of one pod it runs."""

    pod: dict[str, Any]
    log: str = ""
    started: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None


class TestKubelet:
    """``with TestKubelet(cluster, nodes) as kubelet:`` runs the kubelet in a thread of its own (its own
    event loop). ``stats`` and the recorded times may be read while it runs."""

    __test__ = False  # not a pytest test class

    def __init__(self, connection: Connection | Any, nodes: list[FakeNode] | None = None,
                 behaviour: Callable[[dict[str, Any]], Behaviour] = default_behaviour, bind: bool = False,
                 namespaces: list[str] | None = None, concurrency: int = 64):
        self.connection = connection if isinstance(connection, Connection) else Connection.of(connection)
        self.nodes = {node.name: node for node in (nodes or [FakeNode("node-1")])}
        self.behaviour = behaviour
        self.bind = bind
        self.namespaces = set(namespaces) if namespaces else None  # None: pods of every namespace
        self.concurrency = concurrency
        self.port = 0
        # per experiment (the kubetune.io/experiment label): pods not yet ended, and the most there ever were,
        # as the watch shows them at each resourceVersion
        self.unfinished: Counter[str] = Counter()
        self.max_unfinished: Counter[str] = Counter()
        self.terminal_patches = 0
        self.running_on: Counter[str] = Counter()  # node -> pods it runs now
        self.max_running_on: Counter[str] = Counter()
        self.running_total = 0
        self.max_running_total = 0
        self.errors: list[str] = []
        self.report_answers: list[tuple[str, str, int]] = []  # (pod, trial reported for, HTTP status or -1)
        self.lost: set[str] = set()
        self._held: dict[tuple[str, str], asyncio.Future[None]] = {}  # pods waiting for the test to end them
        self._containers: dict[tuple[str, str], _Container] = {}
        self._binding: set[tuple[str, str]] = set()
        self._phases: dict[tuple[str, str], tuple[str, str]] = {}  # pod -> (experiment, phase) as watched
        self._ips = itertools.count(2)
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._failure: BaseException | None = None

    # -- in a thread ----------------------------------------------------------------------------------------
    def __enter__(self) -> TestKubelet:
        self._thread = threading.Thread(target=self._thread_main, name="test-kubelet", daemon=True)
        self._thread.start()
        if not self._ready.wait(60) or self._failure is not None:
            raise RuntimeError(f"the test kubelet did not start: {self._failure!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(30)

    def _thread_main(self) -> None:
        try:
            asyncio.run(self.serve())
        except BaseException as exc:  # reported by __enter__, or kept for the test to see
            self._failure = exc
            self.errors.append(repr(exc))
            self._ready.set()

    def holding(self) -> list[str]:
        """The names of the pods whose containers are held (``Behaviour.held``) and wait to be released."""
        return sorted(name for _namespace, name in list(self._held))

    def release(self, names: list[str]) -> None:
        """Lets the held containers of these pods end (as their behaviour says); from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._release, set(names))

    def _release(self, names: set[str]) -> None:
        for (_namespace, name), waiting in list(self._held.items()):
            if name in names and not waiting.done():
                waiting.set_result(None)

    async def _hold(self, key: tuple[str, str]) -> None:
        self._held[key] = waiting = asyncio.get_running_loop().create_future()
        try:
            await waiting
        finally:
            self._held.pop(key, None)

    # -- the kubelet ----------------------------------------------------------------------------------------
    async def serve(self, stop: asyncio.Event | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = stop or asyncio.Event()
        self._limit = asyncio.Semaphore(self.concurrency)
        connector = aiohttp.TCPConnector(ssl=self.connection.client_context(), limit=self.concurrency + 8)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
        async with aiohttp.ClientSession(self.connection.url, connector=connector, timeout=timeout,
                                         headers={"User-Agent": "kubetune-test-kubelet"}) as self._session:
            runner = await self._serve_logs()
            try:
                for node in self.nodes.values():
                    await self._register(node)
                watching = asyncio.create_task(self._watch_pods())
                stopping = asyncio.create_task(self._stopping.wait())
                await asyncio.wait({watching, stopping}, return_when=asyncio.FIRST_COMPLETED)
                for task in (watching, stopping, *(c.task for c in self._containers.values() if c.task)):
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
                if watching.done() and not watching.cancelled() and watching.exception():
                    raise watching.exception()  # type: ignore[misc]
                for name in self.nodes:  # its nodes go with it: nothing would run what is placed there
                    with contextlib.suppress(Exception):
                        await self._call("DELETE", f"/api/v1/nodes/{name}", ok=(404,))
            finally:
                await runner.cleanup()

    async def _call(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                    ok: tuple[int, ...] = ()) -> Any:
        """One API call; like a kubelet it keeps trying while the server is away (restarting, say) or
        throttles it, for up to ``RETRY_SECONDS``."""
        data = None if body is None else json.dumps(body)
        deadline = time.monotonic() + RETRY_SECONDS
        async with self._limit:
            while True:
                try:
                    async with self._session.request(method, path, data=data,
                                                     headers={"Content-Type": content_type}) as response:
                        text = await response.text()
                        retry = response.status == 429 or response.status >= 500
                        if retry and time.monotonic() < deadline:
                            await asyncio.sleep(min(float(response.headers.get("Retry-After", "1")), 5.0))
                            continue
                        if response.status >= 400 and response.status not in ok:
                            raise RuntimeError(f"{method} {path}: {response.status} {text[:300]}")
                        return (response.status, json.loads(text)) if ok else json.loads(text) if text else None
                except (TimeoutError, aiohttp.ClientConnectionError):
                    if time.monotonic() >= deadline:
                        raise
                    await asyncio.sleep(0.5)

    async def _register(self, node: FakeNode) -> None:
        body = node.body(self.port)
        status, existing = await self._call("POST", "/api/v1/nodes", body, ok=(409,))
        if status == 409:
            await self._call("PATCH", f"/api/v1/nodes/{node.name}/status", {"status": body["status"]},
                             "application/merge-patch+json")
        # admission taints every new Node not-ready; a real node lifecycle controller lifts it once it is Ready
        await self._call("PATCH", f"/api/v1/nodes/{node.name}", {"spec": {"taints": None}},
                         "application/merge-patch+json")

    async def _watch_pods(self) -> None:
        while True:
            listing = await self._call("GET", "/api/v1/pods")
            listed = {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in listing.get("items", [])}
            for key in set(self._phases) - listed:  # deleted while no watch was open
                self._count("DELETED", key, {"metadata": {"labels": {"kubetune.io/experiment": self._phases[key][0]}}})
            for key in set(self._containers) - listed:
                self._forget(key)
            for pod in listing.get("items", []):
                self._observe("ADDED", pod)
            self._ready.set()
            version = listing["metadata"]["resourceVersion"]
            with contextlib.suppress(aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError,
                                     aiohttp.ClientConnectionError, asyncio.TimeoutError):
                version = await self._follow(version)
            await asyncio.sleep(0.2)  # the watch ended (expired, or the server restarted): list again

    async def _follow(self, version: str) -> str:
        params = {"watch": "1", "resourceVersion": version, "allowWatchBookmarks": "true", "timeoutSeconds": "300"}
        async with self._session.get("/api/v1/pods", params=params) as response:
            if response.status != 200:
                return version
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event["type"] == "ERROR":  # 410 Gone: the version is too old; list again
                    return version
                version = event["object"]["metadata"].get("resourceVersion", version)
                if event["type"] != "BOOKMARK":
                    self._observe(event["type"], event["object"])
        return version

    def _observe(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        if self.namespaces is not None and meta["namespace"] not in self.namespaces:
            return
        key = (meta["namespace"], meta["name"])
        self._count(kind, key, pod)
        container = self._containers.get(key)
        if kind == "DELETED":
            if container is not None:
                self._forget(key)
            return
        node = pod["spec"].get("nodeName")
        if not node and self.bind and pod["spec"].get("schedulerName", "default-scheduler") == "default-scheduler":
            if key not in self._binding:
                self._binding.add(key)
                asyncio.create_task(self._bind(key, pod))
            return
        if node not in self.nodes or node in self.lost:
            return
        if meta.get("deletionTimestamp"):
            asyncio.create_task(self._force_delete(key, meta["uid"]))
            return
        self._run_container(key, pod, container)

    def _run_container(self, key: tuple[str, str], pod: dict[str, Any], container: _Container | None) -> None:
        """Starts the container of a pod bound to one of this kubelet's nodes, once; keeps its pod current."""
        running = pod.get("status", {}).get("phase") not in TERMINAL
        if container is None and running:
            container = self._containers[key] = _Container(pod)
        if container is not None:
            container.pod = pod
            if container.task is None and running:
                container.task = asyncio.create_task(self._run(key, container))

    def _count(self, kind: str, key: tuple[str, str], pod: dict[str, Any]) -> None:
        experiment = pod["metadata"].get("labels", {}).get("kubetune.io/experiment")
        if not experiment:
            return
        phase = pod.get("status", {}).get("phase", "Pending")
        before = self._phases.get(key)
        if before is not None and before[1] not in TERMINAL:
            self.unfinished[experiment] -= 1
        if kind == "DELETED":
            self._phases.pop(key, None)
            return
        self._phases[key] = (experiment, phase)
        if phase not in TERMINAL:
            self.unfinished[experiment] += 1
            self.max_unfinished[experiment] = max(self.max_unfinished[experiment], self.unfinished[experiment])

    def _forget(self, key: tuple[str, str]) -> None:
        container = self._containers.pop(key, None)
        if container is not None and container.task is not None:
            container.task.cancel()

    async def _bind(self, key: tuple[str, str], pod: dict[str, Any]) -> None:
        usable = [n for n in self.nodes if n not in self.lost]
        bound = Counter(c.pod["spec"].get("nodeName") for c in self._containers.values())
        node = min(usable, key=lambda n: bound[n])
        namespace, name = key
        body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": namespace},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        try:  # the watch then shows it bound, and it runs
            await self._call("POST", f"/api/v1/namespaces/{namespace}/pods/{name}/binding", body, ok=(404, 409))
        except Exception as exc:
            self.errors.append(f"binding {namespace}/{name}: {exc}")
        finally:
            self._binding.discard(key)

    async def _force_delete(self, key: tuple[str, str], uid: str) -> None:
        self._forget(key)
        namespace, name = key
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": uid}}
        with contextlib.suppress(Exception):
            await self._call("DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}", body, ok=(404, 409))

    async def _run(self, key: tuple[str, str], container: _Container) -> None:
        pod = container.pod
        try:
            behaviour = self.behaviour(pod)
            if behaviour.pending_seconds:
                await asyncio.sleep(behaviour.pending_seconds)
            started = _now()
            await self._status(key, self._running(pod, started))
            container.started = True
            node = pod["spec"]["nodeName"]
            self.running_on[node] += 1
            self.max_running_on[node] = max(self.max_running_on[node], self.running_on[node])
            self.running_total += 1
            self.max_running_total = max(self.max_running_total, self.running_total)
            container.log = behaviour.log
            deadline = pod["spec"].get("activeDeadlineSeconds")
            if deadline is not None and behaviour.seconds > deadline:
                await asyncio.sleep(deadline)
                status = self._ended(pod, started, 137, "Error", None, phase="Failed", reason="DeadlineExceeded",
                                     message="Pod was active on the node longer than the specified deadline")
            else:
                await self._run_for(pod, behaviour)
                if behaviour.held:
                    await self._hold(key)
                if behaviour.lose_node:  # in a task of its own: it ends this one too
                    asyncio.create_task(self._lose_node(pod["spec"]["nodeName"]))
                    return
                status = self._outcome(pod, started, behaviour, container)
            await self._status(key, status)
            self.terminal_patches += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.errors.append(f"running {key[0]}/{key[1]}: {exc}")
        finally:
            if container.started:
                self.running_on[pod["spec"]["nodeName"]] -= 1
                self.running_total -= 1
            container.ended.set()

    async def _run_for(self, pod: dict[str, Any], behaviour: Behaviour) -> None:
        """Runs for ``behaviour.seconds``, pushing its reports to the operator's endpoint as the SDK does:
        ``loss = (x - 2)^2 + 1/step``, with the pod's ``KUBETUNE_REPORT_URL`` and ``KUBETUNE_REPORT_TOKEN``."""
        if not behaviour.reports:
            await asyncio.sleep(behaviour.seconds)
            return
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}
        for step in range(1, behaviour.reports + 1):
            await asyncio.sleep(behaviour.seconds / behaviour.reports)
            values = {"step": step, "loss": behaviour.objective(pod) + 1.0 / step}
            if behaviour.forge:  # before its own report, which may get it stopped (and this task cancelled)
                await self._push(pod, env, behaviour.forge, env.get("KUBETUNE_REPORT_TOKEN", ""), values)
                made_up = base64.urlsafe_b64encode(f"{pod['metadata']['namespace']}/{behaviour.forge}/1".encode())
                await self._push(pod, env, behaviour.forge, made_up.decode().rstrip("=") + "." + "A" * 43, values)
            await self._push(pod, env, env.get("KUBETUNE_TRIAL", ""), env.get("KUBETUNE_REPORT_TOKEN", ""), values)

    async def _push(self, pod: dict[str, Any], env: dict[str, Any], trial: str, token: str,
                    values: dict[str, float]) -> None:
        """One report, its answer kept in ``report_answers`` as (pod, trial reported for, status)."""
        url = env.get("KUBETUNE_REPORT_URL")
        if not url:
            self.report_answers.append((pod["metadata"]["name"], trial, 0))
            return
        body = {"trial": trial, "namespace": pod["metadata"]["namespace"], "values": values}
        try:
            async with aiohttp.ClientSession() as session, session.post(
                    url, json=body, headers={"Authorization": f"Bearer {token}"},
                    timeout=aiohttp.ClientTimeout(total=2)) as answer:
                self.report_answers.append((pod["metadata"]["name"], trial, answer.status))
        except (TimeoutError, aiohttp.ClientError):  # as the SDK: a report not delivered, the trial goes on
            self.report_answers.append((pod["metadata"]["name"], trial, -1))

    def _outcome(self, pod: dict[str, Any], started: str, behaviour: Behaviour, container: _Container
                 ) -> dict[str, Any]:
        if behaviour.evict:
            return self._ended(pod, started, 137, "ContainerStatusUnknown",
                               "The container could not be located when the pod was terminated", phase="Failed",
                               reason="Evicted", message="The node was low on resource: memory. Threshold quantity: "
                               "100Mi, available: 64Mi.")
        if behaviour.oom:
            return self._ended(pod, started, 137, "OOMKilled", None, phase="Failed")
        value = behaviour.objective(pod)
        if behaviour.report == "log":
            container.log += f"epoch 1: loss={value * 2 + 1}\nepoch 2: loss={value}\n"
            message = behaviour.message
        else:
            summary: dict[str, dict[str, float]] = {}
            termination.add(summary, "loss", value)
            message = behaviour.message if behaviour.message is not None else termination.encode(summary)
        reason = "Completed" if behaviour.exit_code == 0 else "Error"
        return self._ended(pod, started, behaviour.exit_code, reason, message,
                           phase="Succeeded" if behaviour.exit_code == 0 else "Failed")

    async def _status(self, key: tuple[str, str], status: dict[str, Any]) -> None:
        namespace, name = key
        await self._call("PATCH", f"/api/v1/namespaces/{namespace}/pods/{name}/status", {"status": status},
                         "application/merge-patch+json")

    def _running(self, pod: dict[str, Any], started: str) -> dict[str, Any]:
        number = next(self._ips)
        ip = f"10.244.{number // 250 % 250}.{number % 250 + 2}"
        return {
            "phase": "Running", "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}], "podIP": ip,
            "podIPs": [{"ip": ip}], "startTime": started,
            "conditions": _conditions(started, ready=True),
            "containerStatuses": [_container_status(c, {"running": {"startedAt": started}}, ready=True)
                                  for c in pod["spec"]["containers"]],
        }

    def _ended(self, pod: dict[str, Any], started: str, exit_code: int, container_reason: str,
               container_message: str | None, phase: str, reason: str | None = None,
               message: str | None = None) -> dict[str, Any]:
        terminated: dict[str, Any] = {"exitCode": exit_code, "reason": container_reason, "startedAt": started,
                                      "finishedAt": _now(), "containerID": _container_id(pod)}
        if container_message:
            terminated["message"] = _truncated(container_message)
        status: dict[str, Any] = {
            "phase": phase, "conditions": _conditions(started, ready=False, reason="PodCompleted"),
            "containerStatuses": [_container_status(c, {"terminated": terminated}, ready=False)
                                  for c in pod["spec"]["containers"]],
        }
        if reason:
            status.update(reason=reason, message=message)
        return status

    async def _lose_node(self, name: str) -> None:
        self.lost.add(name)
        with contextlib.suppress(Exception):
            await self._call("DELETE", f"/api/v1/nodes/{name}", ok=(404,))
        for key, container in list(self._containers.items()):
            if container.pod["spec"].get("nodeName") != name:
                continue
            self._forget(key)
            status = {"phase": "Failed", "conditions": [
                {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC",
                 "message": "PodGC: node no longer exists", "lastTransitionTime": _now()}]}
            with contextlib.suppress(Exception):
                await self._status(key, status)
                await self._force_delete(key, container.pod["metadata"]["uid"])

    # -- the kubelet's HTTPS endpoint: container logs ------------------------------------------------------
    async def _serve_logs(self) -> aiohttp.web.AppRunner:
        app = aiohttp.web.Application()
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        runner = aiohttp.web.AppRunner(app, access_log=None)
        await runner.setup()
        site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self.connection.serving_context())
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return runner

    async def _logs(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        namespace, name, container_name = (request.match_info[k] for k in ("namespace", "pod", "container"))
        container = self._containers.get((namespace, name))
        if container is None:
            return aiohttp.web.Response(status=404, text=f"pod {namespace}/{name} is not on this node")
        if not container.started:
            return aiohttp.web.Response(status=400, text=f'container "{container_name}" in pod "{name}" is waiting to '
                                                         "start: ContainerCreating")
        if request.query.get("follow") == "true":
            await container.ended.wait()
        text = container.log
        if "tailLines" in request.query:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(request.query["tailLines"]):]) if int(request.query["tailLines"]) else ""
        if "limitBytes" in request.query:
            text = text.encode()[: int(request.query["limitBytes"])].decode(errors="ignore")
        return aiohttp.web.Response(text=text)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _truncated(message: str) -> str:
    data = message.encode()
    return data[-MAX_TERMINATION_MESSAGE:].decode(errors="ignore") if len(data) > MAX_TERMINATION_MESSAGE else message


def _container_id(pod: dict[str, Any]) -> str:
    return "containerd://" + pod["metadata"]["uid"].replace("-", "")


def _container_status(container: dict[str, Any], state: dict[str, Any], ready: bool) -> dict[str, Any]:
    image = container.get("image", "")
    return {"name": container["name"], "image": image, "imageID": f"{image}@sha256:{'0' * 64}", "ready": ready,
            "started": ready, "restartCount": 0, "state": state,
            **({"containerID": state["terminated"]["containerID"]} if "terminated" in state else {})}


def _conditions(started: str, ready: bool, reason: str | None = None) -> list[dict[str, Any]]:
    flag = "True" if ready else "False"
    extra = {"reason": reason} if reason and not ready else {}
    return [
        {"type": "PodReadyToStartContainers", "status": "True", "lastTransitionTime": started},
        {"type": "Initialized", "status": "True", "lastTransitionTime": started},
        {"type": "Ready", "status": flag, "lastTransitionTime": started, **extra},
        {"type": "ContainersReady", "status": flag, "lastTransitionTime": started, **extra},
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
    ]
