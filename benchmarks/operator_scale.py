"""Operator scale on a real control plane: kube-apiserver, etcd, kube-scheduler and the garbage collector
(built by ``make control-plane``), 200 fake nodes run by the test kubelet (its own process), and the operator
(``kubetune operator``, its own process, as the Helm chart's ServiceAccount and RBAC, so API Priority and
Fairness treats it as it would in a cluster).

Scenarios: one experiment of 2,000 parallel trials (5,000 in all) and 100 experiments of 20 parallel trials,
both with trials that run about a minute (lognormal); the first again with trials of about three minutes;
10,000 trial pods running at once across 50 experiments; and the first with trials that end at once (the
stress case). Reported per scenario:
trials/s; API requests per trial by verb and resource (``apiserver_request_total`` from kube-apiserver's
``/metrics``) and the operator's own, writes separately; 429s (the operator's retries and APF's
rejections); peak RSS and CPU seconds of every component; etcd bytes per trial; and slot refill latency
p50/p95 from kube-apiserver's own timestamps: its audit log records, to the microsecond, when the kubelet's
status patch that ended a trial and the operator's create of the next pod completed (``creationTimestamp``
and ``finishedAt`` only have whole seconds).

    python -m benchmarks.operator_scale [--quick] [--only NAME ...] [--out benchmarks/results/operator_scale.md]
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from cluster import Behaviour, Connection, ControlPlane, FakeNode, OperatorIdentity, TestKubelet  # noqa: E402
from cluster.control_plane import free_port  # noqa: E402
from cluster.identity import kubectl  # noqa: E402

NAMESPACE = "bench"
NODES = 200
WRITES = ("POST", "PATCH", "PUT", "DELETE", "create", "patch", "update", "delete", "deletecollection")
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived", "ResponseStarted"],
    "rules": [
        # the two moments of a refill: the kubelet's status patch that ends a trial (its second: the first says
        # Running), and the operator's create of the next pod
        {"level": "Metadata", "verbs": ["patch"], "resources": [{"group": "", "resources": ["pods/status"]}]},
        {"level": "Metadata", "verbs": ["create"], "resources": [{"group": "", "resources": ["pods"]}]},
        {"level": "None"},
    ],
}


@dataclass(frozen=True)
class Durations:
    """How long trials run: lognormal around ``median`` seconds, or ``low`` to ``high`` spread evenly, or at
    once. The same pod name always gets the same duration."""

    median: float = 0.0
    sigma: float = 0.0
    low: float = 0.0
    high: float = 0.0

    def of(self, name: str) -> float:
        u = (zlib.crc32(name.encode()) % 100_000 + 0.5) / 100_000
        if self.median:
            from statistics import NormalDist

            return float(self.median * np.exp(self.sigma * NormalDist().inv_cdf(u)))
        return self.low + (self.high - self.low) * u

    def describe(self) -> str:
        if self.median:
            return f"lognormal, median {self.median:.0f} s, sigma {self.sigma}"
        if self.high:
            return f"{self.low:.0f} to {self.high:.0f} s"
        return "instant"


@dataclass
class Scenario:
    name: str
    label: str
    experiments: list[tuple[str, int, int]]  # name, parallelism, maxTrials
    durations: Durations
    timeout: float = 1800.0

    @property
    def parallel(self) -> int:
        return sum(p for _, p, _ in self.experiments)

    @property
    def trials(self) -> int:
        return sum(m for _, _, m in self.experiments)


def scenarios(scale: int) -> list[Scenario]:
    minute = Durations(median=60.0, sigma=0.3)
    return [
        Scenario("one-experiment", "one experiment, 2,000 parallel, ~60 s trials",
                 [("big", 2000 // scale, 5000 // scale)], minute),
        Scenario("hundred-experiments", "100 experiments x 20 parallel, ~60 s trials",
                 [(f"small-{i}", 20, 40) for i in range(100 // scale)], minute),
        Scenario("three-minute-trials", "one experiment, 2,000 parallel, ~3 min trials",
                 [("steady", 2000 // scale, 5000 // scale)], Durations(median=180.0, sigma=0.3)),
        # the trials outlast the ramp (about 600 s on 2 cores), so all 10,000 run at once
        Scenario("ten-thousand-running", "10,000 trial pods running at once (50 experiments x 200)",
                 [(f"wide-{i}", 200, 200) for i in range(50 // scale)], Durations(low=900.0, high=960.0),
                 timeout=2400.0),
        Scenario("instant", "one experiment, 2,000 parallel, instant trials (stress)",
                 [("instant", 2000 // scale, 5000 // scale)], Durations()),
    ]


def experiment(name: str, parallelism: int, max_trials: int) -> dict:
    return {
        "apiVersion": "kubetune.io/v1alpha1", "kind": "Experiment", "metadata": {"name": name, "namespace": NAMESPACE},
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


# -- the kubelet in its own process --------------------------------------------------------------------
def _kubelet_main(connection: Connection, nodes: int, durations: Durations, stop, results) -> None:
    import asyncio

    kubelet = TestKubelet(connection, [FakeNode(f"node-{i:03d}") for i in range(nodes)],
                          behaviour=lambda pod: Behaviour(seconds=durations.of(pod["metadata"]["name"])),
                          namespaces=[NAMESPACE], concurrency=128)

    async def main() -> None:
        stopping = asyncio.Event()
        serving = asyncio.create_task(kubelet.serve(stopping))
        while not stop.is_set():
            await asyncio.sleep(0.2)
            if serving.done():
                break
        stopping.set()
        await serving

    asyncio.run(main())
    results.put({"max_running": max(kubelet.max_running_total, 0), "errors": kubelet.errors[:20],
                 "terminal_patches": kubelet.terminal_patches})


class KubeletProcess:
    def __init__(self, connection: Connection, nodes: int, durations: Durations):
        context = multiprocessing.get_context("spawn")
        self._stop, self._results = context.Event(), context.Queue()
        self.process = context.Process(target=_kubelet_main, args=(connection, nodes, durations, self._stop,
                                                                   self._results))
        self.results: dict[str, Any] = {}

    def __enter__(self) -> KubeletProcess:
        self.process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        try:
            self.results = self._results.get(timeout=120)
        except Exception:  # the kubelet died: say so in the results
            self.results = {"errors": ["the kubelet process ended without results"]}
        self.process.join(30)


# -- measuring ------------------------------------------------------------------------------------------
@dataclass
class Usage:
    """Peak RSS and CPU seconds of one process (read from /proc before it stops)."""

    rss_mib: float = 0.0
    cpu_seconds: float = 0.0

    @classmethod
    def of(cls, pid: int | None) -> Usage:
        if pid is None:
            return cls()
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return cls()
        peak = re.search(r"VmHWM:\s+(\d+)", status)
        ticks = os.sysconf("SC_CLK_TCK")
        return cls(int(peak.group(1)) / 1024 if peak else 0.0, (int(fields[11]) + int(fields[12])) / ticks)


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == name]


def request_counts(metrics: str) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for labels, value in samples(metrics, "apiserver_request_total"):
        resource = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        counts[labels.get("verb", ""), resource, labels.get("code", "")] += value
    return counts


def etcd_db_bytes(cluster: ControlPlane) -> float:
    import urllib.request

    text = urllib.request.urlopen(f"{cluster.etcd_url}/metrics", timeout=10).read().decode()
    return sum(v for _, v in samples(text, "etcd_mvcc_db_total_size_in_use_in_bytes"))


def refill_latencies(audit: Path, scenario: Scenario) -> list[float]:
    """Within each experiment, its i-th trial end after the start matched with its i-th pod created after the
    initial fill, both at the moment kube-apiserver completed the request."""
    ends: dict[str, list[float]] = collections.defaultdict(list)
    creations: dict[str, list[float]] = collections.defaultdict(list)
    patches: collections.Counter[str] = collections.Counter()
    experiment_of = re.compile(r"^(.*)-\d+(-r\d+)?$")
    with audit.open() as lines:
        for line in lines:
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            if ref.get("namespace") != NAMESPACE or (event.get("responseStatus") or {}).get("code", 0) >= 300:
                continue
            match = experiment_of.match(ref.get("name") or "")
            if not match:
                continue
            when = _timestamp(event["stageTimestamp"])
            if event["verb"] == "create" and ref.get("resource") == "pods" and not ref.get("subresource"):
                creations[match.group(1)].append(when)
            elif ref.get("subresource") == "status":
                patches[ref["name"]] += 1
                if patches[ref["name"]] == 2:
                    ends[match.group(1)].append(when)
    latencies = []
    for name, parallelism, _ in scenario.experiments:
        after_fill = sorted(creations[name])[parallelism:]
        latencies += [c - e for e, c in zip(sorted(ends[name]), after_fill, strict=False) if c >= e]
    return latencies


def _timestamp(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def object_bytes(cluster: ControlPlane, resource: str) -> float:
    """The mean size of one object as the API serves it (JSON), from a page of 200."""
    path = (f"/apis/kubetune.io/v1alpha1/namespaces/{NAMESPACE}/trials?limit=200" if resource == "trials"
            else f"/api/v1/namespaces/{NAMESPACE}/pods?limit=200")
    items = cluster.get(path)["items"]
    return float(np.mean([len(json.dumps(item, separators=(",", ":"))) for item in items])) if items else 0.0


def _ended(cluster: ControlPlane) -> tuple[int, int]:
    """(experiments ended, trials succeeded so far) from the Experiments' status. A busy API server may
    answer slowly: the benchmark's own reads are tried again rather than ending the scenario."""
    for attempt in range(6):
        try:
            items = cluster.get(f"/apis/kubetune.io/v1alpha1/namespaces/{NAMESPACE}/experiments")["items"]
            break
        except (TimeoutError, OSError):
            if attempt == 5:
                raise
            time.sleep(5)
    statuses = [item.get("status") or {} for item in items]
    return (sum(s.get("phase") in ("Succeeded", "Failed") for s in statuses),
            sum((s.get("trials") or {}).get("succeeded", 0) for s in statuses))


@dataclass
class Result:
    name: str
    label: str
    durations: str
    experiments: int
    parallel: int
    planned: int
    trials: int = 0
    seconds: float = 0.0
    trials_per_second: float = 0.0
    refill_p50: float = float("nan")
    refill_p95: float = float("nan")
    refills: int = 0
    max_running: int = 0
    apiserver_requests_per_trial: dict[str, float] = field(default_factory=dict)
    operator_requests_per_trial: dict[str, float] = field(default_factory=dict)
    operator_writes_per_trial: float = 0.0
    operator_throttled: float = 0.0
    apf_rejected: float = 0.0
    http_429: float = 0.0
    usage: dict[str, dict[str, float]] = field(default_factory=dict)
    etcd_bytes_per_trial: float = 0.0
    trial_object_bytes: float = 0.0
    pod_object_bytes: float = 0.0
    kubelet_errors: list[str] = field(default_factory=list)


def run_scenario(scenario: Scenario) -> Result:
    workdir = Path(tempfile.mkdtemp(prefix=f"kubetune-scale-{scenario.name}-"))
    policy = workdir / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    audit = workdir / "audit.log"
    result = Result(scenario.name, scenario.label, scenario.durations.describe(), len(scenario.experiments),
                    scenario.parallel, scenario.trials)
    args = (f"--audit-policy-file={policy}", f"--audit-log-path={audit}", "--audit-log-mode=batch",
            "--audit-log-batch-max-wait=1s", "--audit-log-maxsize=0", "--max-requests-inflight=800",
            "--max-mutating-requests-inflight=400")
    with ControlPlane(apiserver_args=args, workdir=workdir) as cluster:
        cluster.create_namespace(NAMESPACE)
        kubectl(cluster.admin_kubeconfig, "apply", "--server-side", "-f", str(ROOT / "crds"))
        kubectl(cluster.admin_kubeconfig, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        identity = OperatorIdentity(cluster, NAMESPACE, watch=[NAMESPACE], leader_election=False)
        kubeconfig = identity.install(workdir / "operator.kubeconfig")
        metrics_port = free_port()
        with KubeletProcess(Connection.of(cluster), NODES, scenario.durations) as kubelet:
            time.sleep(3)  # the nodes register
            log = (workdir / "operator.log").open("w")
            operator = subprocess.Popen(
                [sys.executable, "-m", "kubetune.cli", "operator", "--namespace", NAMESPACE, "--metrics-port",
                 str(metrics_port), "--liveness", f"http://127.0.0.1:{free_port()}/healthz", "--log-level", "warning",
                 # the report key lives in the operator's namespace, as the chart installs it
                 "--report-key-namespace", NAMESPACE, "--reports-port", str(free_port())],
                env={**os.environ, "KUBECONFIG": str(kubeconfig)}, stdout=log, stderr=subprocess.STDOUT)
            try:
                time.sleep(3)  # kopf starts and begins watching
                before = cluster.metrics()
                etcd_before = etcd_db_bytes(cluster)
                started = time.monotonic()
                for name, parallelism, max_trials in scenario.experiments:
                    cluster.request("POST", f"/apis/kubetune.io/v1alpha1/namespaces/{NAMESPACE}/experiments",
                                    experiment(name, parallelism, max_trials))
                while time.monotonic() - started < scenario.timeout:
                    if operator.poll() is not None:
                        raise RuntimeError(f"the operator exited ({operator.returncode}); see {workdir}/operator.log")
                    done, _ = _ended(cluster)
                    if done >= len(scenario.experiments):
                        break
                    time.sleep(1.0)
                result.seconds = time.monotonic() - started
                _, result.trials = _ended(cluster)
                after = cluster.metrics()
                result.etcd_bytes_per_trial = (etcd_db_bytes(cluster) - etcd_before) / max(result.trials, 1)
                result.trial_object_bytes = object_bytes(cluster, "trials")
                result.pod_object_bytes = object_bytes(cluster, "pods")
                operator_metrics = _scrape(metrics_port)
                result.usage = {name: asdict(Usage.of(cluster.pid(name))) for name in cluster.components}
                result.usage["operator"] = asdict(Usage.of(operator.pid))
                result.usage["test kubelet"] = asdict(Usage.of(kubelet.process.pid))
            finally:
                operator.terminate()
                operator.wait(30)
                log.close()
        result.max_running = kubelet.results.get("max_running", 0)
        result.kubelet_errors = kubelet.results.get("errors", [])
        time.sleep(2)  # the audit batch reaches the file
    trials = max(result.trials, 1)
    result.trials_per_second = result.trials / result.seconds if result.seconds else 0.0
    delta = request_counts(after) - request_counts(before)
    by_request: collections.Counter = collections.Counter()
    for (verb, resource, code), value in delta.items():
        by_request[f"{verb} {resource}"] += value
        if code == "429":
            result.http_429 += value
    result.apiserver_requests_per_trial = {k: v / trials for k, v in sorted(by_request.items()) if v >= 1}
    own = collections.Counter()
    for labels, value in samples(operator_metrics, "kubetune_api_requests_total"):
        own[f"{labels['verb']} {labels['resource']}"] += value
    result.operator_requests_per_trial = {k: v / trials for k, v in sorted(own.items())}
    result.operator_writes_per_trial = sum(v for k, v in own.items() if k.split()[0] in WRITES) / trials
    result.operator_throttled = sum(v for _, v in samples(operator_metrics, "kubetune_api_throttled_total"))
    rejected = "apiserver_flowcontrol_rejected_requests_total"
    result.apf_rejected = sum(v for _, v in samples(after, rejected)) - sum(v for _, v in samples(before, rejected))
    latencies = refill_latencies(audit, scenario) if audit.exists() else []
    if latencies:
        result.refill_p50 = float(np.percentile(latencies, 50))
        result.refill_p95 = float(np.percentile(latencies, 95))
        result.refills = len(latencies)
    return result


def _scrape(port: int) -> str:
    import urllib.request

    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except OSError:
        return ""


# -- the report -----------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the size")
    parser.add_argument("--only", nargs="*", help="run only these scenarios (by name)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "operator_scale.md")
    parser.add_argument("--report", action="store_true", help="only write the report again from the results JSON")
    args = parser.parse_args()
    json_path = args.out.with_suffix(".json")
    if args.report:
        write_report(args.out, json.loads(json_path.read_text()))
        return
    chosen = [s for s in scenarios(10 if args.quick else 1) if not args.only or s.name in args.only]
    previous = {r["name"]: r for r in json.loads(json_path.read_text())} if json_path.exists() and args.only else {}
    for scenario in chosen:
        print(f"scenario: {scenario.label}", flush=True)
        result = asdict(run_scenario(scenario))
        print(json.dumps(result, indent=1), flush=True)
        previous[scenario.name] = result
        order = [s.name for s in scenarios(1)]
        results = sorted(previous.values(), key=lambda r: order.index(r["name"]) if r["name"] in order else 99)
        json_path.write_text(json.dumps(results, indent=1) + "\n")
        write_report(args.out, results)


def write_report(path: Path, results: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Operator scale",
        "",
        f"`python -m benchmarks.operator_scale`, run {time.strftime('%Y-%m-%d')} on {platform.machine()}, "
        f"{os.cpu_count()} cores: the operator (`kubetune operator`, its own process, as the chart's "
        "ServiceAccount) against a real control plane built by `make control-plane` (kube-apiserver, etcd, "
        f"kube-scheduler, the garbage collector), with {NODES} fake nodes run by the test kubelet (its own "
        "process), everything on this one machine.",
        "",
        "| scenario | trial durations | trials | seconds | trials/s | most running at once | refill p50 | refill p95 "
        "| operator writes per trial | operator 429s | operator peak RSS | operator CPU s per trial |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        operator = r["usage"].get("operator", {})
        lines.append(
            f"| {r['label']} | {r['durations']} | {r['trials']} of {r['planned']} | {r['seconds']:.0f} | "
            f"{r['trials_per_second']:.1f} | {r['max_running']} | {_ms(r['refill_p50'])} | {_ms(r['refill_p95'])} | "
            f"{r['operator_writes_per_trial']:.2f} | {r['operator_throttled']:.0f} | "
            f"{operator.get('rss_mib', 0):.0f} MiB | "
            f"{operator.get('cpu_seconds', 0) / max(r['trials'], 1) * 1000:.1f} ms |")
    lines += ["", "## Targets", "", *targets(results), "", "## Evidence", "",
              "Where the CPU went (seconds over the scenario) and peak RSS, per component:", "",
              "| scenario | " + " | ".join(COMPONENTS) + " |", "|---|" + "---:|" * len(COMPONENTS)]
    for r in results:
        usage = [r["usage"].get(c, {}) for c in COMPONENTS]
        cells = [f"{u.get('cpu_seconds', 0):.0f} s, {u.get('rss_mib', 0):.0f} MiB" for u in usage]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    lines += ["", "etcd and object sizes: growth of etcd's database in use per trial, and the JSON size of a Trial "
              "and of a Pod as the API serves them:", ""]
    for r in results:
        lines.append(f"- {r['label']}: {r['etcd_bytes_per_trial'] / 1024:.1f} KiB of etcd per trial; Trial "
                     f"{r['trial_object_bytes'] / 1024:.1f} KiB, Pod {r['pod_object_bytes'] / 1024:.1f} KiB; "
                     f"429s: {r['http_429']:.0f} answered by kube-apiserver, {r['apf_rejected']:.0f} rejected by "
                     f"API Priority and Fairness, {r['operator_throttled']:.0f} retried by the operator")
    lines += ["", "API requests per trial, by verb and resource, as kube-apiserver counted them "
              "(`apiserver_request_total`, every client: the operator, the kubelet, the scheduler, the garbage "
              "collector):", ""]
    for r in results:
        counted = r["apiserver_requests_per_trial"].items()
        lines.append(f"- {r['label']}: " + ", ".join(f"{k} {v:.2f}" for k, v in counted))
    lines += ["", "The operator's own requests per trial (`kubetune_api_requests_total`):", ""]
    for r in results:
        counted = r["operator_requests_per_trial"].items()
        lines.append(f"- {r['label']}: " + ", ".join(f"{k} {v:.2f}" for k, v in counted))
    lines.append("")
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


COMPONENTS = ("operator", "kube-apiserver", "etcd", "kube-scheduler", "kube-controller-manager", "test kubelet")
CORES = os.cpu_count() or 1


def targets(results: list[dict]) -> list[str]:
    """Each target, met or not, and for a miss the busiest component with the evidence (CPU use)."""
    by_name = {r["name"]: r for r in results}
    lines = []

    def check(name: str, what: str, value: str, met: bool, why: str | None = None) -> None:
        verdict = "met" if met else f"**missed**; {why or bottleneck(by_name[name])}"
        lines.append(f"- {what}: {value} ({by_name[name]['label']}): {verdict}.")

    if "one-experiment" in by_name:
        r = by_name["one-experiment"]
        check("one-experiment", "refill p95 under 1 s at 2,000 parallel with realistic durations",
              _ms(r["refill_p95"]), r["refill_p95"] < 1.0, refill_evidence(r, by_name))
    if "instant" in by_name:
        r = by_name["instant"]
        check("instant", "at least 100 trials/s with instant trials", f"{r['trials_per_second']:.1f} trials/s",
              r["trials_per_second"] >= 100)
    for r in results:
        check(r["name"], "at most 4 operator writes per trial", f"{r['operator_writes_per_trial']:.2f}",
              r["operator_writes_per_trial"] <= 4.0, writes_evidence(r))
    if "ten-thousand-running" in by_name:
        r = by_name["ten-thousand-running"]
        rss = r["usage"].get("operator", {}).get("rss_mib", 0)
        check("ten-thousand-running", "operator RSS under 500 MB at 10,000 running",
              f"{rss:.0f} MiB with {r['max_running']} running at once", rss < 500 and r["max_running"] >= 10_000)
    throttled = ", ".join(f"{r['operator_throttled']:.0f} ({r['name']})" for r in results)
    lines.append(f"- no 429 storm: the operator got {throttled} 429s.")
    return lines


def demanded_rate(name: str) -> float | None:
    """Trials ending per second at steady state (parallel trials over their median duration)."""
    for scenario in scenarios(1):
        if scenario.name == name and scenario.durations.median:
            return sum(parallel for _, parallel, _ in scenario.experiments) / scenario.durations.median
    return None


def refill_evidence(result: dict, by_name: dict[str, dict]) -> str:
    """Why refills wait: trials end faster than the machine turns trials over (measured by the stress case)."""
    demand = demanded_rate(result["name"])
    if demand is None or "instant" not in by_name:
        return bottleneck(result)
    capacity = by_name["instant"]["trials_per_second"]
    against = "more than" if demand > capacity else f"{demand / capacity:.0%} of"
    text = (f"throughput: at steady state {demand:.1f} trials end per second, {against} the "
            f"{capacity:.1f} trials/s this machine's control plane and operator sustain at most (the instant "
            f"scenario, {bottleneck(by_name['instant'])}), so ended trials queue for a new pod and the queue "
            f"is the latency (this scenario, with its 2,000 pods running, turned over "
            f"{result['trials_per_second']:.0f} trials/s)")
    calmer = by_name.get("three-minute-trials")
    if calmer is not None:
        text += (f"; with 3-minute trials ({demanded_rate('three-minute-trials'):.0f} ending per second) the p95 "
                 f"is {_ms(calmer['refill_p95'])}")
    return text


def writes_evidence(result: dict) -> str:
    """Which of the operator's own requests make up its writes per trial."""
    writes = {request: count for request, count in result["operator_requests_per_trial"].items()
              if request.split()[0] in WRITES and count >= 0.005}
    parts = ", ".join(f"{request} {count:.2f}" for request, count in sorted(writes.items()))
    return (f"the writes are {parts}: a Trial, its Pod, its status marked Running and its result (4), plus the "
            "Experiment's status, patched when it changed and at most every 2 s per experiment, which adds "
            "most where experiments are small")


def bottleneck(result: dict) -> str:
    """The machine's CPU use over the scenario, and which component used the most of it."""
    usage = {name: u.get("cpu_seconds", 0.0) for name, u in result["usage"].items()}
    total = sum(usage.values())
    busy = total / max(result["seconds"] * CORES, 1e-9)
    top = sorted(usage.items(), key=lambda item: -item[1])[:3]
    trials = max(result["trials"], 1)
    shares = ", ".join(f"{name} {seconds / total:.0%} ({seconds / trials * 1000:.0f} ms per trial)"
                       for name, seconds in top)
    saturated = "saturated" if busy >= 0.85 else "not saturated"
    return (f"the {CORES} cores were {busy:.0%} busy on average ({saturated}); of the CPU used, {shares}")


def _ms(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds * 1000:.0f} ms"


if __name__ == "__main__":
    main()
