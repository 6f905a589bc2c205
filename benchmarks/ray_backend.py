"""kubetune on Ray against Ray Tune and against kubetune's local backend, with instant command trials.

Every system runs the same trials: a command (``sh -c 'echo loss=X'``) that prints the objective and exits at
once, so what is measured is what each system adds around a trial: starting it, following it, recording it,
asking for the next point. In one run of this script, on one Ray cluster started here (``ray start --head``
with ``--num-cpus`` equal to the parallelism, so both Ray systems get the same slots):

- ``kubetune-ray``: ``kubetune run --backend ray --address ...`` (the runner in a process of its own);
- ``ray-tune``: ``tune.Tuner`` with a function trainable that runs the command (``subprocess.run``) and
  reports its value, random search over the same space, ``max_concurrent_trials`` = the parallelism and
  ``reuse_actors=True``;
- ``kubetune-local``: ``kubetune run`` with the default process backend (no Ray).

Each system runs in a process of its own. The driver's resident memory (``/proc/PID/statm``) is recorded as
trials end, at every 1,000th trial (and at 10 % steps for small runs): for kubetune, the ``kubetune run``
process read from outside as rows reach ``trials.jsonl``; for Ray Tune, the process that runs ``Tuner.fit``
read from a Tune callback. Reported: trials per second, wall
time per trial (the overhead: the trials themselves take about a millisecond), and the driver's memory
after 1,000 trials and at the end. Targets (issue 16): kubetune-ray's time per trial within 2x of Ray
Tune's, and its driver's memory flat (within 100 MB) from 1,000 to 10,000 trials.

    python -m benchmarks.ray_backend [--trials 10000] [--parallelism 8] [--systems ...] [--limit-minutes 40]
    python -m benchmarks.ray_backend --report-only     # the report again from benchmarks/results/ray_backend.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
SYSTEMS = ("kubetune-ray", "ray-tune", "kubetune-local")
COMMAND = "echo loss={x}"
LOW, HIGH = -5.0, 10.0
PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_mib(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20


class MemoryLog:
    """The driver's resident memory after every ``every``-th ended trial."""

    def __init__(self, trials: int):
        self.every = 1000 if trials >= 2000 else max(1, trials // 10)
        self.ended = 0
        self.samples: list[tuple[int, float]] = []
        self.started = time.perf_counter()

    def trial_ended(self) -> None:
        self.ended += 1
        if self.ended % self.every == 0:
            self.sample(self.ended, resident_mib())

    def sample(self, ended: int, mib: float) -> None:
        self.samples.append((ended, round(mib, 1)))

    def result(self, **extra: Any) -> dict[str, Any]:
        wall = time.perf_counter() - self.started
        return {"trials": self.ended, "wall_s": round(wall, 2), "memory_mib": self.samples, **extra}


def experiment_document(trials: int, parallelism: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.io/v1alpha1", "kind": "Experiment", "metadata": {"name": "ray-bench"},
        "spec": {
            "objective": {"metric": "loss", "direction": "minimize"},
            "parameters": [{"name": "x", "type": "double", "min": LOW, "max": HIGH}],
            "algorithm": {"name": "random"}, "seed": 0,
            "parallelism": parallelism, "maxTrials": trials, "maxFailedTrials": trials,
            "trialTemplate": {"spec": {"containers": [{
                "name": "trial", "image": "unused", "command": ["sh", "-c", COMMAND.format(x="${params.x}")]}]}},
        },
    }


def run_kubetune(backend: str, trials: int, parallelism: int, address: str | None, folder: Path) -> dict[str, Any]:
    """``kubetune run`` as a user runs it, in a process of its own; its memory is read from here as the rows of
    ``trials.jsonl`` come in."""
    manifest = folder / "experiment.yaml"
    manifest.write_text(json.dumps(experiment_document(trials, parallelism)))
    command = [sys.executable, "-m", "kubetune.cli", "run", str(manifest), "--out", str(folder / "run"), "--quiet"]
    if backend == "kubetune-ray":
        command += ["--backend", "ray", "--address", str(address)]
    log = MemoryLog(trials)
    rows = folder / "run" / "trials.jsonl"
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as driver:
        seen = 0
        while driver.poll() is None:
            time.sleep(0.2)
            ended = _lines(rows)
            if ended // log.every > seen // log.every:
                log.sample(ended, resident_mib(driver.pid))
            seen = ended
        shown = driver.stdout.read() if driver.stdout else ""
    if driver.returncode != 0:
        raise RuntimeError(f"kubetune run exited with {driver.returncode}: {shown[-2000:]}")
    log.ended = _lines(rows)
    return log.result(outcome=shown.strip().splitlines()[-3] if shown.strip() else "")


def _lines(path: Path) -> int:
    try:
        with path.open("rb") as file:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: file.read(1 << 16), b""))
    except FileNotFoundError:
        return 0


def run_ray_tune(trials: int, parallelism: int, address: str | None, folder: Path) -> dict[str, Any]:
    import ray
    from ray import tune

    log = MemoryLog(trials)

    def trainable(config: dict[str, Any]) -> None:
        shown = subprocess.run(["sh", "-c", COMMAND.format(x=config["x"])], capture_output=True, text=True,
                               check=True).stdout
        tune.report({"loss": float(shown.strip().split("=", 1)[1])})

    class Memory(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            log.trial_ended()

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            log.trial_ended()

    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    tuner = tune.Tuner(
        trainable, param_space={"x": tune.uniform(LOW, HIGH)},
        tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=parallelism, metric="loss",
                                    mode="min", reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(folder / "tune"), name="ray-bench", verbose=0,
                                  callbacks=[Memory()]))
    results = tuner.fit()
    errors = sum(1 for result in results if result.error is not None)
    return log.result(errors=errors)


def one_system(system: str, trials: int, parallelism: int, address: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="kubetune-ray-bench-") as scratch:
        folder = Path(scratch)
        if system == "ray-tune":
            return run_ray_tune(trials, parallelism, address, folder)
        return run_kubetune(system, trials, parallelism, address, folder)


def start_ray_head(parallelism: int, scratch: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """A Ray head of this benchmark's own (``ray start --block``, in a session of its own, so that stopping it
    stops its processes and no other Ray on the machine)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    head = subprocess.Popen(["ray", "start", "--block", "--head", f"--port={port}", f"--num-cpus={parallelism}",
                             "--num-gpus=0", "--include-dashboard=false", f"--temp-dir={scratch}",
                             "--disable-usage-stats"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_ray_env(), start_new_session=True)
    address = f"127.0.0.1:{port}"
    for _ in range(120):
        probe = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address={address!r}); ray.shutdown()"],
                               capture_output=True, env=_ray_env())
        if probe.returncode == 0:
            return address, head
        if head.poll() is not None:
            break
        time.sleep(1)
    stop_ray_head(head)
    raise RuntimeError("the benchmark's Ray head did not start")


def stop_ray_head(head: subprocess.Popen[bytes]) -> None:
    head.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        head.wait(60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGKILL)
    head.wait()


def _ray_env() -> dict[str, str]:
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def measure(systems: list[str], trials: int, parallelism: int, limit_minutes: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ray-", dir="/tmp") as scratch:
        address, head = start_ray_head(parallelism, Path(scratch))
        try:
            for system in systems:
                print(f"{system}: {trials} trials, {parallelism} at a time", flush=True)
                command = [sys.executable, "-m", "benchmarks.ray_backend", "--one", system, "--trials", str(trials),
                           "--parallelism", str(parallelism), "--address", address]
                try:
                    shown = subprocess.run(command, capture_output=True, text=True, timeout=limit_minutes * 60,
                                           env=_ray_env(), cwd=Path(__file__).parent.parent)
                except subprocess.TimeoutExpired:
                    results[system] = {"error": f"did not finish in {limit_minutes:g} minutes"}
                    continue
                if shown.returncode != 0:
                    results[system] = {"error": shown.stderr.strip().splitlines()[-1:] or ["failed"]}
                    print(shown.stderr[-3000:], file=sys.stderr)
                    continue
                results[system] = json.loads(shown.stdout.strip().splitlines()[-1])
                print(f"  {results[system]}", flush=True)
        finally:
            stop_ray_head(head)
    return results


def report(results: dict[str, Any], trials: int, parallelism: int) -> str:
    lines = [
        "# kubetune on Ray against Ray Tune and the local backend",
        "",
        f"`python -m benchmarks.ray_backend --trials {trials} --parallelism {parallelism}` on {os.cpu_count()} "
        f"cores ({platform.platform()}, Python {platform.python_version()}, Ray {_ray_version()}); one Ray "
        f"cluster started by the benchmark (`ray start --head --num-cpus={parallelism}`) for both Ray systems. "
        f"Trials are `sh -c 'echo loss=X'`, random search over one parameter, {parallelism} at a time. Ray Tune "
        "runs with `reuse_actors=True` (its faster setting for many short trials; by default it starts an actor "
        "per trial). Time per trial is the wall time over the number of trials, startup included. Other work "
        "may have shared the machine's cores during the run.",
        "",
        "| system | trials | wall (s) | trials/s | ms per trial | driver memory after 1,000 (MiB) | at the end "
        "(MiB) | growth (MiB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for system, result in results.items():
        if "error" in result:
            lines.append(f"| {system} | — | — | — | — | — | — | {result['error']} |")
            continue
        samples = result["memory_mib"]
        at_1000 = next((mib for ended, mib in samples if ended >= 1000), None)
        end = samples[-1][1] if samples else None
        growth = f"{end - at_1000:+.1f}" if at_1000 is not None and end is not None else "—"
        rate = result["trials"] / result["wall_s"]
        lines.append(f"| {system} | {result['trials']:,} | {result['wall_s']:.1f} | {rate:.1f} | "
                     f"{1000 / rate:.1f} | {at_1000 if at_1000 is not None else '—'} | {end} | {growth} |")
    lines += ["", "## Targets", "", *targets(results, trials)]
    lines += ["", "Driver memory (MiB) as trials end:", ""]
    for system, result in results.items():
        if "memory_mib" in result:
            lines.append(f"- {system}: " + ", ".join(f"{ended:,}: {mib}" for ended, mib in result["memory_mib"]))
    return "\n".join(lines) + "\n"


def ms_per_trial(result: dict[str, Any]) -> float | None:
    if "error" in result or not result.get("trials"):
        return None
    return 1000 * result["wall_s"] / result["trials"]


def memory_growth(result: dict[str, Any]) -> float | None:
    """MiB the driver grew from its first sample at or after 1,000 trials to its last."""
    samples = result.get("memory_mib") or []
    after = [mib for ended, mib in samples if ended >= 1000]
    return after[-1] - after[0] if len(after) >= 2 else None


def targets(results: dict[str, Any], trials: int) -> list[str]:
    """Issue 16's two targets, judged from this run's figures."""
    ours, tune = results.get("kubetune-ray", {}), results.get("ray-tune", {})
    lines = []
    mine, theirs = ms_per_trial(ours), ms_per_trial(tune)
    if mine is None or theirs is None:
        lines.append("- Time per trial within 2x of Ray Tune's: not judged (a system did not run to the end).")
    else:
        verdict = "met" if mine <= 2 * theirs else "missed"
        lines.append(f"- Time per trial within 2x of Ray Tune's: **{verdict}**, {mine:.1f} ms against "
                     f"{theirs:.1f} ms ({mine / theirs:.2f}x).")
    growth = memory_growth(ours)
    if growth is None or trials < 10000:
        lines.append("- Driver memory flat (within 100 MB) from 1,000 to 10,000 trials: not judged "
                     f"(this run had {trials:,} trials).")
    else:
        verdict = "met" if growth * 2**20 <= 100e6 else "missed"
        tune_growth = memory_growth(tune)
        beside = f"; Ray Tune's driver grew {tune_growth:+.1f} MiB" if tune_growth is not None else ""
        lines.append(f"- Driver memory flat (within 100 MB) from 1,000 to 10,000 trials: **{verdict}**, "
                     f"{growth:+.1f} MiB{beside}.")
    return lines


def _ray_version() -> str:
    try:
        import ray
    except ImportError:
        return "not installed"
    return str(ray.__version__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10000)
    parser.add_argument("--parallelism", type=int, default=8)
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--limit-minutes", type=float, default=40.0, help="per system")
    parser.add_argument("--out", type=Path, default=RESULTS / "ray_backend.md")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from its JSON")
    parser.add_argument("--one", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_system(args.one, args.trials, args.parallelism, args.address)))
        return
    raw = args.out.with_suffix(".json")
    if args.report_only:
        measured = json.loads(raw.read_text())
        args.out.write_text(report(measured["results"], measured["trials"], measured["parallelism"]))
        print(args.out.read_text())
        return
    results = measure(args.systems, args.trials, args.parallelism, args.limit_minutes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(json.dumps({"trials": args.trials, "parallelism": args.parallelism, "results": results},
                              indent=1) + "\n")
    args.out.write_text(report(results, args.trials, args.parallelism))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
