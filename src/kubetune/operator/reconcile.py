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
when it changed, at a bounded rate. A pass settles ended trials and marks started ones Running in its view
(and tells the optimizer) at once, refills the slots, and only then writes those statuses, so thousands of
trials in flight do not slow a refill down. In the operator they are written behind (``write_behind``,
:mod:`kubetune.operator.trial_writes`): the next pass need not wait for them, a full listing and the
experiment's end do; a status that could not be written is written again after the listing that follows,
since its trial still shows the pod as it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry

from kubetune.core.cluster.crd import GROUP, VERSION
from kubetune.core.cluster.gpu_sharing import GpuSharing, GpuSharingError, place
from kubetune.core.cluster.outcome import essentials, needs_log, outcome
from kubetune.core.cluster.pods import (
    EXPERIMENT_LABEL,
    TRIAL_LABEL,
    ReportTarget,
    first_pod,
    keeps_pods,
    render_pod,
)
from kubetune.core.cluster.report_token import report_token
from kubetune.core.engine import Suggestion
from kubetune.core.errors import ManifestError
from kubetune.core.lifecycle import (
    ACTIVE,
    AttemptResult,
    TrialRecord,
    TrialState,
    first_of,
    fitting,
    inform,
    kill,
    settle,
    stop_early,
    trial_name,
)
from kubetune.core.manifest import load_experiment
from kubetune.core.plan import Decision, ExperimentPhase, Limits, decide
from kubetune.core.spec import Experiment
from kubetune.operator.api import ClusterApi, Conflict, Invalid, NotFound, Refused
from kubetune.operator.ask_ahead import MAX_AHEAD, AskAhead
from kubetune.operator.early_stopping import QueuedReport, ReportQueue, fold, restore
from kubetune.operator.events import (
    WARNING,
    EventRecorder,
    Note,
    hold_lifted,
    phase_changed,
    reference,
    trial_ended,
    trial_retried,
    trial_stopped_early,
)
from kubetune.operator.metrics import OperatorMetrics
from kubetune.operator.reports import Standing
from kubetune.operator.status import (
    POD_REFUSED,
    experiment_status,
    held_status,
    invalid_spec_status,
    problem_status,
)
from kubetune.operator.suggestions import ExperimentOptimizer, Suggestions, ThreadSuggestions
from kubetune.operator.trial_writes import TrialWrites
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
# of JSON from a real API server, took seconds). The unfinished pods are listed again in the background this
# often, a safety net for an event the watch never delivered (ended pods are not: they only ever go, and there
# are as many as trials); after a failed pass everything is listed again.
RELIST_SECONDS = 60.0
T = TypeVar("T")


class TrialsDoNotFit(Exception):
    """The experiment's spec was changed in a way its existing trials do not fit (its parameters)."""


@dataclass
class _Relisting:
    task: asyncio.Task[tuple[list[dict], dict[tuple[str, str], dict | None]]]  # listed, and looked up one by one
    since: int  # the view's version when the listing began
    started: float


@dataclass
class ExperimentState:
    """What the operator keeps of one experiment between passes; all of it can be rebuilt from the cluster."""

    fingerprint: str | None = None  # of the spec and annotations the experiment was validated from
    admitted: str | None = None  # the fingerprint whose first pod the API server admitted in a dry run
    refused: str | None = None  # why the API server refused a trial pod in this pass (None: it refused none)
    experiment: Experiment | None = None
    optimizer: AskAhead | None = None
    optimizer_key: str | None = None  # what the optimizer was built from (parameters, objective, algorithm)
    view: ExperimentView | None = None
    relisting: _Relisting | None = None
    writes: TrialWrites = field(default_factory=TrialWrites)  # the trials' status writes
    writing: set[asyncio.Task[None]] = field(default_factory=set)  # passes' writes still being written behind
    last_status: dict[str, Any] | None = None
    last_patch: float = 0.0
    reports: ReportQueue = field(default_factory=ReportQueue)  # pushed by trial pods, for the next pass
    involved: dict[str, Any] | None = None  # the Experiment as its Events name it
    phase: str | None = None  # the phase its last pass decided (its Events say when it moves)

    def replace_optimizer(self, optimizer: AskAhead | None) -> None:
        if self.optimizer is not None:
            self.optimizer.close()
        self.optimizer = optimizer

    def forget_view(self) -> None:
        self.view = None
        if self.relisting is not None:
            self.relisting.task.cancel()
            self.relisting = None


@dataclass(frozen=True)
class Reporting:
    """The operator's report endpoint as trial pods reach it, and the key their tokens are signed with."""

    url: str
    key: bytes

    def target(self, namespace: str, trial: str, attempt: int) -> ReportTarget:
        return ReportTarget(self.url, report_token(self.key, namespace, trial, attempt))


@dataclass
class PassResult:
    status: dict[str, Any]
    done: bool
    held: bool = False  # the API server refused trial pods: the next pass should come after a backoff


class Reconciler:
    def __init__(self, api: ClusterApi, sharing: GpuSharing, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] | None = None, metrics: OperatorMetrics | None = None,
                 write_behind: bool = False, reporting: Reporting | None = None,
                 suggestions: Suggestions | None = None, ask_ahead: bool = False,
                 events: EventRecorder | None = None, wake: Callable[[str, str], None] = lambda namespace, name: None):
        self.api = api
        self.events = events
        self.suggestions = suggestions or ThreadSuggestions()
        self.reporting = reporting
        self.metrics = metrics or OperatorMetrics(CollectorRegistry())
        self.sharing = sharing
        self.clock = clock
        self.monotonic = monotonic or (lambda: asyncio.get_running_loop().time())
        self.write_behind = write_behind
        self.ask_ahead = ask_ahead  # suggestions asked ahead (ask_ahead.AskAhead); ``wake`` runs a pass soon
        self.wake = wake
        self._states: dict[str, ExperimentState] = {}
        self._keys: dict[tuple[str, str], str] = {}  # (namespace, name) -> the key of its state

    async def reconcile(self, body: dict[str, Any], pod_events: list[tuple[str | None, dict]] | None = None
                        ) -> PassResult:
        """One pass. ``pod_events`` are (event type, pod) of the experiment's pods since the last pass, from
        the watch: with them, and a listing younger than ``RELIST_SECONDS``, the pass lists nothing."""
        meta = body["metadata"]
        namespace, name = meta.get("namespace", "default"), meta["name"]
        current = body.get("status") or {}
        key = _key(meta)
        if current.get("phase") in (ExperimentPhase.SUCCEEDED, ExperimentPhase.FAILED):
            self.metrics.experiment_seen(key, current["phase"], 0)
            return PassResult(current, done=True)
        state = self._states.setdefault(key, ExperimentState())
        self._keys[(namespace, name)] = key
        state.involved = reference(body)
        try:
            experiment = self._validated(state, body)
        except (ManifestError, GpuSharingError) as exc:
            return await self._end_invalid(state, body, key, exc.describe() if isinstance(exc, ManifestError)
                                           else str(exc))
        held_before, state.refused = state.refused is not None, None
        view = await self._refresh_view(state, experiment, pod_events)
        optimizer = await self._optimizer(key, state, experiment, view)
        writes = state.writes
        settling = await self._settle(experiment, view, optimizer, writes)
        await self._stop_early(state, experiment, view, optimizer)
        decision = decide(Limits.from_spec(experiment.spec), view.tally, optimizer.exhausted)
        try:
            decision = await self._admitted(state, experiment, decision, held_before)
        except Invalid as exc:
            return await self._end_invalid(state, body, key, f"trialTemplate.spec: the API server refused the "
                                           f"trial pod: {exc}")
        await self._act(experiment, body, view, optimizer, decision, settling, writes)
        await self._write_statuses(state)
        return await self._publish_status(state, experiment, view, decision, current, key)

    # -- the steps of a pass --------------------------------------------------------------------------------
    def _validated(self, state: ExperimentState, body: dict[str, Any]) -> Experiment:
        """The validated manifest; validated again only when the spec or the annotations changed (a pass runs
        for every few ended trials, and validation would dominate one)."""
        manifest = {k: v for k, v in body.items() if k != "status"}
        fingerprint = json.dumps([manifest.get("spec"), manifest.get("metadata", {}).get("annotations")],
                                 sort_keys=True, default=str)
        if state.experiment is None or state.fingerprint != fingerprint:
            experiment = load_experiment(manifest)
            place(experiment.spec.trial_template.resources.gpu,
                  self.sharing.for_experiment(body["metadata"].get("annotations") or {}))
            experiment.metadata.namespace = body["metadata"].get("namespace", "default")
            state.experiment, state.fingerprint = experiment, fingerprint
        return state.experiment

    async def _admitted(self, state: ExperimentState, experiment: Experiment, decision: Decision,
                        held_before: bool) -> Decision:
        """The decision, or none of its starts while the API server refuses trial pods. Before a pass creates
        pods from a template not yet tried (a new experiment, an edited spec), or after a refusal, the API
        server is asked in a dry run whether the first trial's pod would be created: a template it finds
        invalid raises :class:`Invalid` (the experiment cannot run), any other refusal (a quota, an admission
        policy or webhook) holds the experiment, and no Trial is created while it does."""
        if not (decision.create or decision.start) or (state.admitted == state.fingerprint and not held_before):
            return decision
        try:
            await self.api.create("pods", _namespace(experiment), first_pod(experiment, self.sharing), dry_run=True)
        except Conflict:  # the first trial's pod exists (the API server validates and admits before it looks)
            pass
        except Refused as exc:
            state.refused = str(exc)
            return dataclasses.replace(decision, start=[], create=0)
        state.admitted = state.fingerprint
        return decision

    async def _end_invalid(self, state: ExperimentState, body: dict[str, Any], key: str, message: str
                           ) -> PassResult:
        """Ends an experiment that cannot run as written: Failed, InvalidSpec, with an Event saying why."""
        meta = body["metadata"]
        status = invalid_spec_status(message, self.clock(), body.get("status"))
        await self.api.patch_status("experiments", meta.get("namespace", "default"), meta["name"], status)
        self.metrics.experiment_seen(key, ExperimentPhase.FAILED, 0)
        await self._tell(state, Note(WARNING, "InvalidSpec", status["message"]))
        self._forget_run(state, key)
        return PassResult(status, done=True)

    def _forget_run(self, state: ExperimentState, key: str) -> None:
        """An experiment that ended keeps nothing of its run in memory (its view, optimizer, validated spec)."""
        state.forget_view()
        state.experiment = None
        state.replace_optimizer(None)
        self.suggestions.forget(key)

    async def _refresh_view(self, state: ExperimentState, experiment: Experiment,
                            pod_events: list[tuple[str | None, dict]] | None) -> ExperimentView:
        """The view brought up to date: the watch's pod events folded in, or everything listed again."""
        namespace, name = _namespace(experiment), experiment.name
        if pod_events is not None and state.view is not None:
            for event_type, pod in pod_events:
                state.view.observe(event_type, pod)
            self._relist_pods(state, namespace, name)
            return state.view
        state.forget_view()
        # The optimizer is built again with the view: after a failed pass it may hold suggestions whose Trial
        # was never created.
        state.replace_optimizer(None)
        await self._drain(state)  # a listing must not show a trial older than what the view already knows
        started = self.monotonic()
        listed_trials, listed_pods = await asyncio.gather(
            self.api.list("trials", namespace, name, trial_essentials),
            self.api.list("pods", namespace, name, essentials))
        state.view = ExperimentView(listed_trials, listed_pods, experiment.spec.objective.direction, started)
        restore(state.reports, state.view)
        going = state.view.outlived() + state.view.unretained(experiment.spec.trial_template.retain)
        await self._each(going, lambda pod: self._delete_pod(namespace, pod))
        return state.view

    async def _optimizer(self, key: str, state: ExperimentState, experiment: Experiment, view: ExperimentView
                         ) -> AskAhead:
        """The experiment's optimizer: kept between passes, built again from the Trials after a restart (of the
        operator or of the suggestion worker) or when what it depends on changed."""
        spec = experiment.spec
        built_from = spec.model_dump_json(include={"parameters", "objective", "algorithm", "seed"})
        if state.optimizer is None or state.optimizer_key != built_from or state.optimizer.stale:
            records, unfit = fitting(spec, [TrialRecord.from_trial(t) for t in view.trials.values()])
            if unfit:
                raise TrialsDoNotFit(f"its trials no longer fit its spec: {first_of(unfit)}; spec.parameters "
                                     "cannot change while an experiment runs: restore them, or start a new experiment")
            state.replace_optimizer(None)
            names = (_namespace(experiment), experiment.name)
            optimizer = AskAhead(await self.suggestions.build(key, spec, records), self.monotonic, self._asked,
                                 on_ready=lambda: self.wake(*names), max_ahead=MAX_AHEAD if self.ask_ahead else 0)
            state.replace_optimizer(optimizer)
            state.optimizer_key = built_from
            return optimizer
        return state.optimizer

    async def _settle(self, experiment: Experiment, view: ExperimentView, optimizer: ExperimentOptimizer,
                      writes: TrialWrites) -> set[int]:
        """Follows the trials whose pod ended or is missing (ended trials are settled in the view and in the
        optimizer at once, their status writes queued in ``writes``); returns them (by ``id``)."""
        settling = [view.trials[name] for name in view.settleable]
        await self._each(settling, lambda trial: self._follow(experiment, trial, view, optimizer, writes))
        return {id(t) for t in settling}

    async def _act(self, experiment: Experiment, body: dict[str, Any], view: ExperimentView,
                   optimizer: AskAhead, decision: Decision, settled: set[int], writes: TrialWrites
                   ) -> None:
        """Carries out the decision: stop everything, or start the queued trials it names, create new ones, and
        then mark Running the trials whose pod runs (bookkeeping that must not delay a refill)."""
        if decision.stop_running:
            await self._each(view.in_flight(), lambda trial: self._kill(experiment, trial, view, decision.reason,
                                                                         optimizer, writes))
            return
        queued = [view.trials[name] for name in decision.start]
        await self._each(queued, lambda trial: self._follow(experiment, trial, view, optimizer, writes))
        if decision.create:
            await self._create(experiment, body, view, decision, optimizer)
        for marking in (view.starting, view.unexplained):  # Running marks, and why pods wait to be scheduled
            trials = [view.trials[name] for name in itertools.islice(marking, 2 * RUNNING_UPDATES_PER_PASS)]
            trials = [trial for trial in trials if id(trial) not in settled]
            await self._each(trials[:RUNNING_UPDATES_PER_PASS],
                             lambda trial: self._follow(experiment, trial, view, optimizer, writes))

    async def _stop_early(self, state: ExperimentState, experiment: Experiment, view: ExperimentView,
                          optimizer: ExperimentOptimizer) -> None:
        """Folds the reports trial pods pushed since the last pass into their progress, writes the progress
        that must survive a restart, and stops the trials the early-stopping rule says to stop: their result
        (``EarlyStopped``) written, then their pod deleted, so the slot refills in this pass."""
        folded = fold(state.reports, experiment, view)
        namespace = _namespace(experiment)
        writes = state.writes
        await self._each(folded.persist, lambda item: self._patch_trial(namespace, item[0], item[1].status(), view,
                                                                        writes))
        await self._each(folded.stop, lambda item: self._stop_trial(experiment, *item, view, optimizer, writes))

    async def _write_statuses(self, state: ExperimentState) -> None:
        """Writes the statuses the pass queued (results, Running marks): behind the pass in the operator (the
        next pass need not wait for them), before the pass ends otherwise."""
        started = state.writes.start()
        if not started:
            return
        if self.write_behind:
            task = asyncio.create_task(self._written(state, started))
            state.writing.add(task)
            task.add_done_callback(state.writing.discard)
        else:
            await asyncio.gather(*started)

    async def _publish_status(self, state: ExperimentState, experiment: Experiment, view: ExperimentView,
                              decision: Decision, current: dict[str, Any], key: str) -> PassResult:
        """Patches the Experiment's status (when it changed, at a bounded rate); the experiment is done once
        nothing is in flight and every result is written."""
        status = experiment_status(view, decision, current, self.clock())
        done = decision.phase.is_over and view.tally.count(ACTIVE) == 0
        if done:
            await self._drain(state)
            # a result that could not be written (its view was dropped) keeps the experiment going: the next pass
            # lists the trials again and writes it
            done = state.view is not None
        if not done and ExperimentPhase(status["phase"]).is_over:  # its last trials are being stopped
            status["phase"] = str(ExperimentPhase.RUNNING)
        held = not done and state.refused is not None
        was_held = (state.last_status or {}).get("reason") == POD_REFUSED
        if held:
            status = held_status(status, current, state.refused or "", self.clock())
        await self._patch_experiment_status(experiment, status, state, force=done or held or was_held)
        if held:  # its phase Event waits until the hold ends ("Started" would say what does not happen)
            await self._tell(state, Note(WARNING, POD_REFUSED, status["message"]))
        elif done or not decision.phase.is_over:  # (not while its last trials are being stopped)
            await self._tell(state, hold_lifted(current.get("reason"), status.get("reason")))
            before, state.phase = state.phase or current.get("phase"), str(decision.phase)
            await self._tell(state, phase_changed(before, state.phase, decision.reason, decision.message))
        if done:
            self._forget_run(state, key)
        self.metrics.experiment_seen(key, status["phase"], view.tally.count(ACTIVE))
        return PassResult(status, done=done, held=held)

    # -- problems, restarts and deletions -------------------------------------------------------------------
    async def report_problem(self, body: dict[str, Any], reason: str, message: str) -> None:
        """Shows in the Experiment's status why passes fail (a missing permission, say); the next pass that
        succeeds writes the status again."""
        meta = body["metadata"]
        state = self._states.get(_key(meta))
        if state is not None:
            state.last_status = None
        status = problem_status(body.get("status") or {}, reason, message, self.clock())
        await self.api.patch_status("experiments", meta.get("namespace", "default"), meta["name"], status)
        if self.events is not None:  # a hold retried every pass is one Event, counted (the recorder dedups)
            await self.events.record(reference(body), Note(WARNING, reason, message))

    def forget_view(self, key: str) -> None:
        """The next pass of this experiment lists its Trials and Pods again."""
        state = self._states.get(key)
        if state is not None:
            state.forget_view()

    def forget_views(self) -> None:
        """Every experiment's next pass lists its Trials and Pods again."""
        for state in self._states.values():
            state.forget_view()

    def forget(self, key: str) -> None:
        """The experiment is gone: nothing of it is kept."""
        state = self._states.pop(key, None)
        self._keys = {names: known for names, known in self._keys.items() if known != key}
        self.suggestions.forget(key)
        if state is not None:
            state.replace_optimizer(None)
            for task in state.writing:
                task.cancel()
            state.writes.cancel()
            state.forget_view()
        self.metrics.experiment_gone(key)

    async def drain(self) -> None:
        """Waits for the results still being written, of every experiment."""
        for state in list(self._states.values()):
            await self._drain(state)

    # -- statuses written behind the refills ---------------------------------------------------------------
    async def _written(self, state: ExperimentState, writes: list[asyncio.Future[None]]) -> None:
        failed = [r for r in await asyncio.gather(*writes, return_exceptions=True) if isinstance(r, Exception)]
        if failed:  # the trials stay as the cluster has them; a listing settles them again
            state.forget_view()
            self.metrics.reconcile_errors.inc()
            logger.warning("recording trial statuses failed (they are recorded again after a listing): %s",
                           failed[0])

    @staticmethod
    async def _drain(state: ExperimentState) -> None:
        if state.writing:
            await asyncio.gather(*state.writing, return_exceptions=True)

    def _relist_pods(self, state: ExperimentState, namespace: str, name: str) -> None:
        """Lists the experiment's unfinished pods again every ``RELIST_SECONDS``, in the background (a listing
        of thousands of pods takes seconds, and refills must not wait for it), and folds the listing into the
        view at the first pass after it arrived."""
        view = state.view
        assert view is not None
        relisting = state.relisting
        if relisting is not None:
            if not relisting.task.done():
                return
            state.relisting = None
            if relisting.task.cancelled() or relisting.task.exception() is not None:
                self.metrics.reconcile_errors.inc()
                logger.warning("experiment %s: listing its pods again failed (tried again in %.0f s): %s", name,
                               RELIST_SECONDS, None if relisting.task.cancelled() else relisting.task.exception())
                view.listed_at = self.monotonic()
            else:
                view.refresh_unfinished(*relisting.task.result(), relisting.since, relisting.started)
        elif self.monotonic() - view.listed_at >= RELIST_SECONDS:
            task = asyncio.create_task(self._unfinished_pods(view, namespace, name, view.version))
            state.relisting = _Relisting(task, view.version, self.monotonic())

    async def _unfinished_pods(self, view: ExperimentView, namespace: str, name: str, since: int
                               ) -> tuple[list[dict], dict[tuple[str, str], dict | None]]:
        """The experiment's unfinished pods, and each pod the view holds as unfinished that the listing lacks,
        looked up one by one (None: gone): it ended, or went, while nothing said so."""
        listed = await self.api.list("pods", namespace, name, essentials, unfinished=True)
        found = {pod["metadata"]["name"] for pod in listed}
        looked_up: dict[tuple[str, str], dict | None] = {}
        for trial, pod in view.unfinished_unheard_of(since):
            if pod not in found:
                try:
                    looked_up[trial, pod] = essentials(await self.api.get("pods", namespace, pod))
                except NotFound:
                    looked_up[trial, pod] = None
        return listed, looked_up

    # -- following running trials --------------------------------------------------------------------------
    async def _follow(self, experiment: Experiment, trial: dict, view: ExperimentView, optimizer: ExperimentOptimizer,
                      writes: TrialWrites) -> None:
        """Brings one trial up to date with its pod. Its Running mark or final state is written into the view
        at once and its status patch queued in ``writes``, for the pass to write after its refills."""
        namespace, name = _namespace(experiment), trial["metadata"]["name"]
        record = TrialRecord.from_trial(trial)
        record.attempts, pod = view.latest_pod(trial)
        if record.attempts == 0:
            await self._start_pod(experiment, trial, record, view, writes)
            return
        result = await self._attempt(experiment, pod)
        if not result.ended:
            self._going(namespace, trial, record, result, pod, view, writes)
            return
        if settle(record, result, Limits.from_spec(experiment.spec).retries, self.clock()):
            await self._tell(self._state_of(experiment), trial_retried(record))
            await self._start_pod(experiment, trial, record, view, writes)
            return
        final = record.status()
        view.set_status(trial, final)
        going = [] if keeps_pods(experiment.spec.trial_template.retain, record.state) else list(view.pods.get(name, {}))
        writes.later(name, lambda: self._record_end(namespace, name, final, going))
        self.metrics.trials_finished.labels(str(record.state)).inc()
        inform(optimizer, record)
        await self._tell(self._state_of(experiment), trial_ended(record))

    def _going(self, namespace: str, trial: dict, record: TrialRecord, result: AttemptResult, pod: dict | None,
               view: ExperimentView, writes: TrialWrites) -> None:
        """Marks a trial whose pod runs Running, or shows why its pod waits (the scheduler's reason and message,
        or none once it no longer waits), queuing the status write when that changed."""
        if result.state is TrialState.RUNNING and record.state is not TrialState.RUNNING:
            record.state = TrialState.RUNNING
        elif not (result.state is TrialState.PENDING and record.state is TrialState.PENDING
                  and (record.reason, record.message) != (result.reason, result.message)):
            return
        record.reason, record.message = result.reason, result.message
        record.pod = pod["metadata"]["name"] if pod else record.pod
        status, name = record.status(), record.id
        view.set_status(trial, status)
        writes.later(name, lambda: self.api.patch_status("trials", namespace, name, status))

    async def _record_end(self, namespace: str, trial: str, status: dict, pods: list[str]) -> None:
        """Writes a trial's result, then deletes the pods ``trialTemplate.retain`` does not keep (their logs were
        read already; a pod deleted first would leave no record of the result if the write failed)."""
        await self.api.patch_status("trials", namespace, trial, status)
        await self._each(pods, lambda pod: self._delete_pod(namespace, pod))

    async def _attempt(self, experiment: Experiment, pod: dict | None) -> AttemptResult:
        """How the trial's latest attempt stands, from its pod (and its log, when the result is only there)."""
        if pod is None:
            return AttemptResult(TrialState.FAILED, reason="PodDeleted", message="the trial's pod disappeared")
        log = None
        if needs_log(pod):
            try:
                container = pod["spec"]["containers"][0]["name"]
                log = await self.api.pod_log(_namespace(experiment), pod["metadata"]["name"], container)
            except NotFound:
                log = ""
        return outcome(pod, experiment.spec.objective, log)

    async def _start_pod(self, experiment: Experiment, trial: dict, record: TrialRecord, view: ExperimentView,
                         writes: TrialWrites) -> None:
        """Starts the trial's next attempt: its pod, and the status that says so."""
        namespace, name = _namespace(experiment), trial["metadata"]["name"]
        record.start(self.clock())
        pod = render_pod(experiment, name, trial["spec"]["params"], self.sharing, attempt=record.attempts,
                         owner=_owner(trial, "Trial"), report=self._report_target(experiment, name, record.attempts))
        if not await self._create_pod(experiment, pod):  # the trial stays as it was: a later pass tries again
            return
        view.created(name, essentials(pod))
        record.pod = pod["metadata"]["name"]
        await self._patch_trial(namespace, trial, record.status(), view, writes)

    async def _create_pod(self, experiment: Experiment, pod: dict[str, Any]) -> bool:
        """Creates a trial pod; False when the API server refused it (a quota, an admission policy or webhook),
        which holds the experiment (``ExperimentState.refused``) rather than failing the pass."""
        try:
            await self.api.create("pods", _namespace(experiment), pod)
        except Conflict:  # created by an earlier pass that was cut short
            pass
        except (Refused, Invalid) as exc:
            state = self._state_of(experiment)
            if state is not None:
                state.refused = str(exc)
            return False
        return True

    async def _patch_trial(self, namespace: str, trial: dict, status: dict, view: ExperimentView,
                           writes: TrialWrites) -> None:
        name = trial["metadata"]["name"]
        await writes.now(name, lambda: self.api.patch_status("trials", namespace, name, status))
        view.set_status(trial, status)

    # -- creating and stopping -------------------------------------------------------------------------------
    async def _create(self, experiment: Experiment, body: dict, view: ExperimentView, decision: Decision,
                      optimizer: AskAhead) -> None:
        with self.metrics.suggestion_wait_seconds.time():
            suggestions = await optimizer.ask(decision.create, room=decision.room)
        await self._each(suggestions, lambda suggestion: self._launch(experiment, body, view, suggestion))

    async def _launch(self, experiment: Experiment, body: dict, view: ExperimentView, suggestion: Suggestion
                      ) -> None:
        """Creates one new trial and its first pod."""
        namespace = _namespace(experiment)
        number = int(suggestion.id)
        name = trial_name(experiment.name, number)
        trial: dict[str, Any] = {
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
                         owner=_owner(trial, "Trial"), report=self._report_target(experiment, name, record.attempts))
        record.pod = pod["metadata"]["name"]
        trial["status"] = record.status()  # known to the view; written with the trial's next change
        view.add(trial)
        if not await self._create_pod(experiment, pod):
            view.set_status(trial, {})  # no attempt started: a later pass starts its first pod
            return
        view.created(name, essentials(pod))

    # A trial stopped by the operator has its end recorded before its pods are deleted: an operator killed in
    # between leaves an ended Trial whose pod its successor deletes (ExperimentView.outlived), where the
    # other order would leave a Running Trial without a pod, which a successor can only take for a failure.
    async def _kill(self, experiment: Experiment, trial: dict, view: ExperimentView, reason: str,
                    optimizer: ExperimentOptimizer, writes: TrialWrites) -> None:
        namespace = _namespace(experiment)
        record = TrialRecord.from_trial(trial)
        kill(record, reason, self.clock())
        await self._end_trial(namespace, trial, record, view, optimizer, writes)

    async def _stop_trial(self, experiment: Experiment, trial: dict, record: TrialRecord, view: ExperimentView,
                          optimizer: ExperimentOptimizer, writes: TrialWrites) -> None:
        now = self.clock()
        settle(record, stop_early(record, experiment.spec.early_stopping.rule, now), 0, now)
        await self._end_trial(_namespace(experiment), trial, record, view, optimizer, writes)
        logger.info("trial %s/%s: %s", _namespace(experiment), trial["metadata"]["name"], record.message)
        await self._tell(self._state_of(experiment), trial_stopped_early(record))

    async def _end_trial(self, namespace: str, trial: dict, record: TrialRecord, view: ExperimentView,
                         optimizer: ExperimentOptimizer, writes: TrialWrites) -> None:
        """Records the end of a trial the operator stopped, then deletes its pods."""
        pods = list(view.pods.get(trial["metadata"]["name"], {}))
        await self._patch_trial(namespace, trial, record.status(), view, writes)
        self.metrics.trials_finished.labels(str(record.state)).inc()
        inform(optimizer, record)
        await self._each(pods, lambda pod: self._delete_pod(namespace, pod))

    async def _delete_pod(self, namespace: str, pod: str) -> None:
        with contextlib.suppress(NotFound):
            await self.api.delete("pods", namespace, pod)

    def _asked(self, seconds: float, count: int) -> None:
        self.metrics.suggestion_seconds.observe(seconds)
        self.metrics.suggestions.inc(count)

    # -- Events -------------------------------------------------------------------------------------------------
    def _state_of(self, experiment: Experiment) -> ExperimentState | None:
        return self._states.get(self._keys.get((_namespace(experiment), experiment.name), ""))

    async def _tell(self, state: ExperimentState | None, note: Note | None) -> None:
        """Posts ``note`` (if any) as an Event about the experiment; the trials' Events are about it too, where
        people look (``kubectl describe experiment``), and so that thousands of failing trials are combined
        into one Event rather than posted one per Trial."""
        if note is not None and self.events is not None and state is not None and state.involved is not None:
            await self.events.record(state.involved, note)

    # -- the report endpoint's side (kubetune.operator.reports.ReportSink) ------------------------------------
    def standing(self, namespace: str, trial: str) -> Standing | None:
        experiment = trial.rpartition("-")[0]
        state = self._states.get(self._keys.get((namespace, experiment), ""))
        if state is None:
            return None
        if state.view is None or state.experiment is None:
            over = ExperimentPhase((state.last_status or {}).get("phase", "Running")).is_over
            return Standing(experiment, ended=True) if over else Standing(experiment, ready=False)
        known = state.view.trials.get(trial)
        if known is None:
            return None
        return Standing(experiment, attempt=state.view.latest_pod(known)[0], ended=phase(known).is_finished,
                        resource=state.experiment.spec.early_stopping.resource)

    def accept(self, namespace: str, experiment: str, trial: str, attempt: int, values: dict[str, float]) -> None:
        state = self._states.get(self._keys.get((namespace, experiment), ""))
        if state is not None:
            state.reports.add(QueuedReport(trial, attempt, values))

    def _report_target(self, experiment: Experiment, trial: str, attempt: int) -> ReportTarget | None:
        """Where the pod of ``attempt`` pushes its reports: only with an early-stopping rule (without one a
        report would cost the operator a request and nothing would use it)."""
        if self.reporting is None or experiment.spec.early_stopping.rule == "none":
            return None
        return self.reporting.target(_namespace(experiment), trial, attempt)

    async def _each(self, items: Iterable[T], action: Callable[[T], Awaitable[None]], limit: int = CONCURRENCY
                    ) -> None:
        """Runs ``action`` on every item, at most ``limit`` API conversations at a time: a pass that
        finishes hundreds of trials must not take hundreds of round trips in a row."""
        semaphore = asyncio.Semaphore(limit)

        async def bounded(item: T) -> None:
            async with semaphore:
                await action(item)

        await asyncio.gather(*(bounded(item) for item in items))

    async def _patch_experiment_status(self, experiment: Experiment, status: dict, state: ExperimentState,
                                       force: bool) -> None:
        comparable = {k: v for k, v in status.items() if k not in ("completionTime",)}
        if comparable == state.last_status:
            return
        now = self.monotonic()
        if not force and now - state.last_patch < STATUS_INTERVAL_SECONDS and state.last_status is not None:
            return
        await self.api.patch_status("experiments", _namespace(experiment), experiment.name, status)
        state.last_status, state.last_patch = comparable, now


def _owner(obj: dict, kind: str) -> dict[str, Any]:
    meta = obj.get("metadata", {})
    return {"apiVersion": obj.get("apiVersion", f"{GROUP}/{VERSION}"), "kind": kind, "name": meta["name"],
            "uid": meta.get("uid", ""), "controller": True, "blockOwnerDeletion": True}


def _key(meta: dict[str, Any]) -> str:
    return meta.get("uid") or f"{meta.get('namespace', 'default')}/{meta['name']}"


def _namespace(experiment: Experiment) -> str:
    return experiment.metadata.namespace or "default"
