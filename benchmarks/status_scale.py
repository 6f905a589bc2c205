"""``kubetune status --experiment`` of an experiment of 10,000 trials on a real control plane (kube-apiserver
and etcd built by ``make control-plane``, as the tests use): one Experiment whose status the operator would
have written (counts and best), 10,000 Trials with their status, and a pod per trial (finished ones
Succeeded or Failed, as the operator leaves them), 2,000 of them Running; then 200 (1,800 of those ended). Reported: the
wall time of the command as a user runs it (a new process: interpreter start, imports, kubeconfig, the calls),
median and worst of several runs, the time of the reading alone (in this process), and for comparison
``kubetune export --experiment`` (every Trial, listed a page at a time).

    python -m benchmarks.status_scale [--trials 10000] [--out benchmarks/results/status_scale.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from cluster import ControlPlane  # noqa: E402
from cluster.identity import kubectl  # noqa: E402

from conftest import manifest  # noqa: E402

NAMESPACE, NAME, GROUP, VERSION = "bench", "scale", "kubetune.io", "v1alpha1"
RUNS = 7
STARTED = "2026-01-01T00:00:00Z"
MERGE = "application/merge-patch+json"
TRIALS = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/trials"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"


def objects(trials: int, running: int) -> tuple[dict, list[tuple[dict, dict]], list[tuple[dict, dict]]]:
    """The Experiment, and (object, status) pairs of the Trials and of their pods; the last ``running`` trials
    run, one in 30 of the others failed."""
    document = manifest(maxTrials=trials, parallelism=running)
    document["metadata"] = {"name": NAME, "namespace": NAMESPACE}
    trial_objects, pods = [], []
    for number in range(trials):
        name = f"{NAME}-{number}"
        labels = {"kubetune.io/experiment": NAME, "kubetune.io/trial": name}
        x = -5 + 15 * ((number * 7919) % trials) / trials
        state = "Running" if number >= trials - running else ("Failed" if number % 30 == 7 else "Succeeded")
        status: dict[str, Any] = {"phase": state, "attempts": 1, "pod": name, "startTime": STARTED}
        if state != "Running":
            status["completionTime"] = "2026-01-01T00:05:00Z"
        if state == "Succeeded":
            status.update(value=(x - 2) ** 2, metrics={"loss": (x - 2) ** 2, "concurrent": running})
        trial_objects.append(({"apiVersion": f"{GROUP}/{VERSION}", "kind": "Trial",
                               "metadata": {"name": name, "labels": labels},
                               "spec": {"experiment": NAME, "number": number, "params": {"x": x}}}, status))
        pods.append(({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": name, "labels": {**labels, "kubetune.io/attempt": "1"}},
                      "spec": {"nodeName": "node-1", "restartPolicy": "Never",
                               "containers": [{"name": "trial", "image": "python:3.12-slim",
                                               "command": ["python", "train.py", f"--x={x}"]}]}},
                     {"phase": state, "startTime": STARTED}))
    return document, trial_objects, pods


def set_experiment_status(cluster: ControlPlane, trials: list[tuple[dict, dict]]) -> None:
    cluster.request("PATCH", f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/experiments/{NAME}/status",
                    {"status": experiment_status(trials)}, content_type=MERGE)


def experiment_status(trials: list[tuple[dict, dict]]) -> dict:
    phases = [status["phase"] for _, status in trials]
    done = [(status["value"], t) for t, status in trials if "value" in status]
    value, best = min(done, key=lambda pair: pair[0])
    return {"phase": "Running", "reason": "TrialsRunning", "message": "trials are running",
            "startTime": STARTED,
            "trials": {"created": len(trials), "running": phases.count("Running"),
                       "succeeded": phases.count("Succeeded"), "failed": phases.count("Failed")},
            "best": {"trial": best["metadata"]["name"], "params": best["spec"]["params"], "value": value}}


class Loader:
    """Creates objects and sets their status with many requests in flight (plain urllib3 over one pool of
    connections, as the admin)."""

    def __init__(self, cluster: ControlPlane):
        import urllib3

        self.url = cluster.url
        self.pool = urllib3.PoolManager(maxsize=32, cert_reqs="CERT_REQUIRED", ca_certs=str(cluster.ca.cert),
                                        cert_file=str(cluster.admin.cert), key_file=str(cluster.admin.key))

    def _send(self, method: str, path: str, body: dict, content_type: str = "application/json") -> None:
        answer = self.pool.request(method, self.url + path, body=json.dumps(body).encode(),
                                   headers={"Content-Type": content_type, "Accept": "application/json"})
        assert answer.status < 300, (answer.status, answer.data[:300])

    def trial(self, pair: tuple[dict, dict]) -> None:
        body, status = pair
        self._send("POST", f"{TRIALS}", body)
        self.trial_status(body["metadata"]["name"], status)

    def trial_status(self, name: str, status: dict) -> None:
        self._send("PATCH", f"{TRIALS}/{name}/status", {"status": status}, MERGE)

    def pod(self, pair: tuple[dict, dict]) -> None:
        body, status = pair
        self._send("POST", PODS, body)
        self.pod_status(body["metadata"]["name"], status)

    def pod_status(self, name: str, status: dict) -> None:
        self._send("PATCH", f"{PODS}/{name}/status", {"status": status}, MERGE)

    def all(self, function: Any, items: list) -> float:
        start = time.monotonic()
        with ThreadPoolExecutor(16) as threads:
            list(threads.map(function, items))
        return time.monotonic() - start


def timed_command(kubeconfig: Path, *args: str) -> tuple[float, str]:
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "kubetune.cli", *args, "-n", NAMESPACE, "--kubeconfig",
                           str(kubeconfig)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "COLUMNS": "120"})
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    return elapsed, done.stdout


def measure(kubeconfig: Path, running: int, runs: int = RUNS) -> dict[str, Any]:
    from kubetune.results.cluster import ClusterReader
    from kubetune.results.status import cluster_snapshot

    walls, output = [], ""
    for _ in range(runs):
        wall, output = timed_command(kubeconfig, "status", "--experiment", NAME)
        walls.append(wall)
    reader = ClusterReader(NAMESPACE, str(kubeconfig))
    reads = []
    for _ in range(runs):
        start = time.monotonic()
        snapshot = cluster_snapshot(reader, NAME)
        reads.append(time.monotonic() - start)
    assert snapshot.running_total == running, snapshot.running_total
    return {"running": running, "status_wall_s": walls, "status_read_s": reads, "output": output}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "status_scale.md")
    args = parser.parse_args()
    if args.trials < 4000:  # 2,000 of them run, and most of the others must have ended
        parser.error("--trials: at least 4000 (the scenarios have 2,000 trials running)")
    results: dict[str, Any] = {"trials": args.trials, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}
    with ControlPlane(scheduler=False) as cluster:
        kubeconfig = cluster.admin_kubeconfig
        kubectl(kubeconfig, "apply", "--server-side", "-f", str(ROOT / "crds"))
        kubectl(kubeconfig, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        cluster.create_namespace(NAMESPACE)
        document, trials, pods = objects(args.trials, 2000)
        kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(document))
        set_experiment_status(cluster, trials)
        loader = Loader(cluster)
        results["load_trials_s"] = loader.all(loader.trial, trials)
        results["load_pods_s"] = loader.all(loader.pod, pods)
        print(f"loaded {args.trials} trials in {results['load_trials_s']:.0f} s and their pods in "
              f"{results['load_pods_s']:.0f} s", flush=True)
        results["scenarios"] = [measure(kubeconfig, 2000)]
        # 1,800 of the running trials end (their pods and Trials), the experiment's counts as the operator says
        ending = trials[-2000:-200]
        for body, status in ending:
            x = body["spec"]["params"]["x"]
            status.update(phase="Succeeded", value=(x - 2) ** 2, completionTime="2026-01-01T00:05:00Z")
        loader.all(lambda pair: loader.pod_status(pair[0]["metadata"]["name"], {"phase": "Succeeded"}), ending)
        loader.all(lambda pair: loader.trial_status(pair[0]["metadata"]["name"], pair[1]), ending)
        set_experiment_status(cluster, trials)
        results["scenarios"].append(measure(kubeconfig, 200))
        exports = [timed_command(kubeconfig, "export", "--experiment", NAME)[0] for _ in range(3)]
        results["export_wall_s"] = exports
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    write_report(args.out, results)
    print(args.out.read_text())


def write_report(path: Path, results: dict[str, Any]) -> None:
    lines = [
        f"# `kubetune status --experiment` of {results['trials']:,} trials",
        "",
        "Measured by `python -m benchmarks.status_scale` on the test control plane (kube-apiserver and etcd on "
        f"this machine: {results['machine']}, shared with the benchmark): one Experiment with its status as the "
        f"operator writes it, {results['trials']:,} Trials with their status, and a pod per trial (finished ones "
        "Succeeded or Failed). Wall time is the command as a user runs it, in a new process (interpreter start, "
        f"imports, kubeconfig, the calls), over {RUNS} runs; *reading* is the calls alone "
        "(`results.status.cluster_snapshot`), in one process. The target is under 2 s.",
        "",
        "| trials running | status, wall (median) | status, wall (worst) | reading (median) | reading (worst) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for scenario in results["scenarios"]:
        walls, reads = scenario["status_wall_s"], scenario["status_read_s"]
        lines.append(f"| {scenario['running']:,} | {statistics.median(walls):.2f} s | {max(walls):.2f} s | "
                     f"{statistics.median(reads) * 1000:.0f} ms | {max(reads) * 1000:.0f} ms |")
    lines += [
        "",
        "How it stays fast: counts and the best trial come from the Experiment's status (one GET); the running "
        "trials from the experiment's pods that are Pending or Running (the API server filters by "
        "`status.phase` and answers with metadata only, so the cost is the running trials, not the "
        "finished ones); and the 20 longest-running are shown, with a GET of each of their Trials for the "
        "parameters. For comparison, `kubetune export --experiment` (which reads every Trial, 500 a page) "
        f"took {statistics.median(results['export_wall_s']):.2f} s (median of {len(results['export_wall_s'])}).",
        "",
        f"Loading the {results['trials']:,} Trials (create and status) took {results['load_trials_s']:.0f} s, their "
        f"pods {results['load_pods_s']:.0f} s.",
        "",
        f"What it printed, with {results['scenarios'][-1]['running']:,} running (the first lines):",
        "",
        "```",
        *results["scenarios"][-1]["output"].splitlines()[:22],
        "```",
        "",
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
