"""The runner: carries out an experiment over a :class:`~kubetune.runners.backend.Backend`.

It is a loop of named steps over :mod:`kubetune.core` (every rule is there): decide what to do
(:func:`~kubetune.core.plan.decide`), start attempts (queued trials first, then new suggestions from the
optimizer, conditioned on every trial still running), wait for any to end, and settle each ended attempt
(:func:`~kubetune.core.lifecycle.settle`: a retry, or the trial's result, which the optimizer is told at
once so the freed slot is refilled with what was just learnt). Every ended attempt is recorded in the
:class:`~kubetune.runners.run_folder.RunFolder` as it ends, so an interrupted run loses nothing and a
resumed one carries on where it stopped. Ctrl-C, SIGTERM and SIGHUP stop the trials and record them as
interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubetune.core.collect import collector, from_output
from kubetune.core.engine import Optimizer
from kubetune.core.lifecycle import (
    INTERRUPTED,
    AttemptResult,
    TrialRecord,
    TrialState,
    build_optimizer,
    inform,
    kill,
    settle,
    stop_early,
    trial_name,
)
from kubetune.core.manifest import local_run_problems
from kubetune.core.plan import Decision, ExperimentPhase, Limits, Tally, decide
from kubetune.core.spec import Experiment
from kubetune.core.stopping import StoppingRule, build_rule, judge, observe
from kubetune.core.summary import sitting, summarize
from kubetune.core.template import substitute_all, trial_environment
from kubetune.runners.backend import Attempt, AttemptEnd, Backend, RunnerError
from kubetune.runners.reports import Tail
from kubetune.runners.run_folder import RunFolder

Clock = Callable[[], datetime]
REPORT_POLL_SECONDS = 0.5  # how often running trials' output is read for reports, with early stopping on


@dataclass
class RunOutcome:
    phase: str  # Succeeded | Failed | Interrupted
    reason: str
    message: str
    summary: dict[str, Any]
    records: list[TrialRecord]


class Runner:
    def __init__(self, experiment: Experiment, folder: RunFolder, backend: Backend, workdir: Path, *,
                 resume: bool = False, on_trial_end: Callable[[TrialRecord], None] = lambda _record: None,
                 clock: Clock = lambda: datetime.now(UTC)):
        self.experiment = experiment
        self.spec = experiment.spec
        self.folder = folder
        self.backend = backend
        self.workdir = Path(workdir)
        self.resume = resume
        self.on_trial_end = on_trial_end
        self.clock = clock
        self.limits = Limits.from_spec(self.spec)
        self.container = self.spec.trial_template.spec["containers"][0]
        self.collector = collector(self.spec.trial_template.metrics_collector)
        self.records: dict[str, TrialRecord] = {}
        self.tally = Tally(self.limits.direction)  # kept up as trials move, so a pass never counts them all
        self.running: set[str] = set()
        self.attempts_run = 0
        self._optimizer: Optimizer | None = None
        stopping = self.spec.early_stopping
        self.rule: StoppingRule | None = build_rule(stopping.rule, stopping.settings) if stopping.enabled else None
        self._tails: dict[str, Tail] = {}

    @property
    def warnings(self) -> list[str]:
        return self.folder.warnings

    @property
    def at_once(self) -> int:
        return self.backend.at_once(self.spec.parallelism)

    def prepare(self) -> None:
        """Checks the experiment can run here and opens the run folder (raises :class:`RunnerError`)."""
        problems = local_run_problems(self.spec)
        if problems:
            raise RunnerError(str(problems[0]))
        self.backend.prepare()
        self.records = self.folder.open(self.experiment, self.resume)
        self.tally = Tally.of(self.records.values(), self.limits.direction)
        self._optimizer = build_optimizer(self.spec, list(self.records.values()))

    @property
    def optimizer(self) -> Optimizer:
        assert self._optimizer is not None, "prepare() first"
        return self._optimizer

    # -- the loop -------------------------------------------------------------------------------------------
    async def run(self) -> RunOutcome:
        if self._optimizer is None:
            self.prepare()
        started = self.clock()
        interrupted = asyncio.Event()
        async with self.backend:
            with _stop_signals(asyncio.get_running_loop(), interrupted):
                while True:
                    decision = decide(self.limits, self.tally, self.optimizer.exhausted)
                    if decision.stop_running and (self.running or self._queued()):
                        await self._stop_all(decision.reason)
                        continue
                    if decision.phase.is_over and not self.running:
                        return self._finish(decision, started)
                    self._launch(decision)
                    if not self.running:
                        if self.optimizer.exhausted:
                            continue  # the next decision ends the experiment
                        raise RunnerError(f"no trial can start ({decision.reason}): {decision.message}")
                    ends = await self._wait_any(interrupted)
                    if ends is not None and not ends:
                        await self._follow_reports()
                        continue
                    if ends is None:
                        await self._stop_all(INTERRUPTED)
                        stopped = Decision(ExperimentPhase.RUNNING, INTERRUPTED, "stopped by the user")
                        return self._finish(stopped, started, phase="Interrupted")
                    for end in ends:
                        self._settle(end)

    def _queued(self) -> list[TrialRecord]:
        return [self.records[trial] for trial in self.tally.queued]

    def _moved(self, record: TrialRecord, before: TrialState | None) -> None:
        """Every change of a trial's state goes through here, to keep :attr:`tally` up to date."""
        if record.state is not before:
            self.tally.moved(record.id, before, record.state, record.value)

    def _launch(self, decision: Decision) -> None:
        free = self.backend.slots()
        for trial in decision.start[:free]:
            self._start(self.records[trial])
        free -= min(len(decision.start), free)
        wanted = min(decision.create, free)
        if wanted <= 0:
            return
        for suggestion in self.optimizer.ask(wanted):
            number = int(suggestion.id)
            record = TrialRecord(trial_name(self.experiment.name, number), number, suggestion.params)
            self.records[record.id] = record
            self._moved(record, None)
            self._start(record)

    def _start(self, record: TrialRecord) -> None:
        before = record.state
        record.start(self.clock())
        record.state = TrialState.RUNNING  # a process runs as soon as it is started
        self._moved(record, before)
        self.folder.starting(record)
        rendered = substitute_all(self.container, record.params, record.id, self.experiment.name)
        command = [str(c) for c in rendered.get("command", []) + rendered.get("args", [])]
        attempt = Attempt(
            trial=record.id, attempt=record.attempts, command=command, env=self._environment(record, rendered),
            workdir=self.workdir, stdout=self.folder.log(record.id, record.attempts, "stdout"),
            stderr=self.folder.log(record.id, record.attempts, "stderr"),
            timeout_seconds=self.spec.trial_template.timeout_seconds, gpu=self.spec.trial_template.resources.gpu,
            metrics_file=self._metrics_file(record))
        record.devices = self.backend.start(attempt)
        self.running.add(record.id)
        self.attempts_run += 1

    def _environment(self, record: TrialRecord, rendered: dict[str, Any]) -> dict[str, str]:
        env = {str(item["name"]): str(item["value"]) for item in rendered.get("env") or []
               if isinstance(item, dict) and "name" in item and "value" in item}
        env.update(trial_environment(record.params, record.id, self.experiment.name,
                                     self.spec.trial_template.resources.gpu))
        metrics_file = self._metrics_file(record)
        if metrics_file is not None:
            env["KUBETUNE_METRICS_FILE"] = str(metrics_file)
        return env

    def _metrics_file(self, record: TrialRecord) -> Path | None:
        if self.collector.path is None:
            return None
        return self.workdir / substitute_all(self.collector.path, record.params, record.id, self.experiment.name)

    async def _wait_any(self, interrupted: asyncio.Event) -> list[AttemptEnd] | None:
        """The attempts that ended; None when the run was interrupted; with early stopping, an empty list when
        it is time to read the running trials' reports."""
        stop = asyncio.ensure_future(interrupted.wait())
        ends = asyncio.ensure_future(self.backend.wait_any())
        timeout = REPORT_POLL_SECONDS if self.rule is not None else None
        done, _ = await asyncio.wait({stop, ends}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if ends not in done:
            ends.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ends
            if stop in done:
                return None
            stop.cancel()
            return []
        stop.cancel()
        return ends.result()

    # -- early stopping -------------------------------------------------------------------------------------
    async def _follow_reports(self) -> None:
        """Reads what the running trials reported since the last look and stops those the rule condemns."""
        assert self.rule is not None
        stopping, objective = self.spec.early_stopping, self.spec.objective
        maximize = objective.direction == "maximize"
        for trial in list(self.running):
            record = self.records[trial]
            judged = False
            for step, value in self._tail(record).reports(stopping.resource, objective.metric):
                judged = observe(record.progress, step, value, maximize, self.rule) or judged
            if judged and self._condemned(record):
                await self._stop_early(record)

    def _condemned(self, record: TrialRecord) -> bool:
        assert self.rule is not None
        progress = {r.id: r.progress for r in self.records.values() if r.progress.reports}
        completed = {r.id for r in self.records.values() if r.state is TrialState.SUCCEEDED}
        return judge(self.spec.early_stopping.rule, self.rule, record.id, progress, completed,
                     self.spec.objective.direction == "maximize")

    def _tail(self, record: TrialRecord) -> Tail:
        path = self._metrics_file(record) or self.folder.log(record.id, record.attempts, "stdout")
        tail = self._tails.get(record.id)
        if tail is None or tail.path != path:
            tail = self._tails[record.id] = Tail(path)
        return tail

    async def _stop_early(self, record: TrialRecord) -> None:
        end = await self.backend.stop(record.id)
        if end is not None:  # it ended on its own first: its own result stands
            self._settle(end)
            return
        self.running.discard(record.id)
        self._tails.pop(record.id, None)
        record.metrics = self._result(record, AttemptEnd(record.id, exit_code=0)).metrics
        before = record.state
        settle(record, stop_early(record, self.spec.early_stopping.rule, self.clock()), self.limits.retries,
               self.clock())
        self._moved(record, before)
        self.folder.ended(record)
        self._finished(record)

    def _settle(self, end: AttemptEnd) -> None:
        record = self.records[end.trial]
        self.running.discard(end.trial)
        if self.rule is not None:  # what it reported last before it ended
            for step, value in self._tail(record).reports(self.spec.early_stopping.resource,
                                                         self.spec.objective.metric):
                observe(record.progress, step, value, self.spec.objective.direction == "maximize", self.rule)
            self._tails.pop(record.id, None)
        before = record.state
        retry = settle(record, self._result(record, end), self.limits.retries, self.clock())
        self._moved(record, before)
        self.folder.ended(record)
        if not retry:
            self._finished(record)

    def _finished(self, record: TrialRecord) -> None:
        inform(self.optimizer, record)
        self.on_trial_end(record)

    def _result(self, record: TrialRecord, end: AttemptEnd) -> AttemptResult:
        if end.failure is not None:
            return end.failure
        stdout = self.folder.log(record.id, record.attempts, "stdout")
        stderr = self.folder.log(record.id, record.attempts, "stderr")
        if end.exit_code != 0:
            return AttemptResult(TrialState.FAILED, reason="ExitCode", exit_code=end.exit_code,
                                 message=exit_message(end.exit_code, _read(stderr)))
        metrics_file = self._metrics_file(record)
        sources = self.collector.sources(_read(stdout), _read(stderr), _read(metrics_file) if metrics_file else None)
        return from_output(self.spec.objective, sources)

    async def _stop_all(self, reason: str) -> None:
        """Stops every trial in flight; the experiment ended for ``reason`` (or the run was interrupted)."""
        for trial in list(self.running):
            end = await self.backend.stop(trial)
            if end is not None:  # it ended on its own just before the stop: keep its result
                self._settle(end)
                continue
            self.running.discard(trial)
            record = self.records[trial]
            before = record.state
            kill(record, reason, self.clock())
            self._moved(record, before)
            self.folder.ended(record)
            self._finished(record)
        if reason != INTERRUPTED:  # a queued retry will not run: the experiment is over
            for record in self._queued():
                kill(record, reason, self.clock())
                self._moved(record, TrialState.QUEUED)
                self.folder.ended(record)
                self._finished(record)

    def _finish(self, decision: Decision, started: datetime, phase: str | None = None) -> RunOutcome:
        phase = phase or decision.phase
        records = [r for r in self.records.values() if r.state.is_finished]
        sittings = self.folder.sittings()
        if self.attempts_run or not sittings:
            sittings.append(sitting(started, self.clock(), self.attempts_run))
        summary = summarize(self.experiment.name, self.spec.objective.direction, records, phase, decision.reason,
                            decision.message, sittings)
        if self.attempts_run or not (self.folder.path / "summary.json").exists():
            self.folder.write_summary(summary)
        return RunOutcome(phase, decision.reason, decision.message, summary, records)


def exit_message(returncode: int | None, stderr: str) -> str:
    if returncode is not None and returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by signal {signal.Signals(-returncode).name}"
    tail = stderr.strip().splitlines()[-3:]
    detail = (": " + " | ".join(tail))[:500] if tail else ""
    return f"exited with status {returncode}{detail}"


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


@contextlib.contextmanager
def _stop_signals(loop: asyncio.AbstractEventLoop, interrupted: asyncio.Event) -> Iterator[None]:
    """Ctrl-C (SIGINT), SIGTERM and a closed terminal (SIGHUP) stop the run cleanly instead of killing it
    mid-write."""
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            loop.add_signal_handler(sig, interrupted.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
