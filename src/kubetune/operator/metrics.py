"""The operator's Prometheus metrics (prometheus_client), served on ``kubetune operator --metrics-port``.

| name | type | labels | meaning |
|---|---|---|---|
| ``kubetune_experiments`` | gauge | ``phase`` | experiments this operator has seen, by phase |
| ``kubetune_trials_running`` | gauge | | trials Pending or Running, over all experiments |
| ``kubetune_trials_created_total`` | counter | | trials created |
| ``kubetune_trials_finished_total`` | counter | ``state`` | trials ended, by final state |
| ``kubetune_suggestion_seconds`` | histogram | | time of one suggestion call (``Optimizer.ask``, in the suggestion
  worker; asked ahead or for a pass) |
| ``kubetune_suggestion_wait_seconds`` | histogram | | how long a pass waited for the suggestions it needed (0 when
  asked ahead) |
| ``kubetune_suggestions_total`` | counter | | parameter assignments suggested |
| ``kubetune_suggestion_worker_restarts_total`` | counter | | times the suggestion worker exited and was started again |
| ``kubetune_reconcile_errors_total`` | counter | | reconciliation passes that failed with an error |
| ``kubetune_reconcile_seconds`` | histogram | | time of one reconciliation pass (its count: the passes run) |
| ``kubetune_event_loop_lag_seconds`` | histogram | | how late a tick of the event loop, due every 0.1 s, ran: |
  the time the loop was kept from watch events, status writes and other experiments |
| ``kubetune_api_requests_total`` | counter | ``verb``, ``resource``, ``outcome`` | Kubernetes API calls (``ok``,
  ``conflict``, ``not_found``, ``forbidden``, ``throttled``, ``error``; the verb ``dry-run``: a create's dry run) |
| ``kubetune_api_throttled_total`` | counter | | 429 answers of API Priority and Fairness, each retried |
| ``kubetune_events_total`` | counter | ``outcome`` | occurrences of Kubernetes Events (``posted``, ``updated``:
  counted on an Event already posted, ``deferred``: rate-limited, ``failed``) |

Counters start from zero when the operator starts (Prometheus' ``rate`` and ``increase`` expect that); the
gauges are rebuilt from the cluster by the first reconciliation pass of each experiment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from kubetune.core.lifecycle import TrialState
from kubetune.core.plan import ExperimentPhase
from kubetune.operator.api import ApiError, ClusterApi

PHASES = tuple(str(phase) for phase in ExperimentPhase)
T = TypeVar("T")
OUTCOMES = {409: "conflict", 404: "not_found", 403: "forbidden", 429: "throttled"}  # by HTTP status
EVENT_OUTCOMES = ("posted", "updated", "deferred", "failed")  # of kubetune.operator.events.EventRecorder
TRIAL_STATES = tuple(str(state) for state in TrialState if state.is_finished)
SUGGESTION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LAG_TICK_SECONDS = 0.1


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY):
        self.registry = registry
        self.experiments = Gauge("kubetune_experiments", "Experiments this operator has seen, by phase",
                                 ["phase"], registry=registry)
        self.trials_running = Gauge("kubetune_trials_running", "Trials Pending or Running, over all experiments",
                                    registry=registry)
        self.trials_created = Counter("kubetune_trials_created", "Trials created", registry=registry)
        self.trials_finished = Counter("kubetune_trials_finished", "Trials ended, by final state", ["state"],
                                       registry=registry)
        self.suggestion_seconds = Histogram("kubetune_suggestion_seconds", "Time of one suggestion call",
                                            buckets=SUGGESTION_BUCKETS, registry=registry)
        self.suggestion_wait_seconds = Histogram("kubetune_suggestion_wait_seconds", "How long a pass waited for "
                                                 "the suggestions it needed", buckets=SUGGESTION_BUCKETS,
                                                 registry=registry)
        self.suggestions = Counter("kubetune_suggestions", "Parameter assignments suggested", registry=registry)
        self.suggestion_worker_restarts = Counter("kubetune_suggestion_worker_restarts", "Times the suggestion "
                                                  "worker exited and was started again", registry=registry)
        self.reconcile_errors = Counter("kubetune_reconcile_errors", "Reconciliation passes that failed",
                                        registry=registry)
        self.reconcile_seconds = Histogram("kubetune_reconcile_seconds", "Time of one reconciliation pass",
                                           buckets=SUGGESTION_BUCKETS, registry=registry)
        self.event_loop_lag = Histogram("kubetune_event_loop_lag_seconds", "How late a tick of the event loop, "
                                        f"due every {LAG_TICK_SECONDS} s, ran", buckets=LAG_BUCKETS,
                                        registry=registry)
        self.api_requests = Counter("kubetune_api_requests", "Kubernetes API calls",
                                    ["verb", "resource", "outcome"], registry=registry)
        self.api_throttled = Counter("kubetune_api_throttled", "429 answers of API Priority and Fairness (each "
                                     "retried after its Retry-After)", registry=registry)
        self.events = Counter("kubetune_events", "Occurrences of Kubernetes Events about experiments, by outcome",
                              ["outcome"], registry=registry)
        for phase in PHASES:
            self.experiments.labels(phase)
        for state in TRIAL_STATES:
            self.trials_finished.labels(state)
        for outcome in EVENT_OUTCOMES:
            self.events.labels(outcome)
        self._phase_of: dict[str, str] = {}
        self._active_of: dict[str, int] = {}

    def experiment_seen(self, key: str, phase: str, active_trials: int) -> None:
        self._phase_of[key] = phase
        self._active_of[key] = active_trials
        self._refresh()

    def experiment_gone(self, key: str) -> None:
        self._phase_of.pop(key, None)
        self._active_of.pop(key, None)
        self._refresh()

    def _refresh(self) -> None:
        for phase in {*PHASES, *self._phase_of.values()}:
            self.experiments.labels(phase).set(sum(1 for p in self._phase_of.values() if p == phase))
        self.trials_running.set(sum(self._active_of.values()))

    async def measure_event_loop_lag(self, tick: float = LAG_TICK_SECONDS) -> None:
        """Runs until cancelled: sleeps ``tick`` seconds and records how much later than that it woke up, the
        time something held the event loop (or the GIL) while the operator had events to handle."""
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(tick)
            self.event_loop_lag.observe(max(loop.time() - before - tick, 0.0))

    def serve(self, port: int, address: str = "0.0.0.0") -> Any:
        """Serves ``/metrics`` from a background thread; returns the HTTP server."""
        server, _ = start_http_server(port, address, registry=self.registry)
        return server


class CountingApi:
    """A :class:`~kubetune.operator.api.ClusterApi` that counts every call it passes on."""

    def __init__(self, api: ClusterApi, metrics: OperatorMetrics):
        self._api, self._metrics = api, metrics

    async def _count(self, verb: str, resource: str, call: Awaitable[T]) -> T:
        outcome = "error"
        try:
            result = await call
            outcome = "ok"
            return result
        except ApiError as exc:
            outcome = "error" if exc.status is None else OUTCOMES.get(exc.status, "error")
            raise
        finally:
            self._metrics.api_requests.labels(verb, resource, outcome).inc()

    async def list(self, kind: str, namespace: str, experiment: str,
                   shape: Callable[[dict[str, Any]], dict[str, Any]] = lambda obj: obj,
                   unfinished: bool = False) -> list[dict[str, Any]]:
        return await self._count("list", kind, self._api.list(kind, namespace, experiment, shape, unfinished))

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return await self._count("get", kind, self._api.get(kind, namespace, name))

    async def create(self, kind: str, namespace: str, body: dict[str, Any], dry_run: bool = False
                     ) -> dict[str, Any]:
        return await self._count("dry-run" if dry_run else "create", kind,
                                 self._api.create(kind, namespace, body, dry_run=dry_run))

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self._count("patch", f"{kind}/status", self._api.patch_status(kind, namespace, name, status))

    async def patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        await self._count("patch", kind, self._api.patch(kind, namespace, name, patch))

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        await self._count("delete", kind, self._api.delete(kind, namespace, name))

    async def pod_log(self, namespace: str, name: str, container: str) -> str:
        return await self._count("get", "pods/log", self._api.pod_log(namespace, name, container))

