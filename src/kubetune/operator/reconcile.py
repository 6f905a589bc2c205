"""One reconciliation pass over one Experiment: read what exists, decide, act.

Level-triggered, as Katib and every sound controller do it: each pass takes the experiment's Trials and Pods
as the cluster has them (:class:`~kubetune.operator.view.ExperimentView`: listed, then kept current by the
watch), brings each trial in flight up to date with its pod (collecting metrics when the pod has ended,
starting a retry pod when the budget allows), asks :func:`kubetune.core.plan.decide` what should happen, and
does it.
Nothing lives only in memory: the optimizer kept per experiment is a cache rebuilt from the Trials after a
restart, trial names (``<experiment>-<n>``) and pod names are deterministic, and creating an object that
exists already is not an error, so a pass interrupted at any point is completed by the next one.

Writes per trial: create the Trial, create its Pod, mark it Running (if a pass gets to it before it ends),
record its result (at most 4), plus a pod and a status patch per retry; the Experiment status is patched only
when it changed, at a bounded rate. A pass settles ended trials in its view and in the optimizer, refills
their slots, and only then writes their results, so thousands of trials in flight do not slow a refill down.
In the operator the results are written behind (``write_behind``): the next pass need not wait for them,
a full listing and the experiment's end do; a result that could not be written is written again after the
listing that follows, since its trial still shows the ended pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from kubetune.core.crd import GROUP, VERSION
from kubetune.core.engine import Optimizer
from kubetune.core.errors import ManifestError
from kubetune.core.gpu_sharing import GpuSharing, GpuSharingError, place
from kubetune.core.lifecycle import (
    ACTIVE,
    AttemptResult,
    TrialRecord,
    TrialState,
    build_optimizer,
    inform,
    iso,
    kill,
    settle,
    trial_name,
)
from kubetune.core.manifest import load_experiment
from kubetune.core.outcome import essentials, needs_log, outcome
from kubetune.core.plan import Limits, decide
from kubetune.core.pods import EXPERIMENT_LABEL, TRIAL_LABEL, render_pod
from kubetune.core.resources import BestTrial, Condition, ExperimentStatus, TrialCounts
from kubetune.core.spec import Experiment
from kubetune.operator.api import ClusterApi, Conflict, NotFound
from kubetune.operator.metrics import OperatorMetrics
from kubetune.operator.view import ExperimentView, phase, trial_essentials

logger = logging.getLogger("kubetune.operator")
STATUS_INTERVAL_SECONDS = 2.0
CONCURRENCY = 32
# Marking trials Running is bookkeeping (the Experiment's counts read the pods): a pass does at most this many,
# so that with thousands of trials starting at once it never delays the next pass's refills. A trial that ends
# before its turn goes straight to its final state, one write fewer.
RUNNING_UPDATES_PER_PASS = 64
# A pass reads the experiment's Trials and Pods as the first listing left them, plus the operator's own writes
# since and the pods' watch events, instead of listing them again (listing 5,000 trials and their pods, 35 MB
# of JSON from a real API server, took seconds). The pods are listed again in the background this often, a
# safety net for an event the watch never delivered (a pod deleted while it was reconnecting, say); after a
# failed pass everything is listed again.
RELIST_SECONDS = 60.0
WRITE_BEHIND_CONCURRENCY = 8


@dataclass
class _Cache:
    optimizer: Optimizer
    generation_key: tuple
    last_status: dict[str, Any] | None = None
    last_patch: float = 0.0


@dataclass
class PassResult:
    status: dict[str, Any]
    done: bool


class Reconciler:
    def __init__(self, api: ClusterApi, sharing: GpuSharing, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] | None = None, metrics: OperatorMetrics | None = None,
                 write_behind: bool = False):
        self.api = api
        self.metrics = metrics or OperatorMetrics(CollectorRegistry())
        self.sharing = sharing
        self.clock = clock
        self.monotonic = monotonic or (lambda: asyncio.get_running_loop().time())
        self._caches: dict[str, _Cache] = {}
        self._views: dict[str, ExperimentView] = {}
        self._experiments: dict[str, tuple[str, Experiment]] = {}
        self.write_behind = write_behind
        self._writing: dict[str, set[asyncio.Task]] = {}
        self._refreshing: dict[str, tuple[asyncio.Task, int, float]] = {}  # pods listed again: (listing, since, at)

    async def reconcile(self, body: dict[str, Any], pod_events: list[tuple[str | None, dict]] | None = None
                        ) -> PassResult:
        """One pass. ``pod_events`` are (event type, pod) of the experiment's pods since the last pass, from
        the watch: with them, and a listing younger than ``RELIST_SECONDS``, the pass lists nothing."""
        meta = body["metadata"]
        namespace, name = meta.get("namespace", "default"), meta["name"]
        current = body.get("status") or {}
        key = meta.get("uid") or f"{namespace}/{name}"
        if current.get("phase") in ("Succeeded", "Failed"):
            self.metrics.experiment_seen(key, current["phase"], 0)
            return PassResult(current, done=True)
        try:
            experiment = self._experiment(key, body)
        except (ManifestError, GpuSharingError) as exc:
            message = exc.describe() if isinstance(exc, ManifestError) else str(exc)
            status = ExperimentStatus(phase="Failed", reason="InvalidSpec", message=message, conditions=[
                Condition(type="Ready", status="False", reason="InvalidSpec", message=message,
                          last_transition_time=iso(self.clock()))])
            dumped = status.model_dump(by_alias=True, exclude_none=True)
            await self.api.patch_status("experiments", namespace, name, dumped)
            self.metrics.experiment_seen(key, "Failed", 0)
            return PassResult(dumped, done=True)
        experiment.metadata.namespace = namespace
        view = self._views.get(key)
        if pod_events is not None and view is not None:
            for event_type, pod in pod_events:
                view.observe(event_type, pod)
            self._refresh_pods(key, view, namespace, name)
        else:
            self.forget_view(key)
            await self.drain(key)  # a listing must not show a trial older than what the view already knows
            started = self.monotonic()
            listed_trials, listed_pods = await asyncio.gather(
                self.api.list("trials", namespace, name, trial_essentials),
                self.api.list("pods", namespace, name, essentials))
            view = self._views[key] = ExperimentView(listed_trials, listed_pods, experiment.spec.objective.direction,
                                                     started)
        cache = self._cache(body, experiment, view.trials)
        active = view.in_flight()
        # Trials whose pod ended (or has to be created) first, then refill the freed slots, and only then mark
        # the others Running: with thousands of trials in flight that bookkeeping must not delay a refill.
        settling = [t for t in active if view.may_settle(t)]
        results: list[Callable[[], Awaitable[None]]] = []
        await self._each(settling, lambda trial: self._follow(experiment, trial, view, cache, results))
        decision = decide(Limits.from_spec(experiment.spec), view.tally, cache.optimizer.exhausted)
        if decision.stop_running:
            await self._stop(experiment, view, decision.reason, cache)
        else:
            if decision.create:
                await self._create(experiment, body, view, decision.create, cache)
            # the trials whose pod runs but who are not marked Running yet (following any other trial that has
            # not settled would change nothing)
            settled = {id(t) for t in settling}
            starting = [t for t in active if id(t) not in settled and phase(t) is not TrialState.RUNNING
                        and view.pod_phase(t) == "Running"]
            await self._each(starting[:RUNNING_UPDATES_PER_PASS],
                             lambda trial: self._follow(experiment, trial, view, cache, results))
        if results:
            if self.write_behind:
                self._write_behind(key, results)
            else:
                await self._each(results, lambda write: write())
        status = self._status(experiment, view, decision, current)
        done = decision.phase != "Running" and view.tally.count(ACTIVE) == 0
        if done:
            await self.drain(key)
            # a result that could not be written (its view was dropped) keeps the experiment going: the next pass
            # lists the trials again and writes it
            done = key in self._views
        if not done and status["phase"] != "Running":
            status["phase"] = "Running"
        await self._patch_experiment_status(namespace, name, status, cache, force=done)
        if done:
            self.forget_view(key)
            self._experiments.pop(key, None)
        self.metrics.experiment_seen(key, status["phase"], view.tally.count(ACTIVE))
        return PassResult(status, done=done)

    async def report_problem(self, body: dict[str, Any], reason: str, message: str) -> None:
        """Shows in the Experiment's status why passes fail (a missing permission, say); the next pass that
        succeeds writes the status again."""
        meta = body["metadata"]
        current = body.get("status") or {}
        phase = current.get("phase") if current.get("phase") in ("Running", "Created") else "Running"
        condition = Condition(type="Ready", status="False", reason=reason, message=message,
                              last_transition_time=iso(self.clock()))
        status = {**current, "phase": phase, "reason": reason, "message": message,
                  "conditions": [condition.model_dump(by_alias=True, exclude_none=True)]}
        cache = self._caches.get(meta.get("uid") or f"{meta.get('namespace', 'default')}/{meta['name']}")
        if cache is not None:
            cache.last_status = None
        await self.api.patch_status("experiments", meta.get("namespace", "default"), meta["name"], status)

    def _experiment(self, key: str, body: dict[str, Any]) -> Experiment:
        """The validated manifest; validated again only when the spec or the annotations changed (a pass runs
        for every few ended trials, and validation would dominate one)."""
        manifest = {k: v for k, v in body.items() if k != "status"}
        fingerprint = json.dumps([manifest.get("spec"), manifest.get("metadata", {}).get("annotations")],
                                 sort_keys=True, default=str)
        known = self._experiments.get(key)
        if known is not None and known[0] == fingerprint:
            return known[1]
        experiment = load_experiment(manifest)
        place(experiment.spec.trial_template.resources.gpu,
              self.sharing.for_experiment(body["metadata"].get("annotations") or {}))
        self._experiments[key] = (fingerprint, experiment)
        return experiment

    # -- optimizer cache -----------------------------------------------------------------------------------
    def _cache(self, body: dict[str, Any], experiment: Experiment, trials: dict[str, dict]) -> _Cache:
        spec = experiment.spec
        key = (spec.model_dump_json(include={"parameters", "objective", "algorithm", "seed"}),)
        uid = body["metadata"].get("uid") or f"{experiment.metadata.namespace}/{experiment.name}"
        cache = self._caches.get(uid)
        if cache is not None and cache.generation_key == key:
            return cache
        optimizer = build_optimizer(spec, [TrialRecord.from_trial(t) for t in trials.values()])
        cache = _Cache(optimizer, key)
        self._caches[uid] = cache
        return cache

    # -- results written behind the refills ----------------------------------------------------------------
    def _write_behind(self, key: str, writes: list[Callable[[], Awaitable[None]]]) -> None:
        task = asyncio.create_task(self._write_all(key, writes))
        running = self._writing.setdefault(key, set())
        running.add(task)
        task.add_done_callback(running.discard)

    async def _write_all(self, key: str, writes: list[Callable[[], Awaitable[None]]]) -> None:
        try:
            await self._each(writes, lambda write: write(), limit=WRITE_BEHIND_CONCURRENCY)
        except Exception as exc:  # the trials stay as the cluster has them; a listing settles them again
            self.forget_view(key)
            self.metrics.reconcile_errors.inc()
            logger.warning("recording trial results failed (they are recorded again after a listing): %s", exc)

    async def drain(self, key: str | None = None) -> None:
        """Waits for the results still being written (of one experiment, or of all)."""
        tasks = [t for k, running in self._writing.items() if key in (None, k) for t in running]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def forget_view(self, uid: str) -> None:
        """The next pass of this experiment lists its Trials and Pods again."""
        self._views.pop(uid, None)
        refreshing = self._refreshing.pop(uid, None)
        if refreshing is not None:
            refreshing[0].cancel()

    def _refresh_pods(self, key: str, view: ExperimentView, namespace: str, name: str) -> None:
        """Lists the experiment's pods again every ``RELIST_SECONDS``, in the background (a listing of
        thousands of pods takes seconds, and refills must not wait for it), and folds the listing into the
        view at the first pass after it arrived."""
        refreshing = self._refreshing.get(key)
        if refreshing is not None:
            task, since, started = refreshing
            if not task.done():
                return
            del self._refreshing[key]
            if task.cancelled() or task.exception() is not None:
                self.metrics.reconcile_errors.inc()
                logger.warning("experiment %s: listing its pods again failed (tried again in %.0f s): %s", name,
                               RELIST_SECONDS, None if task.cancelled() else task.exception())
                view.listed_at = self.monotonic()
            else:
                view.refresh_pods(task.result(), since, started)
        elif self.monotonic() - view.listed_at >= RELIST_SECONDS:
            task = asyncio.create_task(self.api.list("pods", namespace, name, essentials))
            self._refreshing[key] = (task, view.version, self.monotonic())

    def forget(self, uid: str) -> None:
        for task in self._writing.pop(uid, ()):
            task.cancel()
        self.forget_view(uid)
        self._caches.pop(uid, None)
        self._views.pop(uid, None)
        self._experiments.pop(uid, None)
        self.metrics.experiment_gone(uid)

    # -- following running trials --------------------------------------------------------------------------
    async def _follow(self, experiment: Experiment, trial: dict, view: ExperimentView, cache: _Cache,
                      results: list[Callable[[], Awaitable[None]]]) -> None:
        """Brings one trial up to date with its pod. Its final state is written into the view at once and its
        status patch appended to ``results``, for the pass to write after its refills."""
        namespace, name = experiment.metadata.namespace, trial["metadata"]["name"]
        record = TrialRecord.from_trial(trial)
        record.attempts, pod = view.latest_pod(trial)
        if record.attempts == 0:
            await self._start_pod(experiment, trial, record, view)
            return
        result = await self._attempt(experiment, pod)
        if not result.ended:
            if result.state is TrialState.RUNNING and record.state is not TrialState.RUNNING:
                record.state, record.pod = TrialState.RUNNING, pod["metadata"]["name"] if pod else record.pod
                await self._patch_trial(namespace, trial, record.status(), view)
            return
        if settle(record, result, experiment.spec.trial_template.retries, self.clock()):
            await self._start_pod(experiment, trial, record, view)
            return
        final = record.status()
        view.set_status(trial, final)
        results.append(lambda: self.api.patch_status("trials", namespace, name, final))
        self.metrics.trials_finished.labels(str(record.state)).inc()
        inform(cache.optimizer, record)

    async def _attempt(self, experiment: Experiment, pod: dict | None) -> AttemptResult:
        """How the trial's latest attempt stands, from its pod (and its log, when the result is only there)."""
        if pod is None:
            return AttemptResult(TrialState.FAILED, reason="PodDeleted", message="the trial's pod disappeared")
        log = None
        if needs_log(pod):
            try:
                container = pod["spec"]["containers"][0]["name"]
                log = await self.api.pod_log(experiment.metadata.namespace, pod["metadata"]["name"], container)
            except NotFound:
                log = ""
        return outcome(pod, experiment.spec.objective, log)

    async def _start_pod(self, experiment: Experiment, trial: dict, record: TrialRecord, view: ExperimentView
                         ) -> None:
        """Starts the trial's next attempt: its pod, and the status that says so."""
        namespace, name = experiment.metadata.namespace, trial["metadata"]["name"]
        record.start(self.clock())
        pod = render_pod(experiment, name, trial["spec"]["params"], self.sharing, attempt=record.attempts,
                         owner=_owner(trial, "Trial"))
        with contextlib.suppress(Conflict):  # created by an earlier pass that was cut short
            await self.api.create("pods", namespace, pod)
        view.created(name, essentials(pod))
        record.pod = pod["metadata"]["name"]
        await self._patch_trial(namespace, trial, record.status(), view)

    async def _patch_trial(self, namespace: str, trial: dict, status: dict, view: ExperimentView) -> None:
        await self.api.patch_status("trials", namespace, trial["metadata"]["name"], status)
        view.set_status(trial, status)

    # -- creating and stopping -------------------------------------------------------------------------------
    async def _create(self, experiment: Experiment, body: dict, view: ExperimentView, count: int,
                      cache: _Cache) -> None:
        # The GP may take a while with thousands of trials: keep the event loop free for other experiments.
        with self.metrics.suggestion_seconds.time():
            suggestions = await asyncio.to_thread(cache.optimizer.ask, count)
        self.metrics.suggestions.inc(len(suggestions))
        await self._each(suggestions, lambda suggestion: self._launch(experiment, body, view, suggestion))

    async def _launch(self, experiment: Experiment, body: dict, view: ExperimentView, suggestion) -> None:
        """Creates one new trial and its first pod."""
        namespace = experiment.metadata.namespace
        number = int(suggestion.id)
        name = trial_name(experiment.name, number)
        trial = {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "Trial",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {EXPERIMENT_LABEL: experiment.name, TRIAL_LABEL: name},
                         "ownerReferences": [_owner(body, "Experiment")]},
            "spec": {"experiment": experiment.name, "number": number, "params": suggestion.params},
        }
        try:
            created = await self.api.create("trials", namespace, trial)
            self.metrics.trials_created.inc()
        except Conflict:
            created = trial
        known = (created or {}).get("metadata") or {}
        trial = trial_essentials({**trial, "metadata": {**trial["metadata"], **known}})
        record = TrialRecord(name, number, suggestion.params)
        record.start(self.clock())
        pod = render_pod(experiment, name, suggestion.params, self.sharing, attempt=record.attempts,
                         owner=_owner(trial, "Trial"))
        record.pod = pod["metadata"]["name"]
        trial["status"] = record.status()  # known to the view; written with the trial's next change
        view.add(trial)
        with contextlib.suppress(Conflict):
            await self.api.create("pods", namespace, pod)
        view.created(name, essentials(pod))

    async def _stop(self, experiment: Experiment, view: ExperimentView, reason: str, cache: _Cache) -> None:
        await self._each(view.in_flight(), lambda trial: self._kill(experiment, trial, view, reason, cache))

    async def _kill(self, experiment: Experiment, trial: dict, view: ExperimentView, reason: str,
                    cache: _Cache) -> None:
        namespace = experiment.metadata.namespace
        for pod in list(view.pods.get(trial["metadata"]["name"], {}).values()):
            with contextlib.suppress(NotFound):
                await self.api.delete("pods", namespace, pod["metadata"]["name"])
        record = TrialRecord.from_trial(trial)
        kill(record, reason, self.clock())
        await self._patch_trial(namespace, trial, record.status(), view)
        self.metrics.trials_finished.labels(str(record.state)).inc()
        inform(cache.optimizer, record)

    async def _each(self, items, action, limit: int = CONCURRENCY) -> None:
        """Runs ``action`` on every item, at most ``limit`` API conversations at a time: a pass that
        finishes hundreds of trials must not take hundreds of round trips in a row."""
        semaphore = asyncio.Semaphore(limit)

        async def bounded(item):
            async with semaphore:
                await action(item)

        await asyncio.gather(*(bounded(item) for item in items))

    # -- experiment status ---------------------------------------------------------------------------------
    def _status(self, experiment: Experiment, view: ExperimentView, decision, current: dict) -> dict[str, Any]:
        running = sum(phase(t) is TrialState.RUNNING or view.pod_phase(t) == "Running" for t in view.in_flight())
        counts = TrialCounts.of(view.tally.counts, pending=len(view.active) - running, running=running)
        best = None
        if view.best is not None and view.tally.best is not None:
            top = view.trials[view.best]
            best = BestTrial(trial=view.best, params=top["spec"]["params"], value=view.tally.best)
        done = decision.phase != "Running"
        status = ExperimentStatus(
            phase=decision.phase, reason=decision.reason, message=decision.message, trials=counts, best=best,
            start_time=current.get("startTime") or iso(self.clock()),
            completion_time=iso(self.clock()) if done else None,
            conditions=[Condition(type="Ready", status="True" if not done else "False", reason=decision.reason,
                                  message=decision.message)],
        )
        return status.model_dump(by_alias=True, exclude_none=True)

    async def _patch_experiment_status(self, namespace: str, name: str, status: dict, cache: _Cache,
                                       force: bool) -> None:
        comparable = {k: v for k, v in status.items() if k not in ("completionTime",)}
        if comparable == cache.last_status:
            return
        now = self.monotonic()
        if not force and now - cache.last_patch < STATUS_INTERVAL_SECONDS and cache.last_status is not None:
            return
        await self.api.patch_status("experiments", namespace, name, status)
        cache.last_status, cache.last_patch = comparable, now


def _owner(obj: dict, kind: str) -> dict[str, Any]:
    meta = obj.get("metadata", {})
    return {"apiVersion": obj.get("apiVersion", f"{GROUP}/{VERSION}"), "kind": kind, "name": meta["name"],
            "uid": meta.get("uid", ""), "controller": True, "blockOwnerDeletion": True}
