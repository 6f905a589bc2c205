"""The kopf handlers: thin glue between Kubernetes events and :class:`~kubetune.operator.reconcile.Reconciler`.

Each Experiment gets a kopf daemon that runs reconciliation passes until the experiment ends. A pass runs
when a pod of the experiment ends or goes (the trial pods' watch, :mod:`kubetune.operator.pod_watch`, wakes
the daemon) and at least every ``RESYNC_SECONDS`` regardless, so a missed event costs latency, never
correctness. Experiments are
independent tasks, and the optimizers live in a worker process (:mod:`kubetune.operator.suggestions`), so a
GP suggestion never stalls the event loop the others share. Two replicas never both act: with
`--leader-election` only the holder of a Lease runs kopf at all (:mod:`kubetune.operator.leader`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from dataclasses import dataclass
from typing import Any

import kopf
from aiohttp import web

from kubetune.core.cluster.crd import GROUP, VERSION
from kubetune.core.cluster.edits import spec_changes
from kubetune.core.cluster.gpu_sharing import GpuSharing
from kubetune.core.cluster.outcome import has_ended
from kubetune.core.cluster.pods import EXPERIMENT_LABEL
from kubetune.operator.api import ApiError, ClusterApi, Forbidden, KubernetesApi, Refused
from kubetune.operator.events import NORMAL, EventRecorder, Note, reference
from kubetune.operator.metrics import CountingApi, OperatorMetrics
from kubetune.operator.pod_watch import PodWatch
from kubetune.operator.reconcile import Reconciler, Reporting, TrialsDoNotFit
from kubetune.operator.reports import make_app, serve
from kubetune.operator.status import POD_REFUSED
from kubetune.operator.suggestions import WorkerSuggestions

RESYNC_SECONDS = 10.0
HOLD_RETRY_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 60.0
MAX_PASS_SPACING_SECONDS = 0.5  # a pass that keeps failing (a missing permission, say) is retried at most this rarely


class OperatorState:
    """What the handlers share: the reconciler, the metrics and one wake-up event per experiment (no other
    state)."""

    def __init__(self, api: ClusterApi, sharing: GpuSharing, metrics: OperatorMetrics,
                 reporting: Reporting | None = None):
        self.metrics = metrics
        counted = CountingApi(api, metrics)
        self.events = EventRecorder(counted, count=lambda outcome: metrics.events.labels(outcome).inc())
        self.reconciler = Reconciler(counted, sharing, metrics=metrics, write_behind=True, reporting=reporting,
                                     ask_ahead=True, events=self.events,
                                     wake=lambda namespace, name: self.waker(namespace, name).set(),
                                     suggestions=WorkerSuggestions(on_restart=metrics.suggestion_worker_restarts.inc))
        self.reports_server: web.AppRunner | None = None
        self.lag_monitor: asyncio.Task[None] | None = None
        self.pod_watch: PodWatch | None = None
        self.cluster: KubernetesApi | None = None  # the API client behind the reconciler's, when it is the real one
        self.wakers: dict[tuple[str, str], asyncio.Event] = {}
        # the pod events of each followed experiment not yet passed on to a pass (pods slimmed to their essentials)
        self.pod_events: dict[tuple[str, str], list[tuple[str | None, dict]]] = {}
        self.following: set[tuple[str, str]] = set()  # experiments whose daemon runs
        self.specs: dict[tuple[str, str], dict[str, Any]] = {}  # each experiment's spec as last seen

    def waker(self, namespace: str, name: str) -> asyncio.Event:
        return self.wakers.setdefault((namespace, name), asyncio.Event())

    def take_events(self, namespace: str, name: str) -> list[tuple[str | None, dict]]:
        return self.pod_events.pop((namespace, name), [])

    def pod_changed(self, event_type: str, pod: dict[str, Any]) -> None:
        """A trial pod as the watch shows it (slimmed): kept for its experiment's next pass, if followed, and
        the pass woken when the pod ended or went. Waking a pass for every pod that starts would keep the
        experiment busy with bookkeeping while ended trials wait (starts are marked by the passes that do run,
        and at least every RESYNC_SECONDS)."""
        meta = pod.get("metadata", {})
        experiment, namespace = meta.get("labels", {}).get(EXPERIMENT_LABEL), meta.get("namespace")
        if not experiment or not namespace:
            return
        if (namespace, experiment) in self.following:
            self.pod_events.setdefault((namespace, experiment), []).append((event_type, pod))
        if event_type == "DELETED" or meta.get("deletionTimestamp") or has_ended(pod):
            self.waker(namespace, experiment).set()

    def pods_missed(self) -> None:
        """The watch missed events: every followed experiment lists its trials and pods again, now."""
        self.reconciler.forget_views()
        for key in self.following:
            self.waker(*key).set()


_configuration: dict[str, Any] = {"sharing": GpuSharing(), "api": None, "metrics_port": None, "metrics": None,
                                  "reports": None, "listen_address": "127.0.0.1", "namespaces": None}


@dataclass(frozen=True)
class ReportsConfig:
    """The report endpoint: the port it is served on, the URL trial pods are given for it, and the key of their
    tokens (read from its Secret before kopf starts)."""

    port: int
    url: str
    key: bytes


def configure(sharing: GpuSharing, api: KubernetesApi | None = None, metrics_port: int | None = None,
              metrics: OperatorMetrics | None = None, reports: ReportsConfig | None = None,
              listen_address: str = "127.0.0.1", namespaces: list[str] | None = None) -> None:
    """Called by ``kubetune operator`` (or a test) before kopf starts; ``metrics_port`` serves /metrics,
    ``reports`` the report endpoint (none: trials get no endpoint and early stopping has nothing to judge), both
    on ``listen_address``; ``namespaces`` are those whose trial pods are watched (None: every namespace)."""
    _configuration.update(sharing=sharing, api=api, metrics_port=metrics_port, metrics=metrics, reports=reports,
                          listen_address=listen_address, namespaces=namespaces)


_metrics_of_process: list[OperatorMetrics] = []


def _process_metrics() -> OperatorMetrics:
    """The metrics in prometheus_client's default registry (with its process metrics), created once."""
    if not _metrics_of_process:
        _metrics_of_process.append(OperatorMetrics())
    return _metrics_of_process[0]


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/operator"
    # The operator posts its Events itself, as kubetune-operator (kubetune.operator.events), and kopf none.
    settings.posting.enabled = False
    # Watch only what the operator was told to (exact namespaces, or all): no RBAC to watch CRDs and
    # namespaces is needed, and the CRDs are installed before the operator starts.
    settings.scanning.disabled = True
    metrics = _configuration["metrics"] or _process_metrics()
    api = _configuration["api"] or KubernetesApi(on_throttled=metrics.api_throttled.inc)
    reports: ReportsConfig | None = _configuration["reports"]
    reporting = None if reports is None else Reporting(reports.url, reports.key)
    memo.state = state = OperatorState(api, _configuration["sharing"], metrics, reporting)
    state.cluster = api
    if _configuration["metrics_port"] is not None:
        metrics.serve(_configuration["metrics_port"], _configuration["listen_address"])
    state.lag_monitor = asyncio.create_task(metrics.measure_event_loop_lag())
    state.pod_watch = PodWatch(api, _configuration["namespaces"], state.pod_changed, state.pods_missed)
    await state.pod_watch.start()
    if reporting is not None and reports is not None:
        app = make_app(reporting.key, state.reconciler, lambda namespace, name: state.waker(namespace, name).set())
        state.reports_server = await serve(app, reports.port, _configuration["listen_address"])


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    state: OperatorState | None = getattr(memo, "state", None)
    if state is not None and state.lag_monitor is not None:
        state.lag_monitor.cancel()
    if state is not None and state.pod_watch is not None:
        await state.pod_watch.stop()
    if state is not None and state.reports_server is not None:
        await state.reports_server.cleanup()
    if state is not None:
        await state.reconciler.suggestions.close()
    if state is not None and state.cluster is not None:
        await state.cluster.close()


@kopf.daemon(GROUP, VERSION, "experiments", cancellation_timeout=10.0)
async def run_experiment(body: kopf.Body, meta: kopf.Meta, memo: kopf.Memo, stopped: kopf.DaemonStopped,
                         logger: Any, **_: Any) -> None:
    state: OperatorState = memo.state
    key = _experiment_key(meta)
    waker = state.waker(*key)
    logger.info("experiment %s/%s: following it", *key)
    state.following.add(key)
    try:
        await _follow_experiment(state, waker, body, meta, stopped, logger)
    finally:
        state.following.discard(key)
        state.pod_events.pop(key, None)


def _experiment_key(meta: kopf.Meta) -> tuple[str, str]:
    """(namespace, name) of an Experiment; the CRD is namespaced, so it always has a namespace."""
    if meta.namespace is None:
        raise kopf.PermanentError(f"experiment {meta.name} has no namespace")
    return meta.namespace, meta.name


async def _follow_experiment(state: OperatorState, waker: asyncio.Event, body: kopf.Body, meta: kopf.Meta,
                             stopped: kopf.DaemonStopped, logger: Any) -> None:
    failures = 0
    while not stopped:
        waker.clear()
        events = state.take_events(*_experiment_key(meta))
        try:
            with state.metrics.reconcile_seconds.time():
                result = await state.reconciler.reconcile(copy.deepcopy(dict(body)), events)
        except Exception as exc:  # the API refused or could not answer, or a bug: counted, logged, retried
            state.reconciler.forget_view(meta.uid)  # the next pass lists again: nothing is lost with the events
            state.metrics.reconcile_errors.inc()
            failures += 1
            delay = min(RESYNC_SECONDS * 2 ** (failures - 1), MAX_BACKOFF_SECONDS)
            await _report_failure(state, body, meta, exc, delay, logger)
            await stopped.wait(delay)
            continue
        if result.done:  # its Event was posted by the pass that ended it
            logger.info("experiment %s: %s (%s)", meta.name, result.status.get("phase"), result.status.get("reason"))
            return
        # held (the API server refuses its pods): asked again every HOLD_RETRY_SECONDS (one dry run), so that a
        # raised quota is seen within seconds, or at once when woken (an edit)
        failures = 0
        delay = HOLD_RETRY_SECONDS if result.held else RESYNC_SECONDS
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waker.wait(), delay)


async def _report_failure(state: OperatorState, body: kopf.Body, meta: kopf.Meta, exc: Exception, delay: float,
                          logger: Any) -> None:
    """Says why a pass failed: one line for what the API answered (a missing permission also in the
    Experiment's status, where the people running it look), a traceback only for a bug."""
    if isinstance(exc, TrialsDoNotFit):
        logger.error("experiment %s: %s (retrying in %.0f s)", meta.name, exc, delay)
        with contextlib.suppress(ApiError):
            await state.reconciler.report_problem(copy.deepcopy(dict(body)), "SpecChanged", str(exc))
        return
    if not isinstance(exc, ApiError):
        logger.exception("experiment %s: reconciliation failed (retrying in %.0f s): %s", meta.name, delay, exc)
        return
    if isinstance(exc, Refused):  # an admission check (a quota, a webhook) refused what the pass created
        logger.warning("experiment %s: the API server refused: %s (retrying in %.0f s)", meta.name, exc, delay)
        with contextlib.suppress(ApiError):
            await state.reconciler.report_problem(copy.deepcopy(dict(body)), POD_REFUSED, str(exc))
        return
    if isinstance(exc, Forbidden):
        message = (f"the operator is not allowed to do what this experiment needs: {exc}. Grant it in the "
                   "operator's RBAC (the Helm chart's Role or ClusterRole)")
        logger.error("experiment %s: %s (retrying in %.0f s)", meta.name, message, delay)
        with contextlib.suppress(ApiError):
            await state.reconciler.report_problem(copy.deepcopy(dict(body)), "Forbidden", message)
        return
    logger.warning("experiment %s: the Kubernetes API failed (retrying in %.0f s): %s", meta.name, delay, exc)


# Every watch event of an Experiment. An edit of its spec wakes its pass at once (which acts on it) and is
# posted as an Event saying what changed. A deletion is the watch's DELETED event, not kopf.on.delete: without a
# finalizer (kubetune adds none, so a deleted Experiment goes at once) kopf runs no deletion handler, and the
# experiment stayed in the operator's state and gauges.
@kopf.on.event(GROUP, VERSION, "experiments")
async def experiment_changed(body: kopf.Body, meta: kopf.Meta, memo: kopf.Memo, type: str | None,  # noqa: A002
                             **_: Any) -> None:
    state: OperatorState | None = getattr(memo, "state", None)
    if state is None:
        return
    key = _experiment_key(meta)
    if type == "DELETED":
        state.reconciler.forget(meta.uid)
        state.wakers.pop(key, None)
        state.pod_events.pop(key, None)
        state.specs.pop(key, None)
        return
    spec = copy.deepcopy(dict(body.get("spec") or {}))
    before, state.specs[key] = state.specs.get(key), spec
    if before is not None and before != spec:
        state.waker(*key).set()
        await state.events.record(reference(body), Note(NORMAL, "Edited", "; ".join(spec_changes(before, spec))))
