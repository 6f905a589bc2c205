"""KMock's KubernetesEmulator, extended where the operator and kubectl need a real API server's behaviour
(see ../shared/KMOCK-NOTES.md), run on a loopback port in a background thread, with a test kubelet.

Extensions, each something a real API server does:
- created objects get ``uid``, ``creationTimestamp``, ``generation``, a real ``resourceVersion`` and the
  namespace from the URL; ``generateName`` is honoured (kopf's Events use it);
- every write bumps ``resourceVersion``;
- lists carry ``kind``/``apiVersion`` and honour equality label selectors;
- ``pods/NAME/log`` serves the log the test kubelet wrote (400 while the pod has not started);
- a finished pod's trial container has ``state.terminated`` with exit code and termination message.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp.web
import kmock
from kmock import KubernetesEmulator
from kmock._internal import parsing as kmock_parsing
from kmock._internal.k8s import KubernetesScaffold

from kubetune.core.crd import GROUP, VERSION
from kubetune.core.pods import EXPERIMENT_LABEL

_parse_path = kmock_parsing.parse_path


def _parse_path_with_namespaces(path: str) -> kmock_parsing.ParsedPath:
    """KMock reads ``/api/v1/namespaces[/NAME]`` as "namespace NAME" and fails on the bare list; a real
    server serves them as the cluster-scoped resource ``namespaces``."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 4:
        return kmock_parsing.ParsedPath("", "v1", "namespaces", None, parts[3] if len(parts) == 4 else None, None)
    return _parse_path(path)


kmock_parsing.parse_path = _parse_path_with_namespaces

KINDS = {"experiments": "Experiment", "trials": "Trial", "pods": "Pod", "events": "Event",
         "customresourcedefinitions": "CustomResourceDefinition"}


INDEXED = {"pods", "trials", "experiments"}
UNFINISHED = "status.phase!=Succeeded,status.phase!=Failed"


def _fields_match(obj: dict[str, Any], selector: str) -> bool:
    """A field selector of ``path=value`` and ``path!=value`` terms (a real server supports a few paths per
    kind, ``status.phase`` for pods among them; a pod without a phase yet is Pending)."""
    for term in selector.split(","):
        negated = "!=" in term
        path, value = term.split("!=" if negated else "=", 1)
        found: Any = obj
        for part in path.split("."):
            found = found.get(part) if isinstance(found, dict) else None
        if path == "status.phase" and found is None:
            found = "Pending"
        if (str(found) == value) == negated:
            return False
    return True  # created only through the API, so the indexes see them all


class _DirectDispatch(KubernetesScaffold):
    """Serves the object requests (all but watches) by calling the emulator's own ``_serve_*`` directly. KMock
    routes every request through its generic reaction matching (sorting and testing every declared reaction,
    inspecting the callable's signature to render it), which cost more than the storage work itself and made
    the scale benchmark measure the emulator. The emulator declares no reactions of its own for objects, so
    the outcome is the same; errors are still rendered by KMock as Kubernetes Status objects."""

    __slots__ = ()

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        serve = None if request.resource is None or not request.resource.plural or request.subresource == "log" else {
            kmock.action.LIST: self._serve_list, kmock.action.FETCH: self._serve_fetch,
            kmock.action.CREATE: self._serve_create, kmock.action.UPDATE: self._serve_update,
            kmock.action.DELETE: self._serve_delete,
        }.get(request.action)
        if serve is None:
            return await super()._handle(request)
        return aiohttp.web.json_response(await serve(request))


class ClusterEmulator(KubernetesEmulator, _DirectDispatch):
    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self._versions = itertools.count(1)
        self.logs: dict[tuple[str, str], str] = {}
        # (client, verb, resource) -> count, and when each pod was created: for the scale benchmark.
        self.requests_by_client: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.pod_created_at: dict[str, float] = {}
        self._indexed_resources: set[Any] = set()
        self._by_namespace: dict[tuple, dict[tuple, None]] = {}
        self._by_experiment: dict[tuple, dict[tuple, None]] = {}
        self._resources_known: list[Any] = []
        self._resources_signature: tuple[int, int] | None = None
        self.resources[f"{GROUP}/{VERSION}/experiments"] = kmock.ResourceInfo(
            kind="Experiment", singular="experiment", namespaced=True, subresources={"status"},
            shortnames={"kexp"}, verbs={"get", "list", "watch", "create", "update", "patch", "delete"})
        self.resources[f"{GROUP}/{VERSION}/trials"] = kmock.ResourceInfo(
            kind="Trial", singular="trial", namespaced=True, subresources={"status"}, shortnames={"ktrial"},
            verbs={"get", "list", "watch", "create", "update", "patch", "delete"})
        self.resources["v1/pods"] = kmock.ResourceInfo(
            kind="Pod", singular="pod", namespaced=True, subresources={"status", "log"},
            verbs={"get", "list", "watch", "create", "update", "patch", "delete"})
        self.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = kmock.ResourceInfo(
            kind="CustomResourceDefinition", singular="customresourcedefinition", namespaced=False,
            verbs={"get", "list", "watch", "create", "update", "patch", "delete"})
        self.resources["v1/namespaces"] = kmock.ResourceInfo(
            kind="Namespace", singular="namespace", namespaced=False, verbs={"get", "list", "watch"})
        self.resources["coordination.k8s.io/v1/leases"] = kmock.ResourceInfo(
            kind="Lease", singular="lease", namespaced=True, verbs={"get", "list", "watch", "create", "patch"})
        self.resources["v1/events"] = kmock.ResourceInfo(
            kind="Event", singular="event", namespaced=True, verbs={"get", "list", "watch", "create", "patch"})

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        # KMock remembers every request for assertions, and matching a new request against its reactions
        # walks that whole history: quadratic, and minutes at the scale benchmark's tens of thousands of
        # requests. Nothing here asserts on the history, so only the current request is kept.
        del self._requests[:-1]
        if request.resource is not None:
            agent = request.headers.get("User-Agent", "")
            client = "kubelet" if "kubelet" in agent else "kubectl" if "kubectl" in agent else "operator"
            self.requests_by_client[client, str(request.method.value).upper(), request.resource.plural] += 1
            if request.resource.plural == "pods" and request.action == kmock.action.CREATE:
                self.pod_created_at[request.data.get("metadata", {}).get("name", "")] = time.monotonic()
        if request.resource is not None and request.subresource == "log" and request.name:
            return await self._serve_log(request)
        if request.resource is not None and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if request.action == kmock.action.CREATE:
                if not meta.get("name") and meta.get("generateName"):
                    meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
                if request.namespace:
                    meta.setdefault("namespace", request.namespace)
                meta.update(uid=str(uuid.uuid4()), generation=1, resourceVersion=str(next(self._versions)),
                            creationTimestamp=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            elif request.action == kmock.action.UPDATE:
                # A resourceVersion in a patch is a precondition (KMock ignores it): leader election needs the
                # 409 a real server answers when the object changed since it was read.
                expected = meta.get("resourceVersion")
                stored = self._stored(request.resource, request.namespace, request.name)
                current = stored.raw if stored is not None and not stored.deleted else None
                if expected and current and current.get("metadata", {}).get("resourceVersion") != expected:
                    return aiohttp.web.json_response(
                        {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict",
                         "code": 409, "message": "the object has been modified"}, status=409)
                meta["resourceVersion"] = str(next(self._versions))
        response = await super()._handle(request)
        if request.resource is not None and request.action == kmock.action.CREATE and isinstance(request.data, dict):
            self._index(request)
        return response

    # Lists: KMock walks every stored object (and computes the set of known resources from them) on every
    # request, so each list cost O(all objects) and the 100-experiment benchmark measured the emulator. Objects
    # the API creates are indexed by namespace and by their kubetune.io/experiment label (which never changes
    # after creation), and a list reads only its own objects.
    def _index(self, request: kmock.Request) -> None:
        meta = request.data.get("metadata", {})
        namespace = request.namespace or meta.get("namespace")
        key = (request.resource, namespace, meta.get("name"))
        if key not in self.objects._objects:
            return
        self._indexed_resources.add(request.resource)
        self._by_namespace.setdefault((request.resource, namespace), {})[key] = None
        experiment = (meta.get("labels") or {}).get(EXPERIMENT_LABEL)
        if experiment is not None:
            self._by_experiment.setdefault((request.resource, namespace, experiment), {})[key] = None

    def _get_resources(self) -> list[Any]:
        signature = (len(self.resources), len(self._indexed_resources))
        if signature != self._resources_signature:  # a resource was declared or first created
            self._resources_known, self._resources_signature = list(super()._get_resources()), signature
        return self._resources_known

    # KMock finds the object a request names by scanning every stored object: a request costs O(objects), and
    # the scale benchmark's tens of thousands of objects made the emulator, not the operator, the bottleneck.
    # These look it up by its key instead (the same key KMock stores it under).
    def _stored(self, resource: Any, namespace: str | None, name: str | None) -> Any:
        return self.objects._objects.get((resource, namespace, name))

    async def _serve_fetch(self, request: kmock.Request) -> Any:
        obj = self._stored(request.resource, request.namespace, request.name)
        if obj is None or obj.deleted:
            return await super()._serve_fetch(request)
        return obj.raw

    async def _serve_create(self, request: kmock.Request) -> Any:
        meta = request.data.get("metadata", {}) if isinstance(request.data, dict) else {}
        namespace, name = request.namespace or meta.get("namespace"), request.name or meta.get("name")
        obj = self._stored(request.resource, namespace, name)
        return obj.raw if obj is not None and not obj.deleted else await super()._serve_create(request)

    async def _serve_update(self, request: kmock.Request) -> Any:
        obj = self._stored(request.resource, request.namespace, request.name)
        return obj.last.raw if obj is not None else await super()._serve_update(request)

    async def _serve_version(self, request: kmock.Request) -> Any:
        result = await super()._serve_version(request)
        result["groupVersion"] = result["groupVersion"].lstrip("/")  # the core group is "v1", not "/v1"
        return result

    async def _serve_list(self, request: kmock.Request) -> Any:
        selector = request.params.get("labelSelector")
        wanted = dict(part.split("=", 1) for part in selector.split(",") if "=" in part) if selector else {}
        if request.resource in self._indexed_resources and request.resource.plural in INDEXED:
            if request.namespace is not None and EXPERIMENT_LABEL in wanted:
                keys = list(self._by_experiment.get((request.resource, request.namespace, wanted[EXPERIMENT_LABEL]),
                                                    {}))
            else:
                keys = [key for (resource, namespace), found in self._by_namespace.items()
                        if resource == request.resource and request.namespace in (None, namespace) for key in found]
            stored = self.objects._objects
            result = {"metadata": {"resourceVersion": str(next(self._versions))},
                      "items": [stored[k].raw for k in keys if k in stored and not stored[k].deleted]}
        else:
            result = await super()._serve_list(request)
        if selector:
            result["items"] = [o for o in result["items"]
                               if all(o.get("metadata", {}).get("labels", {}).get(k) == v for k, v in wanted.items())]
        fields = request.params.get("fieldSelector")
        if fields:
            result["items"] = [o for o in result["items"] if _fields_match(o, fields)]
        plural = request.resource.plural
        group = request.resource.group
        result["kind"] = f"{KINDS.get(plural, plural.capitalize())}List"
        result["apiVersion"] = f"{group}/{request.resource.version}" if group else request.resource.version
        return result

    async def _serve_log(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        key = (request.namespace, request.name)
        if key not in self.logs:
            return aiohttp.web.json_response({"kind": "Status", "code": 400, "status": "Failure",
                                              "message": "container is waiting to start"}, status=400)
        return aiohttp.web.Response(text=self.logs[key])

    def pods(self) -> list[dict[str, Any]]:
        return [o.raw for (resource, _, _), o in self.objects.items()
                if resource.plural == "pods" and not o.deleted]

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        for (resource, ns, object_name), obj in self.objects.items():
            if resource.plural == plural and ns == namespace and object_name == name and not obj.deleted:
                return obj.raw
        return None


class RunningEmulator:
    """The emulator served on 127.0.0.1 from a background event loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.emulator: ClusterEmulator | None = None
        self.url = ""
        self._stop: asyncio.Event | None = None

    def __enter__(self) -> RunningEmulator:
        self.thread.start()
        if not self.ready.wait(20):
            raise RuntimeError("the emulator did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with ClusterEmulator() as emulator, kmock.Server(emulator) as server:
            namespace = kmock.resource(group="", version="v1", plural="namespaces")
            emulator.objects[namespace, None, "default"] = {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}
            self.emulator = emulator
            self.url = str(server.url).rstrip("/")
            self.ready.set()
            await self._stop.wait()

    def call(self, function: Callable[[], Any]) -> Any:
        """Runs ``function`` (a coroutine function) on the emulator's loop and waits for it."""
        return asyncio.run_coroutine_threadsafe(function(), self.loop).result(30)

    def kubeconfig(self, path) -> None:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester",
                                                          "namespace": "default"}}],
            "users": [{"name": "tester", "user": {"token": "test"}}],
        }))


class EmulatedKubelet:
    """A test kubelet for the emulator: every ``interval`` it starts pending pods and finishes running
    ones (at once, or once they ran ``duration(pod)`` seconds), through the pod status API as a real kubelet
    does (so watchers see every change). A finished
    trial container reports ``(x - 2)^2`` from its KUBETUNE_PARAMS in the SDK's termination-message form;
    ``fail`` decides which pods exit with status 1 instead."""

    def __init__(self, url: str, interval: float = 0.05, fail: Callable[[dict], bool] = lambda pod: False,
                 duration: Callable[[dict], float] | None = None):
        from kubernetes import client

        api_client = client.ApiClient(client.Configuration(host=url))
        api_client.user_agent = "kubetune-test-kubelet"
        self.api = client.CoreV1Api(api_client)
        self.interval = interval
        self.finished_at: dict[str, float] = {}
        self.started_at: dict[str, float] = {}
        self.duration = duration
        self.fail = fail
        self.max_running = 0
        self.finished: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> EmulatedKubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            # Only the pods it still has to move, as a real kubelet asks only for its own node's pods.
            response = self.api.list_namespaced_pod("default", field_selector=UNFINISHED, _preload_content=False)
            pods = json.loads(response.data)["items"]
            running = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"]
            self.max_running = max(self.max_running, len(running) + sum(
                1 for p in pods if (p.get("status") or {}).get("phase", "Pending") == "Pending"))
            for pod in pods:
                phase = (pod.get("status") or {}).get("phase", "Pending")
                name = pod["metadata"]["name"]
                if phase == "Pending":
                    self._patch(pod, {"phase": "Running", "containerStatuses": [
                        {"name": pod["spec"]["containers"][0]["name"], "state": {"running": {}}}]})
                    self.started_at[name] = time.monotonic()
                elif phase == "Running" and (self.duration is None or time.monotonic() - self.started_at.get(
                        name, 0.0) >= self.duration(pod)):
                    self._patch(pod, self._finished(pod))
                    self.finished.append(pod["metadata"]["name"])
                    self.finished_at[pod["metadata"]["name"]] = time.monotonic()

    def _finished(self, pod: dict) -> dict:
        container = pod["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        x = float(json.loads(env["KUBETUNE_PARAMS"]).get("x", 0.0))
        if self.fail(pod):
            terminated = {"exitCode": 1, "reason": "Error", "message": "Traceback: boom"}
            return {"phase": "Failed", "containerStatuses": [{"name": container["name"],
                                                              "state": {"terminated": terminated}}]}
        value = (x - 2.0) ** 2
        summary = {"kubetune": {"metrics": {"loss": {"count": 1, "latest": value, "min": value, "max": value}}}}
        terminated = {"exitCode": 0, "reason": "Completed", "message": json.dumps(summary)}
        return {"phase": "Succeeded", "containerStatuses": [{"name": container["name"],
                                                             "state": {"terminated": terminated}}]}

    def _patch(self, pod: dict, status: dict) -> None:
        image = pod["spec"]["containers"][0].get("image", "")
        for container in status.get("containerStatuses", []):
            ready = "running" in container["state"]
            container.update(image=image, imageID=f"{image}@sha256:0", ready=ready, restartCount=0)
        self.api.patch_namespaced_pod_status(pod["metadata"]["name"], "default", {"status": status},
                                             _preload_content=False)
