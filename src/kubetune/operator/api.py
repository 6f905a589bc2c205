"""The operator's view of the Kubernetes API: the few calls it makes, behind one small protocol.

:class:`KubernetesApi` implements it with aiohttp on the event loop, configured and authenticated from the
official ``kubernetes`` client's configuration (in-cluster or a kubeconfig); tests implement it in memory.
Listing is by the ``kubetune.io/experiment`` label, and results are filtered again on this side, so a server
that ignores selectors does no harm.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import re
import ssl
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from kubetune.core.cluster.crd import GROUP, VERSION
from kubetune.core.cluster.pods import EXPERIMENT_LABEL
from kubetune.operator.pod_watch import lines

CONNECTIONS = 48  # to the API server at once
# Status writes (a trial marked Running, a result, the Experiment's status) take at most this many of them:
# behind a burst of them, a refill's creates would otherwise wait for a connection.
STATUS_WRITES = 16
CLIENT_THREADS = 4  # for the calls still made with the client itself (leases, secrets: a few a minute)
CREDENTIALS_SECONDS = 30.0
LARGE_ANSWER = 64 * 1024  # bytes of JSON parsed (and shaped) in a thread, not on the event loop
LIST_PAGE = 500  # objects per page of a listing: each page is shaped before the next is read, bounding memory
THROTTLED_RETRIES = 5  # a 429 from API Priority and Fairness is retried this often, after its Retry-After
UNFINISHED_PODS = "status.phase!=Succeeded,status.phase!=Failed"
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


class Refused(ApiError):
    """An admission check refused the object: a ResourceQuota ("exceeded quota"), a LimitRange, Pod Security
    admission, an admission webhook. Unlike :class:`Forbidden` the operator may do it, only not now or not so:
    the fix is the cluster's or the template's."""

    status = 403


class Invalid(ApiError):
    """The API server's validation refused the object (422 Invalid, 400 BadRequest): as written, it cannot
    ever be created."""

    status = 422


class Throttled(ApiError):
    """API Priority and Fairness kept answering 429."""

    status = 429


class Unavailable(ApiError):
    """The API server could not be reached, or answered with a server error."""


class ClusterApi(Protocol):
    """``list(..., unfinished=True)`` lists only pods neither Succeeded nor Failed; ``create(..., dry_run=True)``
    has the API server validate and admit the object (``?dryRun=All``) without storing it."""

    async def list(self, kind: str, namespace: str, experiment: str,
                   shape: Callable[[dict[str, Any]], dict[str, Any]] = ...,
                   unfinished: bool = False) -> list[dict[str, Any]]: ...
    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]: ...
    async def create(self, kind: str, namespace: str, body: dict[str, Any], dry_run: bool = False
                     ) -> dict[str, Any]: ...
    async def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None: ...
    async def patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None: ...
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
    """:class:`ClusterApi` and :class:`LeaseApi` with the official client's configuration (its default one,
    which :func:`kubetune.operator.connection.connect` loaded, unless given a client)."""

    def __init__(self, api_client: Any = None, on_throttled: Callable[[], None] = lambda: None):
        from kubernetes import client

        if api_client is None:  # the configuration kubetune.operator.connection.connect loaded
            api_client = client.ApiClient()
        self._configuration = api_client.configuration
        self._host = self._configuration.host.rstrip("/")
        self._ssl = _ssl_context(self._configuration)
        self._http: _Http | None = None
        self._proxy, self._server_name = self._configuration.proxy or None, self._configuration.tls_server_name
        self._headers: tuple[float, dict[str, str]] | None = None  # the credentials' headers, and when read
        self._threads = concurrent.futures.ThreadPoolExecutor(CLIENT_THREADS, thread_name_prefix="kubetune-api")
        self._core = client.CoreV1Api(api_client)
        self._coordination = client.CoordinationV1Api(api_client)
        self._exceptions = client.exceptions
        self._on_throttled = on_throttled

    # -- the calls made per trial: aiohttp on the event loop -------------------------------------------------
    def _session(self) -> _Http:
        """The HTTP session of the running event loop (made on first use: one per loop)."""
        loop = asyncio.get_running_loop()
        if self._http is None or self._http.loop is not loop:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=CONNECTIONS, limit_per_host=CONNECTIONS)
            session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=PROBE_SECONDS), headers={"Accept": "application/json"})
            self._http = _Http(loop, session, asyncio.Semaphore(STATUS_WRITES))
        return self._http

    async def close(self) -> None:
        """Closes the HTTP session of the running event loop."""
        if self._http is not None and self._http.loop is asyncio.get_running_loop():
            await self._http.session.close()
            self._http = None

    async def _send(self, method: str, path: str, query: dict[str, Any] | None = None, body: Any = None,
                    content_type: str = "application/json", parse: bool = True,
                    then: Callable[[Any], Any] = lambda answer: answer, status_write: bool = False) -> Any:
        """One request; the answer as plain JSON (or text, for logs), or None when the caller has no use for it
        (``parse=False``), passed through ``then`` (a large answer is parsed and shaped in a thread). A 429 is
        tried again after its Retry-After; other failures become :class:`ApiError` subclasses carrying the
        server's message."""
        headers = self._credentials()
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body, separators=(",", ":"))
        for attempt in range(THROTTLED_RETRIES + 1):
            status, reason, retry_after, answer = await self._exchange(method, path, query, data, headers,
                                                                       status_write)
            if status == 401 and attempt == 0 and self._headers is not None:  # the token may have just expired
                self._headers = None
                headers = {**headers, **self._credentials()}
                continue
            if status == 429 and attempt < THROTTLED_RETRIES:
                self._on_throttled()
                await asyncio.sleep(_seconds(retry_after))
                continue
            if status >= 400:
                raise _error(status, reason, answer)
            if not parse or not answer:
                return then(None)
            if len(answer) > LARGE_ANSWER:
                return await asyncio.to_thread(_parsed, answer, then)
            return _parsed(answer, then)
        raise AssertionError("unreachable")

    async def _exchange(self, method: str, path: str, query: dict[str, Any] | None, data: str | None,
                        headers: dict[str, str], status_write: bool) -> tuple[int, str, str | None, bytes]:
        """Sends one request and reads its whole answer: (status, reason, Retry-After, body)."""
        http = self._session()
        writes = http.status_writes if status_write else contextlib.nullcontext()
        try:
            async with writes, http.session.request(method, self._host + path, params=query, data=data,
                                                    headers=headers, proxy=self._proxy,
                                                    server_hostname=self._server_name) as response:
                answer = await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise Unavailable(f"the API server could not be reached: {exc or type(exc).__name__}") from None
        return response.status, response.reason or "", response.headers.get("Retry-After"), answer

    def _credentials(self) -> dict[str, str]:
        """The headers that carry the configuration's credentials (a bearer token, refreshed as the client
        refreshes it: a kubeconfig's is read again at each refresh, so at most every ``CREDENTIALS_SECONDS``
        and after a 401); client certificates are in the TLS context."""
        now = time.monotonic()
        if self._headers is None or now - self._headers[0] >= CREDENTIALS_SECONDS:
            settings = self._configuration.auth_settings().values()
            self._headers = now, {setting["key"]: setting["value"] for setting in settings
                                  if setting.get("in") == "header" and setting.get("value")}
        return dict(self._headers[1])

    # -- the rare calls: the client itself, in a thread ------------------------------------------------------
    async def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Calls the client in a worker thread; answers are plain JSON (no model classes). Failures become
        :class:`ApiError` subclasses carrying the server's message."""
        call = functools.partial(_answer, functools.partial(function, *args, _preload_content=False, **kwargs))
        for attempt in range(THROTTLED_RETRIES + 1):
            try:
                return await asyncio.get_running_loop().run_in_executor(self._threads, call)
            except self._exceptions.ApiException as exc:
                if exc.status == 429 and attempt < THROTTLED_RETRIES:
                    self._on_throttled()
                    await asyncio.sleep(_seconds((exc.headers or {}).get("Retry-After")))
                    continue
                raise _api_error(exc) from None
            except OSError as exc:
                raise Unavailable(f"the API server could not be reached: {exc}") from None
            except Exception as exc:
                if type(exc).__module__.startswith("urllib3"):
                    raise Unavailable(f"the API server could not be reached: {exc}") from None
                raise
        raise AssertionError("unreachable")

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
            items, token = await self._send("GET", _collection(kind, namespace), query, then=page)
            found.extend(items)
            if not token:
                return found

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self._send("GET", f"{_collection(kind, namespace)}/{name}")
        return answer

    async def create(self, kind: str, namespace: str, body: dict[str, Any], dry_run: bool = False
                     ) -> dict[str, Any]:
        query = {"dryRun": "All"} if dry_run else None
        if kind in ("pods", "events"):  # the operator has no use for the created object (a pod: kilobytes to parse)
            await self._send("POST", _collection(kind, namespace), query, body=body, parse=False)
            return body
        created: dict[str, Any] = await self._send("POST", _collection(kind, namespace), query, body=body)
        return created

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self._send("PATCH", f"{_collection(kind, namespace)}/{name}/status", body={"status": status},
                         content_type="application/merge-patch+json", parse=False, status_write=True)

    async def patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """A JSON merge patch of the object itself (not its status)."""
        await self._send("PATCH", f"{_collection(kind, namespace)}/{name}", body=patch,
                         content_type="application/merge-patch+json", parse=False)

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        await self._send("DELETE", f"{_collection(kind, namespace)}/{name}", parse=False)

    async def pod_log(self, namespace: str, name: str, container: str) -> str:
        log = await self._send("GET", f"{_collection('pods', namespace)}/{name}/log", {"container": container})
        return log if isinstance(log, str) else json.dumps(log) if log is not None else ""

    # -- the trial pods' watch (kubetune.operator.pod_watch) ----------------------------------------------------
    async def pods_version(self, namespace: str | None) -> str:
        """Where the trial pods of ``namespace`` (None: of every namespace) stand now: the ``resourceVersion`` of
        a listing of one of them."""
        answer = await self._send("GET", _pods(namespace), {"labelSelector": EXPERIMENT_LABEL, "limit": 1})
        return str(answer["metadata"]["resourceVersion"])

    async def watch_pods(self, namespace: str | None, resource_version: str, timeout_seconds: int
                         ) -> AsyncIterator[bytes]:
        """The trial pods' changes since ``resource_version``, one JSON event per line, until the API server
        ends the watch after ``timeout_seconds``."""
        query = {"labelSelector": EXPERIMENT_LABEL, "watch": "true", "resourceVersion": resource_version,
                 "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout_seconds)}
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=PROBE_SECONDS,
                                        sock_read=timeout_seconds + PROBE_SECONDS)
        async with self._session().session.get(self._host + _pods(namespace), params=query,
                                               headers=self._credentials(), proxy=self._proxy,
                                               server_hostname=self._server_name, timeout=timeout) as response:
            if response.status >= 400:
                raise _error(response.status, response.reason or "", await response.read())
            async for line in lines(response.content.iter_any()):
                yield line

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any]:
        return await self._call(self._coordination.read_namespaced_lease, name, namespace)

    async def create_lease(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": namespace}, "spec": spec}
        return await self._call(self._coordination.create_namespaced_lease, namespace, body)

    async def patch_lease(self, namespace: str, name: str, resource_version: str,
                          spec: dict[str, Any]) -> dict[str, Any]:
        # A resourceVersion in a patch makes it conditional: the server answers 409 if the Lease changed.
        body = {"metadata": {"resourceVersion": resource_version}, "spec": spec}
        return await self._call(self._coordination.patch_namespaced_lease, name, namespace, body,
                                _content_type="application/merge-patch+json")

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any]:
        return await self._call(self._core.read_namespaced_secret, name, namespace)

    async def create_secret(self, namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": namespace,
                             "labels": {"app.kubernetes.io/managed-by": "kubetune"}}, "data": data}
        return await self._call(self._core.create_namespaced_secret, namespace, body)


def _pods(namespace: str | None) -> str:
    """The path of a namespace's pods, or of every namespace's."""
    return _collection("pods", namespace) if namespace else "/api/v1/pods"


def _collection(kind: str, namespace: str) -> str:
    """The path of a namespace's pods or events, or of its kubetune resources (trials, experiments)."""
    if kind in ("pods", "events"):
        return f"/api/v1/namespaces/{urllib.parse.quote(namespace)}/{kind}"
    return f"/apis/{GROUP}/{VERSION}/namespaces/{urllib.parse.quote(namespace)}/{kind}"


@dataclass
class _Http:
    loop: asyncio.AbstractEventLoop
    session: aiohttp.ClientSession
    status_writes: asyncio.Semaphore


def _ssl_context(configuration: Any) -> ssl.SSLContext:
    """The TLS settings of the client's configuration: its CA (or the system's), its client certificate, and
    whether the server's certificate and name are checked."""
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif configuration.assert_hostname is False:
        context.check_hostname = False
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


def _parsed(data: bytes, then: Callable[[Any], Any]) -> Any:
    """An answer as JSON (or text, for logs), passed through ``then``."""
    text = data.decode(errors="replace")
    try:
        return then(json.loads(text))
    except ValueError:
        return then(text)


def _answer(request: Callable[[], Any]) -> Any:
    """Makes a client call and reads and parses its whole answer, in the calling (worker) thread."""
    data = request().data
    text = data.decode() if isinstance(data, bytes) else data
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _api_error(exc: Any) -> ApiError:
    """The :class:`ApiError` for a client ``ApiException``, with the message of the server's Status."""
    return _error(exc.status, str(exc.reason), exc.body)


# How RBAC words a refusal (the authorizer's "User ... cannot create resource ... in API group ..."), which tells
# it apart from the 403 of an admission check (a quota, a webhook), whose message is the check's own; and how
# the API server words a webhook's denial, whatever status code the webhook chose.
RBAC_REFUSAL = re.compile(r'\bcannot [a-z]+ resource "')
WEBHOOK_DENIAL = re.compile(r'\badmission webhook "[^"]*" denied the request')


def _error(status: int | None, reason: str, body: Any) -> ApiError:
    """The :class:`ApiError` for an answer with this HTTP status, with the message of the server's Status."""
    message = reason
    with contextlib.suppress(TypeError, ValueError, AttributeError):
        message = json.loads(body).get("message") or message
    kinds: dict[int, type[ApiError]] = {409: Conflict, 404: NotFound, 403: Forbidden, 429: Throttled,
                                        400: Invalid, 422: Invalid}
    kind = kinds.get(status or 0, Unavailable if (status or 500) >= 500 else ApiError)
    if (kind is Forbidden and not RBAC_REFUSAL.search(message)) or (kind is Invalid and WEBHOOK_DENIAL.search(message)):
        kind = Refused
    error = kind(message)
    error.status = status
    return error


def _seconds(retry_after: Any) -> float:
    try:
        return min(max(float(retry_after if retry_after is not None else 1), 0.1), 10.0)
    except (TypeError, ValueError):
        return 1.0
