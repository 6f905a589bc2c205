"""The operator's view of the Kubernetes API: the few calls it makes, behind one small protocol.

:class:`KubernetesApi` implements it over the official ``kubernetes`` client's configuration, credentials
and connection pool, each call in a worker thread so the event loop never blocks; tests implement it in
memory. Listing is by the ``kubetune.io/experiment``
label, and results are filtered again on this side, so a server that ignores selectors does no harm.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import urllib.parse
from collections.abc import Callable
from typing import Any, Protocol

from kubetune.core.cluster.crd import GROUP, VERSION
from kubetune.core.cluster.pods import EXPERIMENT_LABEL

API_THREADS = 32
# Status writes (a trial marked Running, a result, the Experiment's status) have threads of their own: behind a
# burst of them, a refill's creates would otherwise wait in the same queue.
STATUS_THREADS = 16
LIST_PAGE = 500  # objects per page of a listing: each page is shaped before the next is read, bounding memory
THROTTLED_RETRIES = 5  # a 429 from API Priority and Fairness is retried this often, after its Retry-After
UNFINISHED_PODS = "status.phase!=Succeeded,status.phase!=Failed"
AUTH_SETTINGS = ["BearerToken"]  # the client's name for its token credentials (certificates are the pool's)
PROBE_SECONDS = 30  # a watch's connection is given this long to be made, and its stream this long past its end


class ApiError(Exception):
    """A call the API server refused or could not answer; the message is the server's own where it gave one."""

    status: int | None = None


class Conflict(ApiError):
    """The object already exists, or changed since the ``resourceVersion`` a conditional write named."""

    status = 409


class NotFound(ApiError):
    """The object does not exist."""

    status = 404


class Forbidden(ApiError):
    """RBAC refused the call: the operator's ServiceAccount lacks a permission."""

    status = 403


class Throttled(ApiError):
    """API Priority and Fairness kept answering 429."""

    status = 429


class Unavailable(ApiError):
    """The API server could not be reached, or answered with a server error."""


class ClusterApi(Protocol):
    """``list(..., unfinished=True)`` lists only pods neither Succeeded nor Failed."""

    async def list(self, kind: str, namespace: str, experiment: str,
                   shape: Callable[[dict[str, Any]], dict[str, Any]] = ...,
                   unfinished: bool = False) -> list[dict[str, Any]]: ...
    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]: ...
    async def create(self, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]: ...
    async def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None: ...
    async def delete(self, kind: str, namespace: str, name: str) -> None: ...
    async def pod_log(self, namespace: str, name: str, container: str) -> str: ...


def belongs(obj: dict[str, Any], experiment: str) -> bool:
    return obj.get("metadata", {}).get("labels", {}).get(EXPERIMENT_LABEL) == experiment


class LeaseApi(Protocol):
    """The Lease calls of leader election; ``patch_lease`` fails with :class:`Conflict` when the Lease's
    ``resourceVersion`` is no longer ``resource_version``."""

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any]: ...
    async def create_lease(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]: ...
    async def patch_lease(self, namespace: str, name: str, resource_version: str,
                          spec: dict[str, Any]) -> dict[str, Any]: ...


class SecretApi(Protocol):
    """The Secret calls that keep the report key (:mod:`kubetune.operator.reports`)."""

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any]: ...
    async def create_secret(self, namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]: ...


class KubernetesApi:
    """:class:`ClusterApi` and :class:`LeaseApi` over the official client (in-cluster config or the user's
    kubeconfig)."""

    def __init__(self, api_client: Any = None, on_throttled: Callable[[], None] = lambda: None):
        import urllib3
        from kubernetes import client, config

        if api_client is None:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            api_client = client.ApiClient()
        # The reconciler keeps many calls in flight (each a blocking client call in a thread): asyncio's default
        # executor has only cpu_count + 4 threads, which capped them at 6 on a 2-core node.
        api_client.configuration.connection_pool_maxsize = API_THREADS + STATUS_THREADS
        api_client.rest_client.pool_manager.connection_pool_kw["maxsize"] = API_THREADS + STATUS_THREADS
        self._threads = concurrent.futures.ThreadPoolExecutor(API_THREADS, thread_name_prefix="kubetune-api")
        self._status_threads = concurrent.futures.ThreadPoolExecutor(STATUS_THREADS,
                                                                     thread_name_prefix="kubetune-status")
        self._client = api_client
        self._pool = api_client.rest_client.pool_manager
        self._host = api_client.configuration.host.rstrip("/")
        self._core = client.CoreV1Api(api_client)
        self._coordination = client.CoordinationV1Api(api_client)
        self._exceptions = client.exceptions
        self._unreachable = (urllib3.exceptions.HTTPError, OSError)
        self._on_throttled = on_throttled

    async def _call(self, request: Callable[[], Any], parse: bool = True,
                    then: Callable[[Any], Any] = lambda answer: answer, status_write: bool = False) -> Any:
        """Makes ``request`` (a blocking call that answers with the raw response) in a worker thread; answers
        are plain JSON (no model classes), or text for logs, or None when the caller has no use for them
        (``parse=False``), passed through ``then`` in the same thread. Failures become :class:`ApiError`
        subclasses carrying the server's message."""
        call = functools.partial(_answer, request, parse, then)
        for attempt in range(THROTTLED_RETRIES + 1):
            try:
                threads = self._status_threads if status_write else self._threads
                return await asyncio.get_running_loop().run_in_executor(threads, call)
            except self._exceptions.ApiException as exc:
                if exc.status == 429 and attempt < THROTTLED_RETRIES:
                    self._on_throttled()
                    await asyncio.sleep(_retry_after(exc))
                    continue
                raise _api_error(exc) from None
            except self._unreachable as exc:
                raise Unavailable(f"the API server could not be reached: {exc}") from None
        raise AssertionError("unreachable")

    def _client_call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], Any]:
        """A call of the client's own (the rare ones: leases, secrets), answering with the raw response."""
        return functools.partial(function, *args, _preload_content=False, **kwargs)

    def _request(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None,
                 content_type: str = "application/json") -> Callable[[], Any]:
        """A request made with the client's connection pool, TLS settings and credentials but not its per-call
        machinery, which validates every argument against its models (a pod against V1Pod) and walks the body
        to serialize it: ten times the CPU of the request itself, four times per trial."""

        def send() -> Any:
            headers = {**self._client.default_headers, "Accept": "application/json"}
            self._client.update_params_for_auth(headers, [], AUTH_SETTINGS, path, method, None)
            data = None
            if body is not None:
                headers["Content-Type"] = content_type
                data = json.dumps(body, separators=(",", ":"))
            url = self._host + path + ("?" + urllib.parse.urlencode(query) if query else "")
            response = self._pool.request(method, url, body=data, headers=headers, preload_content=False)
            if not 200 <= response.status <= 299:
                raise self._exceptions.ApiException(http_resp=response)
            return response

        return send

    async def list(self, kind: str, namespace: str, experiment: str,
                   shape: Callable[[dict[str, Any]], dict[str, Any]] = lambda obj: obj,
                   unfinished: bool = False) -> list[dict[str, Any]]:
        """The experiment's objects of ``kind`` (pods neither Succeeded nor Failed only, if ``unfinished``),
        each passed through ``shape`` (to keep only what is needed), read a page at a time so that thousands
        of full objects are never in memory at once."""
        selector = f"{EXPERIMENT_LABEL}={experiment}"

        def page(answer: Any) -> tuple[list[dict[str, Any]], str | None]:
            answer = answer or {}
            items = [shape(item) for item in answer.get("items", []) if belongs(item, experiment)]
            return items, (answer.get("metadata") or {}).get("continue")

        found: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            query: dict[str, Any] = {"labelSelector": selector, "limit": LIST_PAGE}
            if unfinished:
                query["fieldSelector"] = UNFINISHED_PODS
            if token:
                query["continue"] = token
            items, token = await self._call(self._request("GET", _collection(kind, namespace), query), then=page)
            found.extend(items)
            if not token:
                return found

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._call(self._request("GET", f"{_collection(kind, namespace)}/{name}"))
        return answer

    async def create(self, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        request = self._request("POST", _collection(kind, namespace), body=body)
        if kind == "pods":  # the operator has no use for the created pod (kilobytes to parse per trial)
            await self._call(request, parse=False)
            return body
        return await self._call(request)

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        request = self._request("PATCH", f"{_collection(kind, namespace)}/{name}/status", body={"status": status},
                                content_type="application/merge-patch+json")
        await self._call(request, parse=False, status_write=True)

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        await self._call(self._request("DELETE", f"{_collection(kind, namespace)}/{name}"), parse=False)

    async def pod_log(self, namespace: str, name: str, container: str) -> str:
        log = await self._call(self._request("GET", f"{_collection('pods', namespace)}/{name}/log",
                                             {"container": container}))
        return log if isinstance(log, str) else json.dumps(log) if log is not None else ""

    # -- the trial pods' watch (kubetune.operator.pod_watch): blocking calls, made in the watch's thread ------------
    def pods_version(self, namespace: str | None) -> str:
        """Where the trial pods of ``namespace`` (None: of every namespace) stand now: the ``resourceVersion`` of
        a listing of one of them."""
        options: dict[str, Any] = {"label_selector": EXPERIMENT_LABEL, "limit": 1, "_preload_content": False}
        try:
            answer: Any = (self._core.list_namespaced_pod(namespace, **options) if namespace
                           else self._core.list_pod_for_all_namespaces(**options))
        except self._exceptions.ApiException as exc:
            raise _api_error(exc) from None
        return str(json.loads(answer.data)["metadata"]["resourceVersion"])

    def watch_pods(self, namespace: str | None, resource_version: str, timeout_seconds: int) -> Any:
        """The stream of the trial pods' changes since ``resource_version`` (urllib3's response: one JSON
        event per line), which the API server ends after ``timeout_seconds``."""
        options: dict[str, Any] = {
            "label_selector": EXPERIMENT_LABEL, "watch": True, "resource_version": resource_version,
            "allow_watch_bookmarks": True, "timeout_seconds": timeout_seconds, "_preload_content": False,
            "_request_timeout": (PROBE_SECONDS, timeout_seconds + PROBE_SECONDS)}
        try:
            return (self._core.list_namespaced_pod(namespace, **options) if namespace
                    else self._core.list_pod_for_all_namespaces(**options))
        except self._exceptions.ApiException as exc:
            raise _api_error(exc) from None

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any]:
        return await self._call(self._client_call(self._coordination.read_namespaced_lease, name, namespace))

    async def create_lease(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": namespace}, "spec": spec}
        return await self._call(self._client_call(self._coordination.create_namespaced_lease, namespace, body))

    async def patch_lease(self, namespace: str, name: str, resource_version: str,
                          spec: dict[str, Any]) -> dict[str, Any]:
        # A resourceVersion in a patch makes it conditional: the server answers 409 if the Lease changed.
        body = {"metadata": {"resourceVersion": resource_version}, "spec": spec}
        return await self._call(self._client_call(self._coordination.patch_namespaced_lease, name, namespace, body,
                                                  _content_type="application/merge-patch+json"))

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any]:
        return await self._call(self._client_call(self._core.read_namespaced_secret, name, namespace))

    async def create_secret(self, namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace,
                             "labels": {"app.kubernetes.io/managed-by": "kubetune"}}, "data": data}
        return await self._call(self._client_call(self._core.create_namespaced_secret, namespace, body))


def _collection(kind: str, namespace: str) -> str:
    """The path of a namespace's pods, or of its kubetune resources (trials, experiments)."""
    if kind == "pods":
        return f"/api/v1/namespaces/{urllib.parse.quote(namespace)}/pods"
    return f"/apis/{GROUP}/{VERSION}/namespaces/{urllib.parse.quote(namespace)}/{kind}"


def _answer(request: Callable[[], Any], parse: bool, then: Callable[[Any], Any]) -> Any:
    """Makes the call and reads, parses and shapes the whole answer, all in the calling (worker) thread: the
    body is read only when asked for, and reading a listing of thousands of objects on the event loop would
    stall every experiment."""
    data = request().data
    text = data.decode() if isinstance(data, bytes) else data
    if not text or not parse:
        return then(None)
    try:
        return then(json.loads(text))
    except ValueError:
        return then(text)


def _api_error(exc: Any) -> ApiError:
    """The :class:`ApiError` for a client ``ApiException``, with the message of the server's Status."""
    message = str(exc.reason)
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        message = json.loads(exc.body).get("message") or message
    kinds: dict[int, type[ApiError]] = {409: Conflict, 404: NotFound, 403: Forbidden, 429: Throttled}
    kind = kinds.get(exc.status, Unavailable if (exc.status or 500) >= 500 else ApiError)
    error = kind(message)
    error.status = exc.status
    return error


def _retry_after(exc: Any) -> float:
    try:
        return min(max(float((exc.headers or {}).get("Retry-After", 1)), 0.1), 10.0)
    except (TypeError, ValueError):
        return 1.0
