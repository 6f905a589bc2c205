"""One reconciliation pass over one Experiment: read what exists, decide, act.

Level-triggered, as Katib and every sound controller do it: each pass lists the experiment's Trials and
Pods, brings each trial up to date with its pod (collecting metrics when the pod has ended, starting a
retry pod when the budget allows), asks :func:`kubetune.core.plan.decide` what should happen, and does it.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from kubetune.core.crd import GROUP, VERSION
from kubetune.core.engine import Optimizer
from kubetune.core.errors import ManifestError
from kubetune.core.gpu_sharing import GpuSharing, GpuSharingError, place
from kubetune.core.manifest import load_experiment
from kubetune.core.outcome import has_ended, needs_log, outcome
from kubetune.core.plan import Limits, TrialView, best_value, decide, should_retry
from kubetune.core.pods import ATTEMPT_LABEL, EXPERIMENT_LABEL, TRIAL_LABEL, pod_name, render_pod
from kubetune.core.records import iso, trial_name
from kubetune.core.resources import BestTrial, Condition, ExperimentStatus, TrialCounts
from kubetune.core.spec import Experiment
from kubetune.operator.api import ClusterApi, Conflict, NotFound
from kubetune.operator.metrics import OperatorMetrics

logger = logging.getLogger("kubetune.operator")
ACTIVE = ("Pending", "Running")
STATUS_INTERVAL_SECONDS = 2.0
CONCURRENCY = 32
# Marking trials Running is bookkeeping (the Experiment's counts read the pods): a pass does at most this many,
# so that with thousands of trials starting at once it never delays the next pass's refills. A trial that ends
# before its turn goes straight to its final state, one write fewer.
RUNNING_UPDATES_PER_PASS = 64
PodsByTrial = dict[str, dict[str, dict]]  # trial name -> pod name -> pod
# A pass woken by pods that ended reads the experiment's Trials and Pods as the last listing left them, plus
# the operator's own writes since and the pods' watch events, instead of listing them again (listing 5,000
# trials and their pods took most of a pass). A full listing happens at least this often regardless.
RELIST_SECONDS = 10.0
WRITE_BEHIND_CONCURRENCY = 8
PHASE_ORDER = {"Pending": 0, "Running": 1, "Succeeded": 2, "Failed": 2}


@dataclass
class _Cache:
    optimizer: Optimizer
    generation_key: tuple
    pending: set[str] = field(default_factory=set)  # trial numbers the optimizer holds as pending
    last_status: dict[str, Any] | None = None
    last_patch: float = 0.0


@dataclass
class _View:
    """An experiment's Trials and Pods as last listed, kept current by the operator's own writes (the same
    dicts the passes change) and by the pods' watch events."""

    trials: dict[str, dict]
    pods: PodsByTrial
    listed_at: float

    def observe(self, event_type: str | None, pod: dict) -> None:
        meta = pod.get("metadata", {})
        trial, name = meta.get("labels", {}).get(TRIAL_LABEL), meta.get("name")
        if not trial or not name:
            return
        own = self.pods.setdefault(trial, {})
        if event_type == "DELETED":
            own.pop(name, None)
            return
        known = own.get(name)
        # Events of one pod arrive in order, but a listing may be older than an event already applied: a pod's
        # phase only moves forward, so an older state never replaces a newer one.
        if known is None or _pod_order(pod) >= _pod_order(known):
            own[name] = pod


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
        self._views: dict[str, _View] = {}
        self._experiments: dict[str, tuple[str, Experiment]] = {}
        self.write_behind = write_behind
        self._writing: dict[str, set[asyncio.Task]] = {}

    async def reconcile(self, body: dict[str, Any], ended_pods: list[tuple[str | None, dict]] | None = None
                        ) -> PassResult:
        """One pass. ``ended_pods`` are (event type, pod) of pods that ended or went since the last pass, from
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
        fast = ended_pods is not None and view is not None and self.monotonic() - view.listed_at < RELIST_SECONDS
        if fast:
            for event_type, pod in ended_pods:
                view.observe(event_type, pod)
        else:
            await self.drain(key)  # a listing must not show a trial older than what the view already knows
            started = self.monotonic()
            listed_trials, listed_pods = await asyncio.gather(self.api.list("trials", namespace, name),
                                                              self.api.list("pods", namespace, name))
            view = self._views[key] = _View({t["metadata"]["name"]: t for t in listed_trials}, _by_trial(listed_pods),
                                            started)
        trials, pods = view.trials, view.pods
        cache = self._cache(body, experiment, trials)
        active = [t for t in sorted(trials.values(), key=_number) if _phase(t) in ACTIVE]
        # Trials whose pod ended (or has to be created) first, then refill the freed slots, and only then mark
        # the others Running: with thousands of trials in flight that bookkeeping must not delay a refill.
        settling = [t for t in active if _may_settle(t, pods)]
        results: list[Callable[[], Awaitable[None]]] = []
        await self._each(settling, lambda trial: self._follow(experiment, trial, pods, cache, results))
        views = [TrialView(t["metadata"]["name"], _phase(t), (t.get("status") or {}).get("value"))
                 for t in trials.values()]
        decision = decide(Limits.from_spec(experiment.spec), views, cache.optimizer.exhausted)
        if decision.stop_running:
            await self._stop(experiment, trials, pods, decision.reason, cache)
        else:
            if decision.create:
                await self._create(experiment, body, trials, pods, decision.create, cache)
            if not fast:  # a fast pass only knows which pods ended, not which started
                settled = {id(t) for t in settling}
                rest = [t for t in active if id(t) not in settled]
                unmarked = [t for t in rest if _phase(t) != "Running"]  # following these writes; others rarely do
                rest = unmarked[:RUNNING_UPDATES_PER_PASS] + [t for t in rest if _phase(t) == "Running"]
                await self._each(rest, lambda trial: self._follow(experiment, trial, pods, cache, results))
        if results:
            if self.write_behind:
                self._write_behind(key, results)
            else:
                await self._each(results, lambda write: write())
        status = self._status(experiment, trials.values(), decision, current, pods)
        done = decision.phase != "Running" and not any(_phase(t) in ACTIVE for t in trials.values())
        if done:
            await self.drain(key)
            # a result that could not be written (its view was dropped) keeps the experiment going: the next pass
            # lists the trials again and writes it
            done = key in self._views
        if not done and status["phase"] != "Running":
            status["phase"] = "Running"
        await self._patch_experiment_status(namespace, name, status, cache, force=done)
        if done:
            self._views.pop(key, None)
            self._experiments.pop(key, None)
        self.metrics.experiment_seen(key, status["phase"], sum(_phase(t) in ACTIVE for t in trials.values()))
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
        past = [{"id": str(t["spec"]["number"]), "params": t["spec"]["params"], "state": _phase(t),
                 "value": (t.get("status") or {}).get("value")} for t in trials.values()]
        optimizer = Optimizer(spec.parameters, direction=spec.objective.direction, algorithm=spec.algorithm.name,
                              settings=spec.algorithm.settings, seed=spec.seed, trials=past)
        cache = _Cache(optimizer, key, pending=set(optimizer.pending))
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

    def forget(self, uid: str) -> None:
        for task in self._writing.pop(uid, ()):
            task.cancel()
        self._caches.pop(uid, None)
        self._views.pop(uid, None)
        self._experiments.pop(uid, None)
        self.metrics.experiment_gone(uid)

    # -- following running trials --------------------------------------------------------------------------
    async def _follow(self, experiment: Experiment, trial: dict, pods: PodsByTrial, cache: _Cache,
                      results: list[Callable[[], Awaitable[None]]]) -> None:
        """Brings one trial up to date with its pod. Its final state is written into the view at once and its
        status patch appended to ``results``, for the pass to write after its refills."""
        namespace, name = experiment.metadata.namespace, trial["metadata"]["name"]
        status = dict(trial.get("status") or {})
        attempts, pod = _latest_pod(trial, pods)
        if attempts == 0:
            await self._start_pod(experiment, trial, 1, status, pods)
            return
        if pod is None:
            result_state, reason, message = "Failed", "PodDeleted", "the trial's pod disappeared"
            result = None
        else:
            log = None
            if needs_log(pod):
                try:
                    container = pod["spec"]["containers"][0]["name"]
                    log = await self.api.pod_log(namespace, pod["metadata"]["name"], container)
                except NotFound:
                    log = ""
            result = outcome(pod, experiment.spec.objective, log)
            if not result.ended:
                if result.state == "Running" and status.get("phase") != "Running":
                    status.update(phase="Running", attempts=attempts, pod=pod["metadata"]["name"])
                    await self._patch_trial(namespace, name, status, trial)
                return
            result_state, reason, message = result.state, result.reason, result.message
        history = _retry_history(status)
        if should_retry(result_state, attempts, experiment.spec.trial_template.retries):
            note = f"attempt {attempts} failed ({message})"
            status.update(message=f"{history}; {note}{RETRYING}" if history else f"{note}{RETRYING}")
            await self._start_pod(experiment, trial, attempts + 1, status, pods)
            return
        if history:  # why the trial needed more than one attempt stays in its record
            message = f"{history}; attempt {attempts} {'succeeded' if message is None else f'failed ({message})'}"
        status.update(phase=result_state, attempts=attempts, reason=reason, message=message,
                      completionTime=iso(self.clock()))
        if result is not None:
            status.update(value=result.value, metrics=result.metrics, exitCode=result.exit_code)
        final = {k: v for k, v in status.items() if v is not None}
        trial["status"] = final
        results.append(lambda: self.api.patch_status("trials", namespace, name, final))
        self.metrics.trials_finished.labels(result_state).inc()
        self._record(cache, trial, result_state, status.get("value"))

    def _record(self, cache: _Cache, trial: dict, state: str, value: float | None) -> None:
        number = str(trial["spec"]["number"])
        if number not in cache.pending:
            return
        cache.pending.discard(number)
        if state == "Succeeded" and value is not None:
            cache.optimizer.tell(number, value)
        else:
            cache.optimizer.fail(number)

    async def _start_pod(self, experiment: Experiment, trial: dict, attempt: int, status: dict,
                         pods: PodsByTrial) -> None:
        namespace, name = experiment.metadata.namespace, trial["metadata"]["name"]
        owner = _owner(trial, "Trial")
        pod = render_pod(experiment, name, trial["spec"]["params"], self.sharing, attempt=attempt, owner=owner)
        with contextlib.suppress(Conflict):  # created by an earlier pass that was cut short
            await self.api.create("pods", namespace, pod)
        pods.setdefault(name, {}).setdefault(pod["metadata"]["name"], pod)
        status.update(phase="Pending", attempts=attempt, pod=pod["metadata"]["name"], startTime=iso(self.clock()))
        await self._patch_trial(namespace, name, status, trial)

    async def _patch_trial(self, namespace: str, name: str, status: dict, trial: dict) -> None:
        await self.api.patch_status("trials", namespace, name, status)
        trial["status"] = status

    # -- creating and stopping -------------------------------------------------------------------------------
    async def _create(self, experiment: Experiment, body: dict, trials: dict[str, dict], pods: PodsByTrial, count: int,
                      cache: _Cache) -> None:
        # The GP may take a while with thousands of trials: keep the event loop free for other experiments.
        with self.metrics.suggestion_seconds.time():
            suggestions = await asyncio.to_thread(cache.optimizer.ask, count)
        self.metrics.suggestions.inc(len(suggestions))
        for suggestion in suggestions:
            cache.pending.add(suggestion.id)
        await self._each(suggestions, lambda suggestion: self._launch(experiment, body, trials, pods, suggestion))

    async def _launch(self, experiment: Experiment, body: dict, trials: dict[str, dict], pods: PodsByTrial,
                      suggestion) -> None:
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
        trial = {**trial, "metadata": {**trial["metadata"], **((created or {}).get("metadata") or {})}}
        trials[name] = trial
        pod = render_pod(experiment, name, suggestion.params, self.sharing, attempt=1, owner=_owner(trial, "Trial"))
        with contextlib.suppress(Conflict):
            await self.api.create("pods", namespace, pod)
        pods.setdefault(name, {}).setdefault(pod["metadata"]["name"], pod)
        trial["status"] = {"phase": "Pending", "attempts": 1, "pod": pod["metadata"]["name"]}

    async def _stop(self, experiment: Experiment, trials: dict[str, dict], pods: PodsByTrial, reason: str,
                    cache: _Cache) -> None:
        active = [(name, trial) for name, trial in trials.items() if _phase(trial) in ACTIVE]
        await self._each(active, lambda item: self._kill(experiment, item[0], item[1], pods, reason, cache))

    async def _kill(self, experiment: Experiment, name: str, trial: dict, pods: PodsByTrial, reason: str,
                    cache: _Cache) -> None:
        namespace = experiment.metadata.namespace
        status = dict(trial.get("status") or {})
        for pod in list(pods.get(name, {}).values()):
            with contextlib.suppress(NotFound):
                await self.api.delete("pods", namespace, pod["metadata"]["name"])
        status.update(phase="Killed", reason=reason, message=f"experiment ended: {reason}",
                      completionTime=iso(self.clock()))
        await self._patch_trial(namespace, name, status, trial)
        self.metrics.trials_finished.labels("Killed").inc()
        self._record(cache, trial, "Killed", None)

    async def _each(self, items, action, limit: int = CONCURRENCY) -> None:
        """Runs ``action`` on every item, at most ``limit`` API conversations at a time: a pass that
        finishes hundreds of trials must not take hundreds of round trips in a row."""
        semaphore = asyncio.Semaphore(limit)

        async def bounded(item):
            async with semaphore:
                await action(item)

        await asyncio.gather(*(bounded(item) for item in items))

    # -- experiment status ---------------------------------------------------------------------------------
    def _status(self, experiment: Experiment, trials, decision, current: dict, pods: PodsByTrial) -> dict[str, Any]:
        trials = list(trials)
        counts = TrialCounts(created=len(trials))
        for trial in trials:
            phase = _phase(trial)
            if phase in ACTIVE:  # the pod knows first (a trial's own Running mark may lag behind at scale)
                phase = "Running" if _current_pod_phase(trial, pods) == "Running" else phase
            field_name = {"MetricsUnavailable": "metrics_unavailable"}.get(phase, phase.lower())
            setattr(counts, field_name, getattr(counts, field_name) + 1)
        views = [TrialView(t["metadata"]["name"], _phase(t), (t.get("status") or {}).get("value")) for t in trials]
        best_val = best_value(views, experiment.spec.objective.direction)
        best = None
        if best_val is not None:
            top = next(t for t in trials if _phase(t) == "Succeeded" and t["status"].get("value") == best_val)
            best = BestTrial(trial=top["metadata"]["name"], params=top["spec"]["params"], value=best_val)
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


RETRYING = "; retrying"


def _retry_history(status: dict) -> str | None:
    """The notes of a retrying trial's earlier attempts ("attempt 1 failed (...)"), from its status message."""
    message = status.get("message") or ""
    return message.removesuffix(RETRYING)[-2000:] if message.endswith(RETRYING) else None


def _phase(trial: dict) -> str:
    return (trial.get("status") or {}).get("phase", "Pending")


def _number(trial: dict) -> int:
    return int(trial["spec"]["number"])


def _by_trial(pods: list[dict]) -> PodsByTrial:
    """Pods grouped by their trial (name -> pod), once per pass: looking them up per trial would make a pass
    quadratic in the number of trials."""
    grouped: PodsByTrial = {}
    for pod in pods:
        trial = pod["metadata"].get("labels", {}).get(TRIAL_LABEL)
        if trial:
            grouped.setdefault(trial, {})[pod["metadata"]["name"]] = pod
    return grouped


def _pod_order(pod: dict) -> int:
    return 2 if has_ended(pod) else PHASE_ORDER.get((pod.get("status") or {}).get("phase", "Pending"), 0)


def _latest_pod(trial: dict, pods: PodsByTrial) -> tuple[int, dict | None]:
    """The trial's number of attempts so far, and the pod of the latest (None when it is missing)."""
    own = pods.get(trial["metadata"]["name"], {})
    attempts = max((trial.get("status") or {}).get("attempts", 0), _pod_attempts(own))
    return attempts, own.get(pod_name(trial["metadata"]["name"], attempts)) if attempts else None


def _current_pod(trial: dict, pods: PodsByTrial) -> dict | None:
    return _latest_pod(trial, pods)[1]


def _current_pod_phase(trial: dict, pods: PodsByTrial) -> str | None:
    pod = _current_pod(trial, pods)
    return None if pod is None else (pod.get("status") or {}).get("phase", "Pending")


def _may_settle(trial: dict, pods: PodsByTrial) -> bool:
    """Whether following ``trial`` may end it or start a pod: its latest pod is missing or has ended."""
    pod = _current_pod(trial, pods)
    return pod is None or has_ended(pod)


def _pod_attempts(pods: dict[str, dict]) -> int:
    return max((int(p["metadata"].get("labels", {}).get(ATTEMPT_LABEL, 1)) for p in pods.values()), default=0)


def _owner(obj: dict, kind: str) -> dict[str, Any]:
    meta = obj.get("metadata", {})
    return {"apiVersion": obj.get("apiVersion", f"{GROUP}/{VERSION}"), "kind": kind, "name": meta["name"],
            "uid": meta.get("uid", ""), "controller": True, "blockOwnerDeletion": True}
