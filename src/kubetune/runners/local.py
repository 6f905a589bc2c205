"""The embedded runner: an experiment's trials as processes on this machine.

It carries out :func:`kubetune.core.plan.decide` in an asyncio loop: each trial is the first container's
``command`` + ``args`` with placeholders substituted, run in its own process group in the manifest's
folder; the moment one ends, its slot is refilled from the optimizer, conditioned on every trial still
running. Results are appended to ``trials.jsonl`` as each trial ends, so an interrupted run loses nothing
and ``resume=True`` carries on from there (trials cut short by the interruption run again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from kubetune.core.engine import Optimizer
from kubetune.core.gpu import GpuPool
from kubetune.core.metrics import final_metrics, objective_value, parse_text
from kubetune.core.plan import ACTIVE, Decision, Limits, decide, should_retry
from kubetune.core.records import (
    INTERRUPTED,
    TrialRecord,
    iso,
    latest_by_id,
    parse_rows,
    summarize,
    trial_name,
)
from kubetune.core.spec import Experiment
from kubetune.core.template import substitute_all, trial_environment
from kubetune.runners.devices import detect_gpus

KILL_GRACE_SECONDS = 5.0
Clock = Callable[[], datetime]


class RunnerError(Exception):
    """The experiment cannot start as asked (bad output folder, missing GPU...)."""


@dataclass
class Outcome:
    phase: str  # Succeeded | Failed | Interrupted
    reason: str
    message: str
    summary: dict[str, Any]
    records: list[TrialRecord]


@dataclass
class _Running:
    record: TrialRecord
    task: asyncio.Task[TrialRecord]
    devices: list[str] = field(default_factory=list)


class LocalRunner:
    def __init__(
        self,
        experiment: Experiment,
        out_dir: Path,
        workdir: Path,
        *,
        resume: bool = False,
        no_gpu: bool = False,
        gpus: list[str] | None = None,
        on_trial_end: Callable[[TrialRecord], None] = lambda _record: None,
        clock: Clock = lambda: datetime.now(UTC),
    ):
        self.experiment = experiment
        self.spec = experiment.spec
        self.out_dir = Path(out_dir)
        self.workdir = Path(workdir)
        self.on_trial_end = on_trial_end
        self.clock = clock
        self.limits = Limits.from_spec(self.spec)
        self.container = self.spec.trial_template.spec["containers"][0]
        if not self.container.get("command"):
            raise RunnerError(
                "spec.trialTemplate.spec.containers[0].command: locally the first container needs a "
                "command to run (the image's entrypoint is not known without a cluster)"
            )
        self.gpu_request = self.spec.trial_template.resources.gpu
        self.no_gpu = no_gpu
        self.pool = GpuPool([] if no_gpu else (gpus if gpus is not None else detect_gpus()))
        if self.gpu_request > 0 and not no_gpu and not self.pool.can_ever_fit(self.gpu_request):
            have = len(self.pool.devices)
            raise RunnerError(
                f"spec.trialTemplate.resources.gpu: each trial asks for {self.gpu_request} GPU, but this "
                f"machine has {have} GPU{'s' if have != 1 else ''}; pass --no-gpu to run without one"
            )
        self.warnings: list[str] = []
        self.records: dict[str, TrialRecord] = self._prepare_out_dir(resume)
        self.optimizer = self._build_optimizer()
        self.running: dict[str, _Running] = {}
        self.exhausted = False

    # -- set-up -------------------------------------------------------------------------------------------
    @property
    def at_once(self) -> int:
        """How many trials can run at the same time: ``parallelism``, or fewer when not that many GPU shares
        fit on this machine's GPUs."""
        fits = self.spec.parallelism if self.no_gpu else self.pool.capacity(self.gpu_request)
        return min(self.spec.parallelism, fits)

    @property
    def trials_file(self) -> Path:
        return self.out_dir / "trials.jsonl"

    def _prepare_out_dir(self, resume: bool) -> dict[str, TrialRecord]:
        if self.trials_file.exists() and not resume:
            raise RunnerError(
                f"{self.out_dir} already holds the results of a run; pass --resume to continue it or "
                "--out to choose another folder"
            )
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "experiment.yaml").write_text(
            yaml.safe_dump(self.experiment.model_dump(by_alias=True, exclude_none=True), sort_keys=False)
        )
        if not self.trials_file.exists():
            return {}
        rows, problems = parse_rows(self.trials_file.read_text().splitlines())
        for problem in problems:
            self._warn(f"{self.trials_file}: skipped an unreadable row ({problem})")
        records = latest_by_id(rows)
        for record in records.values():
            if record.state == "Killed" and record.reason == INTERRUPTED:
                record.state, record.attempts = "Queued", 0
        return records

    def _build_optimizer(self) -> Optimizer:
        spec = self.spec
        past = []
        for r in self.records.values():
            state = "Pending" if r.state == "Queued" else r.state
            past.append({"id": str(r.number), "params": r.params, "state": state, "value": r.value})
        return Optimizer(
            parameters=spec.parameters,
            direction=spec.objective.direction,
            algorithm=spec.algorithm.name,
            settings=spec.algorithm.settings,
            seed=spec.seed,
            trials=past,
        )

    def _warn(self, message: str) -> None:
        self.warnings.append(message)

    # -- the loop -----------------------------------------------------------------------------------------
    async def run(self) -> Outcome:
        started = self.clock()
        interrupted = asyncio.Event()
        loop = asyncio.get_running_loop()
        with _signal_handlers(loop, interrupted):
            while True:
                decision = self._decide()
                if decision.stop_running and self.running:
                    await self._stop_all(decision.reason)
                    continue
                if decision.phase != "Running" and not self.running:
                    return self._finish(decision.phase, decision.reason, decision.message, started)
                self._launch(decision)
                if not self.running:
                    if self.exhausted:
                        continue  # the next decision ends the experiment
                    raise RunnerError(f"no trial can start ({decision.reason}): {decision.message}")
                finished = await self._wait_any(interrupted)
                if finished is None:
                    await self._stop_all(INTERRUPTED)
                    return self._finish("Interrupted", INTERRUPTED, "stopped by the user", started)
                for record in finished:
                    self._settle(record)

    def _decide(self) -> Decision:
        views = [r.view() for r in self.records.values()]
        return decide(self.limits, views, self.exhausted)

    def _launch(self, decision: Decision) -> None:
        fits = self.pool.capacity(self.gpu_request) if not self.no_gpu else 1 << 30
        for trial_id in decision.start[:fits]:
            self._start(self.records[trial_id])
        fits -= min(len(decision.start), fits)
        wanted = min(decision.create, fits)
        if wanted <= 0:
            return
        suggestions = self.optimizer.ask(wanted)
        if len(suggestions) < wanted:
            self.exhausted = True
        for suggestion in suggestions:
            number = int(suggestion.id)
            record = TrialRecord(trial_name(self.experiment.name, number), number, suggestion.params, "Queued",
                                 attempts=0)
            self.records[record.id] = record
            self._start(record)

    def _start(self, record: TrialRecord) -> None:
        devices = [] if self.no_gpu else self.pool.allocate(self.gpu_request)
        assert devices is not None, "capacity was checked before starting"
        record.state, record.attempts = "Running", record.attempts + 1
        record.started = iso(self.clock())
        record.devices = devices
        task = asyncio.create_task(self._run_attempt(record, devices))
        self.running[record.id] = _Running(record, task, devices)

    async def _wait_any(self, interrupted: asyncio.Event) -> list[TrialRecord] | None:
        stop = asyncio.ensure_future(interrupted.wait())
        tasks = {r.task for r in self.running.values()}
        done, _ = await asyncio.wait(tasks | {stop}, return_when=asyncio.FIRST_COMPLETED)
        if stop in done:
            return None
        stop.cancel()
        return [task.result() for task in done]

    def _settle(self, record: TrialRecord) -> None:
        running = self.running.pop(record.id)
        self.pool.release(running.devices, self.gpu_request)
        if should_retry(record.state, record.attempts, self.limits.retries):
            self._start(record)
            return
        self._record(record)

    def _record(self, record: TrialRecord) -> None:
        trial_number = str(record.number)
        if record.state == "Succeeded":
            self.optimizer.tell(trial_number, record.value)
        elif trial_number in self.optimizer.pending:
            self.optimizer.fail(trial_number)
        with self.trials_file.open("a") as out:
            out.write(record.to_json() + "\n")
            out.flush()
            os.fsync(out.fileno())
        self.on_trial_end(record)

    async def _stop_all(self, reason: str) -> None:
        for running in self.running.values():
            running.task.cancel()
        for trial_id, running in list(self.running.items()):
            del self.running[trial_id]
            self.pool.release(running.devices, self.gpu_request)
            try:
                record = await running.task  # it ended on its own just before the stop: keep its result
            except asyncio.CancelledError:
                record = running.record
                record.state, record.reason = "Killed", reason
                record.message = (
                    "the run was interrupted" if reason == INTERRUPTED else f"experiment ended: {reason}"
                )
                record.finished = iso(self.clock())
            self._record(record)

    def _finish(self, phase: str, reason: str, message: str, started: datetime) -> Outcome:
        records = [r for r in self.records.values() if r.state not in ACTIVE]
        summary = summarize(self.experiment.name, self.spec.objective.direction, records, phase, reason,
                            message, started, self.clock())
        (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return Outcome(phase, reason, message, summary, records)

    # -- one attempt --------------------------------------------------------------------------------------
    async def _run_attempt(self, record: TrialRecord, devices: list[str]) -> TrialRecord:
        trial_dir = self.out_dir / "trials" / record.id
        trial_dir.mkdir(parents=True, exist_ok=True)
        rendered = substitute_all(self.container, record.params, record.id, self.experiment.name)
        command = [str(c) for c in rendered.get("command", []) + rendered.get("args", [])]
        env = self._environment(record, rendered, devices, trial_dir)
        metrics_file = env.get("KUBETUNE_METRICS_FILE")
        if metrics_file:
            Path(metrics_file).unlink(missing_ok=True)
        stdout_path = trial_dir / f"attempt-{record.attempts}.stdout.log"
        stderr_path = trial_dir / f"attempt-{record.attempts}.stderr.log"
        record.reason = record.message = record.exit_code = None
        with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
            try:
                process = await asyncio.create_subprocess_exec(
                    *command, cwd=self.workdir, env=env, stdout=stdout, stderr=stderr,
                    stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
                )
            except OSError as exc:
                record.state, record.reason = "Failed", "StartError"
                record.message = f"cannot start {command[0]!r}: {exc.strerror or exc}"
                record.finished = iso(self.clock())
                return record
            try:
                timeout = self.spec.trial_template.timeout_seconds
                returncode = await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                await _kill_group(process)
                record.state, record.reason = "Failed", "Timeout"
                record.message = f"ran longer than timeoutSeconds ({self.spec.trial_template.timeout_seconds})"
                record.finished = iso(self.clock())
                return record
            except asyncio.CancelledError:
                await _kill_group(process)
                raise
        record.finished = iso(self.clock())
        record.exit_code = returncode
        if returncode != 0:
            record.state, record.reason = "Failed", "ExitCode"
            record.message = _exit_message(returncode, stderr_path)
            return record
        self._collect_metrics(record, stdout_path, metrics_file)
        return record

    def _environment(self, record: TrialRecord, rendered: dict[str, Any], devices: list[str],
                     trial_dir: Path) -> dict[str, str]:
        env = dict(os.environ)
        # "python" in a manifest means the interpreter kubetune runs in, with the user's packages.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        for item in rendered.get("env") or []:
            if isinstance(item, dict) and "name" in item and "value" in item:
                env[str(item["name"])] = str(item["value"])
        env.update(trial_environment(record.params, record.id, self.experiment.name,
                                     self.gpu_request if devices else 0.0))
        if self.gpu_request > 0 or self.no_gpu:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
        collector = self.spec.trial_template.metrics_collector
        if collector.kind == "file":
            path = substitute_all(collector.path, record.params, record.id, self.experiment.name)
            env["KUBETUNE_METRICS_FILE"] = str(self.workdir / path)
        return env

    def _collect_metrics(self, record: TrialRecord, stdout_path: Path, metrics_file: str | None) -> None:
        objective = self.spec.objective
        names = [objective.metric, *objective.additional_metrics]
        source = Path(metrics_file) if metrics_file else stdout_path
        text = source.read_text(errors="replace") if source.exists() else ""
        log = parse_text(text, names)
        record.metrics = final_metrics(log, objective.metric, objective.strategy)
        record.value = objective_value(log, objective.metric, objective.strategy)
        if record.value is not None:
            record.state = "Succeeded"
            return
        record.state, record.reason = "MetricsUnavailable", "MetricsUnavailable"
        reported = log.values.get(objective.metric)
        if reported:
            record.message = f"{objective.metric} was reported but not finite (last value {reported[-1]})"
        else:
            where = metrics_file if metrics_file else "its output"
            record.message = f"the trial exited 0 without reporting {objective.metric} in {where}"


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGTERM to the trial's whole process group, SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_SECONDS), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), wait)
            return
        except TimeoutError:
            continue


def _exit_message(returncode: int, stderr_path: Path) -> str:
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by signal {signal.Signals(-returncode).name}"
    tail = stderr_path.read_text(errors="replace").strip().splitlines()[-3:] if stderr_path.exists() else []
    detail = (": " + " | ".join(tail))[:500] if tail else ""
    return f"exited with status {returncode}{detail}"


@contextlib.contextmanager
def _signal_handlers(loop: asyncio.AbstractEventLoop, interrupted: asyncio.Event):
    """Ctrl-C (SIGINT) and SIGTERM stop the run cleanly instead of killing it mid-write."""
    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
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
