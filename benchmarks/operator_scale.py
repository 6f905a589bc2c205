"""Operator scale: the real operator (``kopf run``, in its own process) against the emulated API server of
the end-to-end tests, with a test kubelet in its own process (pods start and finish as fast as it can patch
them, unless a scenario gives its trials a duration).

Scenarios: one experiment of 2,000 parallel trials (5,000 in total), 100 experiments of 20 parallel trials
each, and the first again with trials that run 10 to 50 s instead of ending at once. Reported: trials
orchestrated per second, the operator's API requests per trial (writes separately), its peak RSS, and slot
refill latency (from a trial's end to its replacement pod's creation, within each experiment, its i-th trial
end matched to its i-th pod creation after its initial fill) p50/p95.

    python -m benchmarks.operator_scale [--quick] [--out benchmarks/results/operator_scale.md]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import re
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from kube_emulator import EmulatedKubelet, RunningEmulator  # noqa: E402

OPERATOR = ROOT / "tests" / "operator_app.py"
TRIAL_SECONDS = (10.0, 50.0)  # the third scenario's trials run this long (spread evenly), not instantly


def experiment(name: str, parallelism: int, max_trials: int) -> dict:
    return {
        "apiVersion": "kubetune.io/v1alpha1", "kind": "Experiment", "metadata": {"name": name},
        "spec": {
            "objective": {"metric": "loss", "direction": "minimize"},
            "parameters": [{"name": "x", "type": "double", "min": -5, "max": 10}],
            "algorithm": {"name": "random"}, "seed": 0,
            "parallelism": parallelism, "maxTrials": max_trials, "maxFailedTrials": 10,
            "trialTemplate": {"spec": {"containers": [
                {"name": "trial", "image": "python:3.12-slim", "command": ["python", "train.py"],
                 "args": ["--x=${params.x}"]}]}},
        },
    }


def run_scenario(label: str, experiments: list[dict], timeout: float,
                 durations: tuple[float, float] | None = None) -> dict:
    with RunningEmulator() as cluster:
        env = {**os.environ, "KUBETUNE_TEST_API": cluster.url, "PYTHONPATH": str(ROOT / "src")}
        log = open(f"/tmp/kubetune-operator-scale-{label}.log", "w")  # noqa: SIM115 - closed below
        operator = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "--quiet", "--namespace", "default", str(OPERATOR)],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            time.sleep(3)  # let kopf discover the resources
            total = sum(e["spec"]["maxTrials"] for e in experiments)
            with KubeletProcess(cluster.url, interval=0.02 if durations is None else 0.25,
                                durations=durations) as kubelet:
                started = time.monotonic()
                for document in experiments:
                    _create(cluster.url, document)
                peak = 0.0
                while time.monotonic() - started < timeout:
                    peak = max(peak, _rss_mib(operator.pid))
                    done = cluster.call(lambda: _finished_experiments(cluster))
                    if done >= len(experiments):
                        break
                    time.sleep(0.5)
                elapsed = time.monotonic() - started
                peak = max(peak, _rss_mib(operator.pid))
            finished_at = kubelet.finished_at
            succeeded = cluster.call(lambda: _count_trials(cluster))
            requests = dict(cluster.emulator.requests_by_client)
            created = dict(cluster.emulator.pod_created_at)
        finally:
            operator.terminate()
            operator.wait(20)
            log.close()
    operator_requests = {k: v for k, v in requests.items() if k[0] == "operator"}
    writes = sum(v for (_, verb, _), v in operator_requests.items() if verb in ("POST", "PATCH", "PUT", "DELETE"))
    latencies = [latency for e in experiments
                 for latency in _refill_latencies(_of(finished_at, e), _of(created, e), e["spec"]["parallelism"])]
    pod_seconds = [finished_at[name] - created[name] for name in finished_at if name in created]
    return {
        "label": label, "experiments": len(experiments), "trials": succeeded, "planned": total,
        "seconds": elapsed, "trials_per_second": succeeded / elapsed if elapsed else 0.0,
        "requests_per_trial": sum(operator_requests.values()) / max(succeeded, 1),
        "writes_per_trial": writes / max(succeeded, 1),
        "peak_rss_mib": peak,
        "refill_p50": float(np.percentile(latencies, 50)) if latencies else float("nan"),
        "refill_p95": float(np.percentile(latencies, 95)) if latencies else float("nan"),
        "pod_seconds_p50": float(np.median(pod_seconds)) if pod_seconds else float("nan"),
        "parallel": sum(e["spec"]["parallelism"] for e in experiments), "durations": durations,
        "requests": {f"{v} {r}": n for (c, v, r), n in operator_requests.items()},
    }


class KubeletProcess:
    """The test kubelet in its own process, as a kubelet is: in the emulator's process it would compete with
    the API server for one interpreter lock and slow the operator's requests down."""

    def __init__(self, url: str, interval: float, durations: tuple[float, float] | None = None):
        context = multiprocessing.get_context("spawn")
        self._stop, self._results = context.Event(), context.Queue()
        self._process = context.Process(target=_kubelet_main,
                                        args=(url, interval, durations, self._stop, self._results))
        self.finished_at: dict[str, float] = {}

    def __enter__(self) -> KubeletProcess:
        self._process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.finished_at = self._results.get(timeout=60)
        self._process.join(30)


def _kubelet_main(url: str, interval: float, durations: tuple[float, float] | None, stop, results) -> None:
    duration = None
    if durations is not None:
        low, high = durations

        def duration(pod: dict) -> float:  # spread over [low, high], the same for a pod on every run
            return low + (high - low) * (zlib.crc32(pod["metadata"]["name"].encode()) % 1000) / 1000

    with EmulatedKubelet(url, interval=interval, duration=duration) as kubelet:
        stop.wait()
    results.put(dict(kubelet.finished_at))  # time.monotonic() is one clock for every process of the machine


def _create(url: str, document: dict) -> None:
    from kubernetes import client

    api_client = client.ApiClient(client.Configuration(host=url))
    api_client.user_agent = "kubectl-benchmark"  # not counted as the operator's
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        "kubetune.io", "v1alpha1", "default", "experiments", document, _preload_content=False)


def _finished_experiments(cluster):
    async def count():
        return sum(1 for (res, _, _), obj in cluster.emulator.objects.items()
                   if res.plural == "experiments" and not obj.deleted
                   and (obj.raw.get("status") or {}).get("phase") in ("Succeeded", "Failed"))

    return count()


def _count_trials(cluster):
    async def count():
        return sum(1 for (res, _, _), obj in cluster.emulator.objects.items()
                   if res.plural == "trials" and not obj.deleted
                   and (obj.raw.get("status") or {}).get("phase") == "Succeeded")

    return count()


def _of(times: dict[str, float], experiment: dict) -> dict[str, float]:
    """The entries of one experiment's pods (named ``<experiment>-<n>``, retries ``<experiment>-<n>-r<k>``)."""
    prefix = re.compile(re.escape(experiment["metadata"]["name"]) + r"-\d+(-r\d+)?$")
    return {name: t for name, t in times.items() if prefix.match(name)}


def _refill_latencies(finished_at: dict[str, float], created_at: dict[str, float], parallel: int) -> list[float]:
    ends = sorted(finished_at.values())
    creations = sorted(created_at.values())[parallel:]  # after the initial fill
    return [c - e for e, c in zip(ends, creations, strict=False) if c >= e]


def _rss_mib(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"VmHWM:\s+(\d+)", status)
    return int(match.group(1)) / 1024 if match else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the size")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "operator_scale.md")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    scenarios = [
        ("one experiment", [experiment("big", 2000 // scale, 5000 // scale)], None),
        ("100 experiments", [experiment(f"small-{i}", 20, 40 // scale) for i in range(100 // scale)], None),
        ("one experiment, 10-50 s trials", [experiment("long", 2000 // scale, 5000 // scale)], TRIAL_SECONDS),
    ]
    results = []
    for label, experiments, durations in scenarios:
        print(f"scenario: {label}", flush=True)
        result = run_scenario(label.replace(" ", "-").replace(",", ""), experiments, timeout=900, durations=durations)
        result["label"] = label
        print(json.dumps(result, indent=1), flush=True)
        results.append(result)
    write_report(args.out, results)


def write_report(path: Path, results: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Operator scale",
        "",
        f"`python -m benchmarks.operator_scale`, run {time.strftime('%Y-%m-%d')} on {platform.machine()}, "
        f"{os.cpu_count()} cores: the operator (`kopf run`, its own process) against the emulated API server "
        "(KMock extended in `tests/kube_emulator.py`) with a test kubelet (in its own process) that ends trials "
        "at once unless said otherwise, all on this machine.",
        "",
        "| scenario | trials | seconds | trials/s | API requests per trial | writes per trial | operator peak RSS "
        "| refill p50 | refill p95 | pod created to ended, p50 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(f"| {r['label']} ({r['experiments']} experiment{'s' if r['experiments'] > 1 else ''}) | "
                     f"{r['trials']} of {r['planned']} | {r['seconds']:.1f} | {r['trials_per_second']:.1f} | "
                     f"{r['requests_per_trial']:.2f} | {r['writes_per_trial']:.2f} | {r['peak_rss_mib']:.0f} MiB | "
                     f"{r['refill_p50'] * 1000:.0f} ms | {r['refill_p95'] * 1000:.0f} ms | "
                     f"{r['pod_seconds_p50']:.1f} s |")
    lines += [
        "",
        "With instant trials every slot is always either a pod the kubelet has not finished yet or an ended trial "
        "waiting for its refill, so a slot's cycle (refill wait plus pod time) is parallel slots / throughput "
        "(Little's law) whatever the operator does: "
        + "; ".join(f"{r['label']}: {r['parallel']} / {r['trials_per_second']:.0f} per s = "
                    f"{r['parallel'] / max(r['trials_per_second'], 1e-9):.1f} s per cycle, "
                    f"{r['pod_seconds_p50']:.1f} s of it in the kubelet"
                    for r in results if r.get("durations") is None)
        + ". The refill latency of those scenarios is the part of the cycle the kubelet does not hold, a queue "
        "that only a faster operator than kubelet could empty. The last scenario's trials run "
        f"{TRIAL_SECONDS[0]:.0f} to {TRIAL_SECONDS[1]:.0f} s, so trials end at about "
        "parallel slots / mean duration per second and the refill latency is the operator's own response time.",
    ]
    lines += ["", "Operator requests by verb and resource:", ""]
    for r in results:
        lines.append(f"- {r['label']}: " + ", ".join(f"{k}: {v}" for k, v in sorted(r["requests"].items())))
    lines.append("")
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
