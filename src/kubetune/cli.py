"""The ``kubetune`` command: ``run`` an experiment on this machine, ``validate`` a manifest, show an
experiment's ``status`` or ``export`` its trials (a run folder, or an Experiment on a cluster), run the
``operator``, ``convert`` a Katib Experiment, write the ``crds``. ``kubectl-kubetune`` (:func:`kubectl_main`)
is the same command as a kubectl plugin, where a bare NAME means ``--experiment NAME``.

Exit status: 0 when the experiment finished, 1 when it failed (for example maxFailedTrials was exceeded),
2 on bad input (nothing runs), 130 when interrupted (finished trials are kept; ``--resume`` continues).
Each command imports what it needs when it runs, so ``kubetune --help`` loads no numpy, pydantic or
Kubernetes client.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubetune import __version__
from kubetune.core.cluster.gpu_sharing import MODES
from kubetune.operator.connection import own_identity

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from kubetune.core.lifecycle import TrialRecord
    from kubetune.core.spec import Experiment
    from kubetune.runners.driver import Runner, RunOutcome

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
DESCRIPTION = ("Hyperparameter optimization: run an Experiment manifest's trials on this machine, check a "
               "manifest, show an experiment's status or export its trials (a run folder or a cluster), or run the "
               "Kubernetes operator.")
EPILOG = ("exit status: 0 finished, 1 failed (maxFailedTrials exceeded, or no trial succeeded), 2 bad input "
          "(nothing ran), 130 interrupted (continue with --resume)")


# Both consoles read no markup: what they print holds names, paths, parameter values and trial messages that
# are the user's, and a "[/]" among them must print as written. Styles come from rich Text pieces (styled()).
@functools.cache
def console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, markup=False)


@functools.cache
def errors() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, markup=False)


def styled(*pieces: str | tuple[str, str]) -> Text:
    """Text from plain pieces and (text, style) pieces; nothing in them is read as markup."""
    from rich.text import Text

    return Text.assemble(*pieces)


def main(argv: list[str] | None = None) -> int:
    _printable_output()
    return _dispatch(_parser().parse_args(argv))


def _dispatch(args: argparse.Namespace) -> int:
    from kubetune.core.errors import ManifestError

    try:
        return args.handler(args)
    except ManifestError as exc:
        _error(exc.describe())
        return EXIT_BAD_INPUT
    except CommandLineError as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    except OSError as exc:  # the file system refused a path the command was given: too long, not allowed, full
        _error(f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror else str(exc))
        return EXIT_BAD_INPUT


def _printable_output() -> None:
    """Text that cannot be encoded for the terminal (a lone surrogate read from a run folder, say) is printed
    escaped instead of ending the command."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, io.UnsupportedOperation):
                reconfigure(errors="backslashreplace")


def _error(message: str) -> None:
    errors().print(styled(("error:", "red"), " ", message), soft_wrap=True)


def _warning(message: str) -> None:
    errors().print(styled(("warning:", "yellow"), " ", message), soft_wrap=True)


def path_argument(text: str) -> Path:
    """A path on the command line; one with a NUL character, which no file system takes, is refused."""
    if "\x00" in text:
        raise argparse.ArgumentTypeError("a path cannot hold a NUL character")
    return Path(text)


def human_size(size: float) -> str:
    """``36.2 KiB``, ``1.4 MiB``: a size in bytes as people read it."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


class CommandLineError(Exception):
    """Input that cannot be used as given, or an operator that cannot start (nothing has run)."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kubetune", description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"kubetune {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run an experiment's trials as local processes or on a Ray cluster")
    run.add_argument("file", type=path_argument, help="the Experiment manifest (YAML)")
    run.add_argument("--out", type=path_argument, help="results folder (default kubetune-runs/<metadata.name>)")
    _add_overrides(run)
    run.add_argument("--resume", action="store_true", help="continue the run recorded in --out")
    run.add_argument("--no-gpu", action="store_true", help="run GPU trials without a GPU")
    run.add_argument("--backend", choices=("process", "ray"), default="process",
                     help="where trials run: processes on this machine (default) or tasks on a Ray cluster")
    run.add_argument("--address", metavar="ADDR", help="--backend ray: the cluster (auto, host:port, "
                     "ray://host:10001); default: start Ray on this machine")
    run.add_argument("--runtime-env", type=path_argument, metavar="FILE", help="--backend ray: a Ray runtime_env "
                     "for the trials (YAML or JSON: pip, env_vars, ...); the manifest's folder is its working_dir")
    run.add_argument("--quiet", action="store_true", help="no line per finished trial")
    run.set_defaults(handler=_run)

    validate = commands.add_parser("validate", help="check a manifest and show what it would run")
    validate.add_argument("file", type=path_argument, help="the Experiment manifest (YAML)")
    _add_overrides(validate)
    validate.set_defaults(handler=_validate)

    operator = commands.add_parser("operator", help="run the Kubernetes operator (kopf)")
    where = operator.add_mutually_exclusive_group(required=True)
    where.add_argument("--namespace", "-n", action="append", help="a namespace to watch (repeat for more)")
    where.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    operator.add_argument("--gpu-sharing", choices=MODES, default="whole", help="how fractional GPUs are requested")
    operator.add_argument("--kai-queue", default="default", help="kai: the kai.scheduler/queue label")
    operator.add_argument("--hami-cores", action="store_true", help="hami: also limit nvidia.com/gpucores")
    operator.add_argument("--timeslicing-resource", default="nvidia.com/gpu",
                          help="timeslicing: the shared GPU resource (for example nvidia.com/gpu.shared)")
    operator.add_argument("--mig-profile", action="append", type=_mig_profile, metavar="FRACTION=RESOURCE",
                          help="mig: a profile and the GPU fraction it gives, e.g. 0.25=nvidia.com/mig-2g.20gb "
                               "(repeat for each; replaces the 80 GB defaults)")
    operator.add_argument("--kubeconfig", metavar="FILE", help="the kubeconfig to use outside a cluster (default: "
                          "$KUBECONFIG, else ~/.kube/config; in a pod, its ServiceAccount)")
    operator.add_argument("--context", metavar="NAME", help="the kubeconfig context to use (default: its current "
                          "context)")
    operator.add_argument("--leader-election", action="store_true",
                          help="with several replicas: act only while holding a Lease, stand by otherwise")
    operator.add_argument("--lease-name", default="kubetune-operator", help="the Lease of leader election")
    operator.add_argument("--lease-namespace", metavar="NAMESPACE",
                          help="where the Lease lives (default: the pod's namespace, else the kubeconfig context's)")
    operator.add_argument("--lease-duration", type=_positive, default=15, metavar="SECONDS",
                          help="a leader silent this long is replaced (it stops acting after 2/3 of it)")
    operator.add_argument("--identity", default=own_identity(), help="this replica's name in the Lease")
    operator.add_argument("--listen-address", metavar="ADDRESS", help="the address the liveness, metrics and report "
                          "endpoints listen on (default: 0.0.0.0 in a pod, 127.0.0.1 outside a cluster)")
    operator.add_argument("--liveness", type=_endpoint, metavar="URL", help="liveness endpoint, http://HOST:PORT/PATH "
                          "(default: http://ADDRESS:8080/healthz, ADDRESS from --listen-address)")
    operator.add_argument("--metrics-port", type=_port, default=9090, help="serve Prometheus metrics on this port "
                          "(default 9090; 0: do not serve them)")
    operator.add_argument("--reports-port", type=_port, default=8090, help="serve the report endpoint that trial "
                          "pods push intermediate values to, for early stopping, on this port (default 8090; plain "
                          "HTTP; 0: do not serve it, and trials cannot be stopped early)")
    operator.add_argument("--reports-url", type=_endpoint, default=None, metavar="URL",
                          help="the endpoint's base URL as trial pods reach it (the chart's Service; default "
                          "http://kubetune-reports.NAMESPACE.svc:PORT)")
    operator.add_argument("--report-key-namespace", metavar="NAMESPACE",
                          help="where the Secret kubetune-report-key holding the report key lives (default: the "
                          "pod's namespace, else the kubeconfig context's; without either, this is needed)")
    operator.add_argument("--log-level", choices=["debug", "info", "warning"], default="info")
    operator.set_defaults(handler=_operator)

    for name, (help_text, add_options) in RESULT_COMMANDS.items():
        command = commands.add_parser(name, help=help_text)
        _add_source(command)
        add_options(command)

    convert = commands.add_parser("convert", help="turn Katib (kubeflow.org/v1beta1) Experiments into kubetune ones, "
                                  "saying what cannot be carried over")
    convert.add_argument("file", type=path_argument, help="the Katib manifest (YAML, several documents allowed; - "
                         "for standard input)")
    convert.add_argument("-o", "--out", type=path_argument, help="write the kubetune manifest here (default: "
                         "standard output)")
    convert.set_defaults(handler=_convert)

    crds = commands.add_parser("crds", help="write the CustomResourceDefinitions (generated from the model)")
    crds.add_argument("--out", type=path_argument, help="folder to write them to (default: print them)")
    crds.set_defaults(handler=_crds)
    return parser


def _add_source(command: argparse.ArgumentParser) -> None:
    """Where an experiment's results are read from: a run folder, or an Experiment on a cluster."""
    command.add_argument("source", nargs="?", type=path_argument, metavar="SOURCE",
                         help="a run folder (what kubetune run --out wrote), or the NAME of an Experiment on the "
                         "cluster when no such folder exists")
    command.add_argument("--experiment", "-e", metavar="NAME", help="an Experiment on the cluster, instead of SOURCE")
    _add_cluster_options(command)


def _add_cluster_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--namespace", "-n", help="its namespace (default: the kubeconfig context's)")
    command.add_argument("--kubeconfig", metavar="FILE",
                         help="the kubeconfig to use (default: $KUBECONFIG, else ~/.kube/config)")
    command.add_argument("--context", metavar="NAME",
                         help="the kubeconfig context to use (default: its current context)")


def _status_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--watch", action="store_true", help="refresh in place every 2 s until Ctrl-C")
    command.add_argument("--interval", type=float, default=2.0, help=argparse.SUPPRESS)
    command.set_defaults(handler=_status)


def _export_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="csv (default) or jsonl")
    command.add_argument("-o", "--out", type=path_argument, help="write to this file (default: standard output)")
    command.set_defaults(handler=_export)


def _report_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("-o", "--output", type=path_argument, metavar="FILE",
                         help="where to write the page (default: report.html in the run folder, NAME-report.html "
                         "here for an Experiment on the cluster)")
    command.set_defaults(handler=_report)


# The commands that show an experiment's results, from a run folder or the cluster, and the kubectl plugin's.
RESULT_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None]]] = {
    "status": ("an experiment's phase, counts, best trial and running trials", _status_options),
    "export": ("one row per trial (its latest attempt) as CSV or JSON Lines", _export_options),
    "report": ("write one self-contained HTML page of an experiment's results, with plots", _report_options),
}


def _add_overrides(command: argparse.ArgumentParser) -> None:
    command.add_argument("--parallelism", type=_positive, help="override spec.parallelism")
    command.add_argument("--max-trials", type=_positive, help="override spec.maxTrials")
    command.add_argument("--seed", type=int, help="override spec.seed")


def _mig_profile(text: str) -> tuple[float, str]:
    fraction, _, resource = text.partition("=")
    try:
        value = float(fraction)
    except ValueError:
        value = 0.0
    if not 0 < value <= 1 or not resource:
        raise argparse.ArgumentTypeError(f"{text!r}: expected FRACTION=RESOURCE with 0 < FRACTION <= 1")
    return value, resource


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a port from 0 to 65535")
    return value


def _endpoint(text: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
        usable = parts.scheme == "http" and bool(parts.hostname) and bool(parts.port)
    except ValueError:  # not a URL at all, or a port out of range
        usable = False
    if not usable:
        raise argparse.ArgumentTypeError(f"{text!r}: expected http://HOST:PORT/PATH with a port from 1 to 65535")
    return text


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# What metadata.name of an Experiment may be (lowercase letters, digits and '-', as kubetune validates it).
EXPERIMENT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,48}[a-z0-9])?")
# The spec fields the options of ``run`` override, by option.
OVERRIDES = {"parallelism": "parallelism", "max_trials": "maxTrials", "seed": "seed"}


def _load(args: argparse.Namespace) -> Experiment:
    """The manifest with the command line's overrides applied and validated like the fields they replace; a
    problem with an override is reported under the option's name."""
    from kubetune.core.errors import ManifestError, Problem
    from kubetune.core.manifest import load_experiment_file

    overrides = {field: getattr(args, option) for option, field in OVERRIDES.items()
                 if getattr(args, option, None) is not None}
    try:
        return load_experiment_file(args.file, overrides)
    except ManifestError as exc:
        options = {f"spec.{field}": "--" + option.replace("_", "-") for option, field in OVERRIDES.items()
                   if field in overrides}
        exc.problems = [Problem(f"{options[p.path]} (overrides {p.path})", p.message) if p.path in options else p
                        for p in exc.problems]
        raise


def _runtime_env(path: Path) -> dict[str, Any]:
    """``--runtime-env FILE``: a mapping of Ray runtime_env fields (Ray itself judges the fields)."""
    import yaml

    from kubetune.core.manifest import read_limited

    try:
        document = yaml.safe_load(read_limited(path).decode("utf-8"))
    except OSError as exc:
        raise CommandLineError(f"--runtime-env {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
        raise CommandLineError(f"--runtime-env {path}: not YAML or JSON: {str(exc).splitlines()[0]}") from None
    except ValueError as exc:
        raise CommandLineError(f"--runtime-env {path}: {exc}") from None
    if not isinstance(document, dict) or not all(isinstance(key, str) for key in document):
        raise CommandLineError(f"--runtime-env {path}: must be a mapping of Ray runtime_env fields "
                               "(pip, env_vars, ...)")
    return document


def _output_folder(out: Path | None, default: Path) -> Path:
    """The results folder (``--out``, else ``default``); refused when it cannot be one: a file, or a path
    below a file."""
    folder = out or default
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            if not candidate.is_dir():
                what = "is a file" if candidate == folder else f"is below {candidate}, which is a file"
                name = f"--out {folder}" if out else f"the results folder {folder} (choose another with --out)"
                raise CommandLineError(f"{name}: {what}, not a folder")
            break
    return folder


# -- run ----------------------------------------------------------------------------------------------------
def _progress_figures(runner: Runner) -> dict[str, Any]:
    """The progress line's figures, from the tally the runner keeps up as trials move (counting every record
    per ended trial would make a run of n trials cost n^2)."""
    from kubetune.core.lifecycle import FAILED, FINISHED

    tally = runner.tally
    return {"completed": tally.count(FINISHED), "running": len(runner.running), "failed": tally.count(FAILED),
            "best": "-" if tally.best is None else f"{tally.best:.6g}"}


def _run(args: argparse.Namespace) -> int:
    from kubetune.runners.backend import RunnerError

    try:
        return _run_experiment(args)
    except RunnerError as exc:
        raise CommandLineError(str(exc)) from None


def _run_experiment(args: argparse.Namespace) -> int:
    import asyncio

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from kubetune.runners import local_runner

    experiment = _load(args)
    if experiment.spec.suspend:
        raise CommandLineError("spec.suspend is true: the experiment is suspended, so no trial would start")
    out = _output_folder(args.out, Path("kubetune-runs") / experiment.name)
    spec = experiment.spec
    progress = Progress(
        TextColumn("{task.description}", style="bold", markup=False), BarColumn(), MofNCompleteColumn(),
        TextColumn("running {task.fields[running]}  failed {task.fields[failed]}  best {task.fields[best]}",
                   markup=False),
        TimeElapsedColumn(), console=console(), transient=False,
    )
    task = progress.add_task(experiment.name, total=spec.max_trials, running=0, failed=0, best="-")

    def on_trial_end(record: TrialRecord) -> None:
        if not args.quiet:
            progress.console.print(_trial_line(record))
        progress.update(task, **_progress_figures(runner))

    for option, given in (("--address", args.address), ("--runtime-env", args.runtime_env)):
        if given is not None and args.backend != "ray":
            raise CommandLineError(f"{option} needs --backend ray")
    runtime_env = _runtime_env(args.runtime_env) if args.runtime_env is not None else None
    runner = local_runner(experiment, out, args.file.resolve().parent, resume=args.resume, no_gpu=args.no_gpu,
                          backend_name=args.backend, address=args.address, runtime_env=runtime_env,
                          on_trial_end=on_trial_end)
    try:
        runner.prepare()
    except OSError as exc:  # the results folder cannot be made or written
        raise CommandLineError(f"--out {out}: {exc.strerror or exc}") from None
    for warning in runner.warnings:
        _warning(str(warning))
    pace = f"{runner.at_once} at a time"
    if runner.at_once < spec.parallelism:
        where = "the Ray cluster" if args.backend == "ray" else "this machine's GPUs"
        pace += f" (parallelism {spec.parallelism}, but only {runner.at_once} fit on {where})"
    console().print(styled("Running ", (experiment.name, "bold"), f": {spec.algorithm.name} search, up to "
                           f"{spec.max_trials} trials, {pace}; results in {out}"))
    with progress:
        progress.update(task, **_progress_figures(runner))
        outcome = asyncio.run(runner.run())
    _print_outcome(outcome, experiment, out, args.file)
    return {"Succeeded": EXIT_OK, "Interrupted": EXIT_INTERRUPTED}.get(outcome.phase, EXIT_FAILED)


def _trial_line(record: TrialRecord) -> Text:
    from kubetune.core.lifecycle import TrialState

    colour = {TrialState.SUCCEEDED: "green", TrialState.KILLED: "yellow"}.get(record.state, "red")
    params = ", ".join(f"{k}={_short(v)}" for k, v in record.params.items())
    value = f" value={record.value:.6g}" if record.value is not None else ""
    detail = f" ({record.message})" if record.message and record.state is not TrialState.SUCCEEDED else ""
    return styled((f"{record.state:<18}", colour), f" {record.id}{value}  {params}{detail}")


def _short(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _print_outcome(outcome: RunOutcome, experiment: Experiment, out: Path, file: Path) -> None:
    from rich.table import Table

    from kubetune.core.summary import ranked

    spec = experiment.spec
    best = ranked(outcome.records, spec.objective.direction)[:5]
    if best:
        table = Table(title=f"Best trials ({spec.objective.direction} {spec.objective.metric})")
        table.add_column("trial")
        table.add_column(spec.objective.metric, justify="right")
        for name in best[0].params:
            table.add_column(name, justify="right")
        for record in best:
            table.add_row(record.id, f"{record.value:.6g}", *(_short(v) for v in record.params.values()))
        console().print(table)
    counts = ", ".join(f"{n} {state}" for state, n in sorted(outcome.summary["counts"].items()))
    colour = {"Succeeded": "green", "Interrupted": "yellow"}.get(outcome.phase, "red")
    console().print(styled((outcome.phase, colour), f" ({outcome.reason}): {outcome.message}. "
                           f"Trials: {counts or 'none'}."))
    if best:
        params = ", ".join(f"{k}={_short(v)}" for k, v in best[0].params.items())
        console().print(f"Best trial: {best[0].id} {spec.objective.metric}={best[0].value:.6g} ({params})")
    console().print(f"Results: {out / 'trials.jsonl'}, {out / 'summary.json'}")
    if outcome.phase == "Interrupted":
        console().print(f"Continue with: kubetune run {file} --out {out} --resume")


# -- validate -----------------------------------------------------------------------------------------------
def _validate(args: argparse.Namespace) -> int:
    from rich.table import Table

    experiment = _load(args)
    spec = experiment.spec
    console().print(styled(("valid", "green"), ": Experiment ", (experiment.name, "bold"), f" ({args.file})"))
    table = Table(title="Search space")
    for column in ("parameter", "type", "range / values", "scale"):
        table.add_column(column)
    for p in spec.parameters:
        table.add_row(p.name, p.type, *p.describe())
    console().print(table)
    objective = spec.objective
    target = f", stop at {objective.target}" if objective.target is not None else ""
    console().print(f"Objective: {objective.direction} {objective.metric} ({objective.strategy} value{target})")
    console().print(f"Algorithm: {spec.algorithm.name} {spec.algorithm.settings or ''}".rstrip())
    stopping = spec.early_stopping
    if stopping.enabled:
        console().print(f"Early stopping: {stopping.rule} on {stopping.resource} {stopping.settings or ''}".rstrip())
    template = spec.trial_template
    timeout = f"timeout {template.timeout_seconds} s" if template.timeout_seconds else "no timeout"
    console().print(f"Trials: {spec.max_trials} in all, {spec.parallelism} at a time, up to "
                    f"{_count(spec.max_failed_trials, 'failure', 'failures')}, "
                    f"{_count(template.retries, 'retry', 'retries')} each, {timeout}")
    _print_first_trial(experiment)
    from kubetune.core.manifest import local_run_problems
    from kubetune.core.pod_schema import cluster_only_problems, schema_version

    version = schema_version()
    console().print(f"Pod template: checked against the Kubernetes {version} PodSpec" if version else
                    "Pod template: not checked against the Kubernetes PodSpec (pip install 'kubetune[schema]')")

    for problem in local_run_problems(spec):
        _warning(f"{problem}; kubetune run refuses it, a cluster runs the image's entrypoint")
    for problem in cluster_only_problems(spec):
        _warning(str(problem))
    return EXIT_OK


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _print_first_trial(experiment: Experiment) -> None:
    import shlex

    from kubetune.core.engine import Optimizer
    from kubetune.core.template import substitute_all

    spec = experiment.spec
    example = Optimizer(parameters=spec.parameters, direction=spec.objective.direction,
                        algorithm=spec.algorithm.name, settings=spec.algorithm.settings, seed=spec.seed).ask(1)
    if not example:
        return
    container = substitute_all(spec.trial_template.spec["containers"][0], example[0].params,
                               f"{experiment.name}-0", experiment.name)
    command = shlex.join(str(c) for c in (container.get("command") or []) + (container.get("args") or []))
    if container.get("command"):
        console().print(f"First trial would run: {command}", soft_wrap=True)
    else:
        console().print(f"First trial would run, in a cluster: the image's entrypoint {command}".rstrip(),
                        soft_wrap=True)


# -- status and export --------------------------------------------------------------------------------------
def _cluster(args: argparse.Namespace) -> Any:
    """A reader of the cluster the kubeconfig names, when ``--experiment`` was given (or SOURCE is an
    Experiment's name, see :func:`_source`); else None (a run folder). Refuses neither or both."""
    _source(args)
    if (args.source is None) == (args.experiment is None):
        raise CommandLineError("give a run folder (SOURCE) or --experiment NAME, not both" if args.source
                               else "give a run folder (SOURCE) or --experiment NAME")
    if args.experiment is None:
        return None
    from kubetune.results.cluster import ClusterError, ClusterReader

    try:
        return ClusterReader(args.namespace, args.kubeconfig, args.context)
    except ClusterError as exc:
        raise CommandLineError(str(exc)) from None


def _source(args: argparse.Namespace) -> None:
    """``kubetune status demo``: a SOURCE that is no file or folder but could be an Experiment's name is that
    Experiment on the cluster, as kubectl would take it."""
    source = args.source
    if source is not None and args.experiment is None and EXPERIMENT_NAME.fullmatch(str(source)):
        with contextlib.suppress(OSError):
            if not source.exists():
                args.experiment, args.source = str(source), None


def _read(args: argparse.Namespace, snapshot: bool, warn: bool = True) -> Any:
    """The experiment's :class:`Snapshot` (``snapshot``) or its full :class:`Results`; a problem with the
    source is a :class:`CommandLineError`, what it left out a warning (``warn``)."""
    from kubetune.results.cluster import ClusterError, read_experiment
    from kubetune.results.status import cluster_snapshot, snapshot_of

    try:
        if args.experiment is None:
            results = _read_run_folder(args.source, warn)
            return snapshot_of(results) if snapshot else results
        if snapshot:
            return cluster_snapshot(args.reader, args.experiment)
        return read_experiment(args.reader, args.experiment)
    except ClusterError as exc:
        raise CommandLineError(str(exc)) from None


def _read_run_folder(path: Path, warn: bool = True) -> Any:
    """The run folder's :class:`Results`, with a warning for each thing in it that could not be read."""
    from kubetune.results.run_folder import NotARunFolder, read_run_folder

    try:
        results = read_run_folder(path)
    except NotARunFolder as exc:
        raise CommandLineError(str(exc)) from None
    for problem in results.problems if warn else []:
        _warning(problem)
    return results


def _status(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from kubetune.results.status import render

    args.reader = _cluster(args)
    view = render(_read(args, snapshot=True), datetime.now(UTC))
    if not args.watch:
        console().print(view)
        return EXIT_OK
    return _watch(args, view)


def _watch(args: argparse.Namespace, view: Any) -> int:
    """Redraws the status in place every ``--interval`` seconds until Ctrl-C (exit 0). A failed read while
    watching (the API server restarting, say) is shown under the last good view, and tried again."""
    import time
    from datetime import UTC, datetime

    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    from kubetune.results.status import render

    try:
        with Live(view, console=console(), auto_refresh=False, transient=False) as live:
            while True:
                time.sleep(max(args.interval, 0.1))
                try:
                    view = render(_read(args, snapshot=True, warn=False), datetime.now(UTC))
                    live.update(view, refresh=True)
                except CommandLineError as exc:
                    live.update(Group(view, Text(f"error: {exc} (trying again)", style="red")), refresh=True)
    except KeyboardInterrupt:
        return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from kubetune.results.export import write

    args.reader = _cluster(args)
    results = _read(args, snapshot=False)
    if args.out is None:
        try:
            write(results, args.format, sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:  # `kubetune export ... | head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    try:
        with args.out.open("w", newline="", encoding="utf-8", errors="backslashreplace") as out:
            count = write(results, args.format, out)
    except OSError as exc:
        raise CommandLineError(f"-o {args.out}: {exc.strerror or exc}") from None
    errors().print(f"wrote {count} trials to {args.out}", soft_wrap=True)
    return EXIT_OK


# -- kubectl plugin -----------------------------------------------------------------------------------------
def _plugin_parser() -> argparse.ArgumentParser:
    """``kubectl kubetune status|export|report NAME``: the Experiments of the kubeconfig's cluster, named the way
    kubectl names objects."""
    parser = argparse.ArgumentParser(
        prog="kubectl kubetune", description="kubetune's Experiments on the cluster of your kubeconfig: their "
        "status, their trials as CSV or JSON Lines, an HTML report.",
        epilog="exit status: 0 done, 2 bad input or the Experiment cannot be read")
    parser.add_argument("--version", action="version", version=f"kubetune {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for name, (help_text, add_options) in RESULT_COMMANDS.items():
        command = commands.add_parser(name, help=help_text)
        command.add_argument("experiment", metavar="NAME", help="the Experiment")
        _add_cluster_options(command)
        add_options(command)
        command.set_defaults(source=None)
    return parser


def kubectl_main(argv: list[str] | None = None) -> int:
    """The ``kubectl-kubetune`` console script: kubectl runs it for ``kubectl kubetune ...``."""
    _printable_output()
    return _dispatch(_plugin_parser().parse_args(sys.argv[1:] if argv is None else argv))


# -- operator -----------------------------------------------------------------------------------------------
def _operator(args: argparse.Namespace) -> int:
    from kubetune.operator import MissingOperatorExtra, require_operator_extra

    try:
        require_operator_extra()
    except MissingOperatorExtra as exc:
        raise CommandLineError(str(exc)) from None
    from kubetune.operator.startup import OperatorStartError, run_operator

    try:
        return run_operator(args)
    except OperatorStartError as exc:
        raise CommandLineError(str(exc)) from None


# -- report ------------------------------------------------------------------------------------------------
def _report(args: argparse.Namespace) -> int:
    from kubetune.results.report import write_report

    results, default = _read_results(args)
    out = args.output or default
    try:
        size = write_report(results, out)
    except OSError as exc:
        raise CommandLineError(f"-o {out}: cannot write the report: {exc.strerror or exc}") from None
    console().print(f"wrote {out} ({human_size(size)}, {len(results.trials)} trials)")
    return EXIT_OK


def _read_results(args: argparse.Namespace) -> tuple[Any, Path]:
    """The results the command shows (a run folder, or ``--experiment`` on the cluster) and where their report
    goes by default."""
    _source(args)
    if (args.source is None) == (args.experiment is None):
        raise CommandLineError("give a run folder (SOURCE) or --experiment NAME, not both" if args.source
                               else "give a run folder (SOURCE) or --experiment NAME")
    if args.experiment is not None:
        return _read_cluster(args), Path(f"{args.experiment}-report.html")
    return _read_run_folder(args.source), args.source / "report.html"


def _read_cluster(args: argparse.Namespace) -> Any:
    from kubetune.results.cluster import ClusterError, read_cluster_experiment

    try:
        return read_cluster_experiment(args.experiment, args.namespace, args.kubeconfig, args.context)
    except ClusterError as exc:
        raise CommandLineError(str(exc)) from None


# -- convert ------------------------------------------------------------------------------------------------
def _convert(args: argparse.Namespace) -> int:
    """Each document converted one by one; a note per field not carried over (a warning), and the documents
    that could not be converted named with their reasons (exit 2)."""
    from kubetune.core.katib import convert_text, render

    source = "standard input" if str(args.file) == "-" else str(args.file)
    try:
        conversions = convert_text(_read_text(args.file, source))
    except ValueError as exc:
        raise CommandLineError(f"{source}: {exc}") from None
    for number, conversion in enumerate(conversions, start=1):
        where = source if len(conversions) == 1 else f"{source} (document {number})"
        for note in conversion.notes:
            (_error if note.refusal else _warning)(f"{where}: {note}")
    output = render(conversions)
    if output and args.out is not None:
        try:
            args.out.write_text(output, encoding="utf-8")
        except OSError as exc:
            raise CommandLineError(f"-o {args.out}: {exc.strerror or exc}") from None
    elif output:
        sys.stdout.write(output)
    return EXIT_BAD_INPUT if any(c.refused for c in conversions) else EXIT_OK


def _read_text(path: Path, source: str) -> str:
    """A manifest file, or standard input for ``-``, as text (read to at most the manifest size limit)."""
    from kubetune.core.manifest import MAX_MANIFEST_BYTES, read_limited

    try:
        if str(path) == "-":
            raw = sys.stdin.buffer.read(MAX_MANIFEST_BYTES + 1)
            if len(raw) > MAX_MANIFEST_BYTES:
                raise ValueError(f"larger than {MAX_MANIFEST_BYTES // 2**20} MiB")
        else:
            raw = read_limited(path)
        return raw.decode("utf-8")
    except OSError as exc:
        raise CommandLineError(f"{source}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CommandLineError(f"{source}: not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at offset "
                               f"{exc.start} cannot be read") from None
    except ValueError as exc:
        raise CommandLineError(f"{source}: {exc}") from None


# -- crds ---------------------------------------------------------------------------------------------------
def _crds(args: argparse.Namespace) -> int:
    from kubetune.core.cluster.crd import all_crds

    documents = all_crds()
    if args.out is None:
        sys.stdout.write("---\n".join(render_yaml(crd) for crd in documents.values()))
        return EXIT_OK
    args.out.mkdir(parents=True, exist_ok=True)
    for name, crd in documents.items():
        (args.out / name).write_text(render_yaml(crd))
        console().print(f"wrote {args.out / name}")
    return EXIT_OK


def render_yaml(document: dict[str, Any]) -> str:
    import yaml

    header = "# Generated by `kubetune crds` from the pydantic models; do not edit by hand.\n"
    return header + yaml.safe_dump(document, sort_keys=False, width=120)


if __name__ == "__main__":
    sys.exit(main())
