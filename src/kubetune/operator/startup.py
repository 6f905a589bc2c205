"""How ``kubetune operator`` starts: kopf configured, the cluster's API server reached once, the ports it
serves on checked and, with several replicas, leader election, so that a cluster that is not there or a
port that is taken is one clear line (:class:`OperatorStartError`) instead of kopf's retries and tracebacks.
Heavy imports (kopf, the Kubernetes client) happen when the operator runs, not when this module loads.
"""

from __future__ import annotations

import argparse
import logging
import socket
from typing import Any


class OperatorStartError(Exception):
    """The operator cannot start: no cluster configuration, no reachable API server, or a port it was told to
    serve on is taken."""


def run_operator(args: argparse.Namespace) -> int:
    """Runs ``kubetune operator`` with its parsed options until it is stopped; exit status 0."""
    import asyncio
    import dataclasses

    _few_malloc_arenas()
    import kopf
    from kubernetes.config import ConfigException

    from kubetune.core.cluster.gpu_sharing import GpuSharing
    from kubetune.core.cluster.leadership import ElectionTiming
    from kubetune.operator import handlers
    from kubetune.operator.api import KubernetesApi
    from kubetune.operator.connection import connect, login
    from kubetune.operator.leader import LeaderElection, lead

    try:
        connection = connect(args.kubeconfig, args.context)
    except ConfigException as exc:
        raise OperatorStartError(f"no Kubernetes cluster to run against: {exc} (run in a pod, or pass "
                                 "--kubeconfig or set KUBECONFIG)") from None
    kopf.on.login()(login)
    listen = args.listen_address or ("0.0.0.0" if connection.in_cluster else "127.0.0.1")
    liveness = args.liveness or f"http://{listen}:{LIVENESS_PORT}/healthz"
    _configure_logging(args.log_level)
    sharing = GpuSharing(args.gpu_sharing, kai_queue=args.kai_queue, hami_cores=args.hami_cores,
                         timeslicing_resource=args.timeslicing_resource)
    if args.mig_profile:
        sharing = dataclasses.replace(sharing, mig_profiles=tuple(sorted(args.mig_profile)))
    namespaces = None if args.all_namespaces else args.namespace
    lease_namespace = _namespace("--lease-namespace", args.lease_namespace, connection, "the Lease of leader "
                                 "election lives") if args.leader_election else None
    key_namespace = _namespace("--report-key-namespace", args.report_key_namespace, connection,
                               f"the Secret {REPORT_KEY_SECRET} holding the report key lives (or pass "
                               "--reports-port 0)") if args.reports_port else None

    async def operate(stop: asyncio.Event | None = None) -> None:
        await kopf.operator(clusterwide=args.all_namespaces, namespaces=args.namespace or [], standalone=True,
                            liveness_endpoint=liveness, stop_flag=stop)

    async def elect_then_operate() -> int:
        duration = args.lease_duration
        timing = ElectionTiming(duration, renew_deadline_seconds=duration * 2 / 3, retry_seconds=duration / 7.5)
        election = LeaderElection(KubernetesApi(), str(lease_namespace), args.lease_name, args.identity, timing)
        return await lead(election, operate, liveness)

    try:
        _reach_api_server()
        _check_port("--liveness", liveness)
        if args.metrics_port:
            _check_port("--metrics-port", f"http://{listen}:{args.metrics_port}/")
        reports = None
        if key_namespace is not None:
            _check_port("--reports-port", f"http://{listen}:{args.reports_port}/")
            reports = _reports_config(args, key_namespace, _report_key(KubernetesApi(), key_namespace))
        handlers.configure(sharing, metrics_port=args.metrics_port or None, reports=reports, listen_address=listen,
                           namespaces=namespaces)
        if not args.leader_election:
            asyncio.run(operate())
            return 0
        return asyncio.run(elect_then_operate())
    except OSError as exc:  # the liveness or metrics port is taken, or may not be bound
        raise OperatorStartError(f"the operator could not start: {exc}") from None


def _configure_logging(level: str) -> None:
    import kopf

    kopf.configure(debug=level == "debug", quiet=level == "warning")
    for handler in logging.getLogger().handlers:
        handler.addFilter(throttling_is_a_warning)


def throttling_is_a_warning(record: logging.LogRecord) -> bool:
    """kopf logs every retried request as an ERROR; a 429 that it retries (API Priority and Fairness, or an API
    server whose storage is still starting) is a WARNING. A request that gives up stays an ERROR."""
    if record.levelno == logging.ERROR and record.name.startswith("kopf."):
        message = record.getMessage()
        if "will retry" in message and "APITooManyRequestsError" in message:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
    return True


LIVENESS_PORT = 8080
REPORT_KEY_SECRET = "kubetune-report-key"


def _namespace(option: str, given: str | None, connection: Any, what: str) -> str:
    """A namespace the operator keeps something in: the option's, else its pod's, else the kubeconfig
    context's; never ``default`` unasked."""
    namespace = given or connection.namespace
    if not namespace:
        raise OperatorStartError(f"{option} is needed: the namespace where {what}; {connection.where} names no "
                                 "namespace")
    return str(namespace)


PROBE_TIMEOUT_SECONDS = 10.0
REPORTS_PATH = "/v1/reports"


def _reports_config(args: argparse.Namespace, namespace: str, key: bytes) -> Any:
    """The report endpoint's configuration: its port, the URL trial pods are given, the key."""
    from kubetune.operator.handlers import ReportsConfig

    url = args.reports_url or f"http://kubetune-reports.{namespace}.svc:{args.reports_port}"
    url = url if url.rstrip("/").endswith(REPORTS_PATH) else url.rstrip("/") + REPORTS_PATH
    return ReportsConfig(args.reports_port, url, key)


def _report_key(api: object, namespace: str) -> bytes:
    """The report key from its Secret (created if missing), or one clear line on why it cannot be had."""
    import asyncio

    from kubetune.operator.api import ApiError, Forbidden
    from kubetune.operator.reports import KEY_SECRET, load_key

    try:
        return asyncio.run(load_key(api, namespace))  # type: ignore[arg-type]
    except Forbidden as exc:
        raise OperatorStartError(f"the operator may not get or create the Secret {namespace}/{KEY_SECRET} that holds "
                                 f"the report key ({exc}); grant it (the Helm chart does), or pass --reports-port 0"
                                 ) from None
    except (ApiError, ValueError) as exc:
        raise OperatorStartError(f"cannot read the report key {namespace}/{KEY_SECRET}: {exc}") from None


def _reach_api_server() -> None:
    """Asks the API server for its version (any client may) before kopf starts: kopf would otherwise log a
    chain of tracebacks and retry every minute when the configured server cannot be reached or refuses the
    credentials."""
    import urllib3
    from kubernetes import client

    configuration = client.Configuration.get_default_copy()
    configuration.retries = False  # one attempt, and no log line per retry
    host = configuration.host
    try:
        client.VersionApi(client.ApiClient(configuration)).get_code(_request_timeout=PROBE_TIMEOUT_SECONDS)
    except client.exceptions.ApiException as exc:
        if exc.status == 401:
            raise OperatorStartError(f"the Kubernetes API server at {host} refused the operator's credentials "
                                     "(401 Unauthorized)") from None
        # any other answer comes from a server that is there; RBAC problems are reported per experiment
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise OperatorStartError(f"cannot reach the Kubernetes API server at {host}: {_why(exc)} (is the "
                                 "cluster running, and KUBECONFIG the right one?)") from None


def _why(exc: BaseException) -> str:
    """The innermost reason of a connection failure ("Connection refused"), not urllib3's chain of wrappers."""
    import re

    text = str(getattr(exc, "reason", None) or exc)
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    return found.group(1).strip() if found else text


def _few_malloc_arenas() -> None:
    """glibc gives threads that allocate at once arenas of their own (up to 8 per core) and seldom returns
    their freed memory: the operator's API threads parse every answer, and with thousands of trials the
    arenas held several times the memory in use. Two arenas, set before any thread starts."""
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to tune
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 2)


M_ARENA_MAX = -8  # glibc's malloc.h


def _check_port(option: str, url: str) -> None:
    """Refuses to start when a port the operator must serve on is taken (kopf would fail later, with a
    traceback)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((parts.hostname or "0.0.0.0", parts.port or 0))
        except OSError as exc:
            raise OperatorStartError(f"{option}: cannot serve on {parts.hostname}:{parts.port}: {exc.strerror}"
                                     ) from None
