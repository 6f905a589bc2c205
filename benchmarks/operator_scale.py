"""Operator scale on a real control plane: kube-apiserver, etcd, kube-scheduler and the garbage collector
(built by ``make control-plane``), 200 fake nodes run by the test kubelet (its own process), and the operator
(``kubetune operator``, its own process, as the Helm chart's ServiceAccount and RBAC, so API Priority and
Fairness treats it as it would in a cluster).

Every experiment searches a 6-parameter space (``x0`` ... ``x5`` on the unit cube) whose objective, Hartmann-6,
the test kubelet computes from each pod's ``KUBETUNE_PARAMS`` and reports as the trial's metric. Scenarios:
one experiment of 2,000 parallel trials (5,000 in all) and 100 experiments of 20 parallel trials, both with
trials that run about a minute (lognormal), each run with ``algorithm: gp`` and then with ``random`` (the
contrast, in the same run); one experiment of 10,000 parallel trials with gp; the first again with trials of
about three minutes (gp and random); 10,000 trial pods running at once across 50 experiments; and the first
with trials that end at once (the stress case). Reported per scenario and algorithm:
trials/s; API requests per trial by verb and resource (``apiserver_request_total`` from kube-apiserver's
``/metrics``) and the operator's own, writes separately; 429s (the operator's retries and APF's
rejections); peak RSS and CPU seconds of every component (the operator's suggestion worker beside it); etcd
bytes per trial; the suggestion calls, their size and time, the reconciliation passes and the event loop's
lag (from the operator's ``/metrics``); and slot refill latency p50/p95 from kube-apiserver's own
timestamps: its audit log records, to the microsecond, when the kubelet's status patch that ended a trial
and the operator's create of the next pod completed (``creationTimestamp`` and ``finishedAt`` only have
whole seconds). With ``--profile`` py-spy samples the operator throughout (see
:mod:`benchmarks.operator_profile`).

    python -m benchmarks.operator_scale [--quick] [--only NAME ...] [--algorithms gp random] [--profile]
                                        [--out benchmarks/results/operator_scale.md] [--report]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import multiprocessing
import os
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

from cluster import Behaviour, Connection, ControlPlane, FakeNode, OperatorIdentity, TestKubelet, hartmann6  # noqa: E402
from cluster.control_plane import free_port  # noqa: E402
from cluster.identity import kubectl  # noqa: E402

from benchmarks.operator_profile import Profiler, summarize  # noqa: E402
from benchmarks.operator_scale_report import PROFILES, write_report  # noqa: E402

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


ALGORITHMS = ("gp", "random")


@dataclass
class Scenario:
    name: str
    label: str
    experiments: list[tuple[str, int, int]]  # name, parallelism, maxTrials
    durations: Durations
    timeout: float = 1800.0
    algorithms: tuple[str, ...] = ("random",)  # each runs the whole scenario, one after the other

    @property
    def parallel(self) -> int:
        return sum(p for _, p, _ in self.experiments)

    @property
    def trials(self) -> int:
        return sum(m for _, _, m in self.experiments)


def scenarios(scale: int) -> list[Scenario]:
    minute = Durations(median=60.0, sigma=0.3)
    # all trials outlast the ramp (about 600 s for 10,000 pods on 2 cores, a tenth of it at a tenth of the size)
    wide = Durations(low=900.0, high=960.0) if scale == 1 else Durations(low=120.0, high=130.0)
    return [
        Scenario("one-experiment", "one experiment, 2,000 parallel, ~60 s trials",
                 [("big", 2000 // scale, 5000 // scale)], minute, algorithms=ALGORITHMS),
        Scenario("hundred-experiments", "100 experiments x 20 parallel, ~60 s trials",
                 [(f"small-{i}", 20, 40) for i in range(100 // scale)], minute, algorithms=ALGORITHMS),
        # 2,000 refills asked with 10,000 trials in flight
        Scenario("ten-thousand-gp", "one experiment, 10,000 parallel (gp)",
                 [("huge", 10_000 // scale, 12_000 // scale)], wide, timeout=3600.0, algorithms=("gp",)),
        # the same with fewer trials ending per second than the control plane can turn over on this machine
        Scenario("three-minute-trials", "one experiment, 2,000 parallel, ~3 min trials",
                 [("steady", 2000 // scale, 5000 // scale)], Durations(median=180.0, sigma=0.3),
                 algorithms=ALGORITHMS),
        Scenario("ten-thousand-running", "10,000 trial pods running at once (50 experiments x 200)",
                 [(f"wide-{i}", 200, 200) for i in range(50 // scale)], wide, timeout=2400.0),
        Scenario("instant", "one experiment, 2,000 parallel, instant trials (stress)",
                 [("instant", 2000 // scale, 5000 // scale)], Durations()),
    ]


def experiment(name: str, parallelism: int, max_trials: int, algorithm: str = "random") -> dict:
    return {
        "apiVersion": "kubetune.io/v1alpha1", "kind": "Experiment", "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "objective": {"metric": "loss", "direction": "minimize"},
            "parameters": [{"name": f"x{i}", "type": "double", "min": 0, "max": 1} for i in range(6)],
            "algorithm": {"name": algorithm}, "seed": 0,
            "parallelism": parallelism, "maxTrials": max_trials, "maxFailedTrials": 10,
            "trialTemplate": {"spec": {"containers": [
                {"name": "trial", "image": "python:3.12-slim", "command": ["python", "train.py"],
                 "args": [f"--x{i}=${{params.x{i}}}" for i in range(6)]}]}},
        },
    }


# -- the kubelet in its own process --------------------------------------------------------------------
def _kubelet_main(connection: Connection, nodes: int, durations: Durations, stop, results) -> None:
    import asyncio

    kubelet = TestKubelet(connection, [FakeNode(f"node-{i:03d}") for i in range(nodes)],
                          behaviour=lambda pod: Behaviour(seconds=durations.of(pod["metadata"]["name"]),
                                                          objective=hartmann6),
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

    @classmethod
    def of_children(cls, pid: int) -> Usage:
        """Summed over the processes ``pid`` started (the operator's suggestion worker)."""
        usages = [cls.of(child) for child in children(pid)]
        return cls(sum(u.rss_mib for u in usages), sum(u.cpu_seconds for u in usages))


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


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


def _experiment_statuses(cluster: ControlPlane) -> list[dict]:
    """The Experiments' status. A busy API server may answer slowly: the benchmark's own reads are tried again
    rather than ending the scenario."""
    for attempt in range(6):
        try:
            items = cluster.get(f"/apis/kubetune.io/v1alpha1/namespaces/{NAMESPACE}/experiments")["items"]
            return [item.get("status") or {} for item in items]
        except (TimeoutError, OSError):
            if attempt == 5:
                raise
            time.sleep(5)
    return []


def _ended(statuses: list[dict]) -> tuple[int, int]:
    """(experiments ended, trials succeeded so far)."""
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
    algorithm: str = "random"
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
    operator_cpu_at_start: float = 0.0  # its start (imports, the first connections) before the experiments came
    etcd_bytes_per_trial: float = 0.0
    trial_object_bytes: float = 0.0
    pod_object_bytes: float = 0.0
    kubelet_errors: list[str] = field(default_factory=list)
    # from the operator's /metrics
    suggestion_calls: float = 0.0
    suggestions: float = 0.0
    suggestion_seconds: float = 0.0  # summed over the calls
    suggestion_slowest: float = 0.0  # the upper bound of the histogram bucket of the slowest call
    passes: float = 0.0
    pass_seconds: float = 0.0  # summed over the passes
    lag: dict[str, float] = field(default_factory=dict)  # the event loop's lag: ticks, mean, p99, over 100 ms...
    best: float = float("nan")  # the best objective value of the experiments (Hartmann-6: -3.32237 at best)
    load: list[float] = field(default_factory=list)  # the machine's 1-minute load average at the start and the end
    profile: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return f"{self.name}/{self.algorithm}"


def run_scenario(scenario: Scenario, algorithm: str | None = None, profile: bool = False) -> Result:
    algorithm = algorithm or scenario.algorithms[0]
    workdir = Path(tempfile.mkdtemp(prefix=f"kubetune-scale-{scenario.name}-{algorithm}-"))
    policy = workdir / "audit-policy.yaml"
    policy.write_text(yaml.safe_dump(AUDIT_POLICY))
    audit = workdir / "audit.log"
    result = Result(scenario.name, scenario.label, scenario.durations.describe(), len(scenario.experiments),
                    scenario.parallel, scenario.trials, algorithm)
    args = (f"--audit-policy-file={policy}", f"--audit-log-path={audit}", "--audit-log-mode=batch",
            "--audit-log-batch-max-wait=1s", "--audit-log-maxsize=0", "--max-requests-inflight=800",
            "--max-mutating-requests-inflight=400")
    with ControlPlane(apiserver_args=args, workdir=workdir) as cluster:
        cluster.create_namespace(NAMESPACE)
        kubectl(cluster.admin_kubeconfig, "apply", "--server-side", "-f", str(ROOT / "crds"))
        kubectl(cluster.admin_kubeconfig, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        _wait_for_storage(cluster)
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
            profiler = Profiler(operator.pid, workdir / "profile.txt") if profile else contextlib.nullcontext()
            try:
                _wait_until_serving(metrics_port, operator, workdir)
                before = cluster.metrics()
                etcd_before = etcd_db_bytes(cluster)
                result.operator_cpu_at_start = Usage.of(operator.pid).cpu_seconds
                result.load.append(os.getloadavg()[0])
                with profiler:
                    started = time.monotonic()
                    for name, parallelism, max_trials in scenario.experiments:
                        cluster.request("POST", f"/apis/kubetune.io/v1alpha1/namespaces/{NAMESPACE}/experiments",
                                        experiment(name, parallelism, max_trials, algorithm))
                    statuses = _wait_for_the_end(cluster, scenario, operator, workdir)
                    result.seconds = time.monotonic() - started
                result.load.append(os.getloadavg()[0])
                _, result.trials = _ended(statuses)
                result.best = min((s["best"]["value"] for s in statuses if s.get("best")), default=float("nan"))
                after = cluster.metrics()
                result.etcd_bytes_per_trial = (etcd_db_bytes(cluster) - etcd_before) / max(result.trials, 1)
                result.trial_object_bytes = object_bytes(cluster, "trials")
                result.pod_object_bytes = object_bytes(cluster, "pods")
                operator_metrics = _scrape(metrics_port)
                result.usage = {name: asdict(Usage.of(cluster.pid(name))) for name in cluster.components}
                result.usage["operator"] = asdict(Usage.of(operator.pid))
                result.usage["suggestion worker"] = asdict(Usage.of_children(operator.pid))
                result.usage["test kubelet"] = asdict(Usage.of(kubelet.process.pid))
            finally:
                operator.terminate()
                operator.wait(30)
                log.close()
        result.max_running = kubelet.results.get("max_running", 0)
        result.kubelet_errors = kubelet.results.get("errors", [])
        time.sleep(2)  # the audit batch reaches the file
    _count(result, before, after, operator_metrics)
    _read_operator_metrics(result, operator_metrics)
    latencies = refill_latencies(audit, scenario) if audit.exists() else []
    if latencies:
        result.refill_p50 = float(np.percentile(latencies, 50))
        result.refill_p95 = float(np.percentile(latencies, 95))
        result.refills = len(latencies)
    if profile and (workdir / "profile.txt").exists():
        result.profile = summarize(workdir / "profile.txt")
    return result


def _wait_for_the_end(cluster: ControlPlane, scenario: Scenario, operator: subprocess.Popen, workdir: Path
                      ) -> list[dict]:
    """Waits until every experiment ended (or the scenario's timeout); their last statuses."""
    started = time.monotonic()
    statuses: list[dict] = []
    while time.monotonic() - started < scenario.timeout:
        if operator.poll() is not None:
            raise RuntimeError(f"the operator exited ({operator.returncode}); see {workdir}/operator.log")
        statuses = _experiment_statuses(cluster)
        if _ended(statuses)[0] >= len(scenario.experiments):
            break
        time.sleep(1.0)
    return statuses


def _count(result: Result, before: str, after: str, operator_metrics: str) -> None:
    """Requests per trial, as kube-apiserver and the operator counted them, and the 429s."""
    trials = max(result.trials, 1)
    result.trials_per_second = result.trials / result.seconds if result.seconds else 0.0
    delta = request_counts(after) - request_counts(before)
    by_request: collections.Counter = collections.Counter()
    for (verb, resource, code), value in delta.items():
        by_request[f"{verb} {resource}"] += value
        if code == "429":
            result.http_429 += value
    result.apiserver_requests_per_trial = {k: v / trials for k, v in sorted(by_request.items()) if v >= 1}
    own: collections.Counter = collections.Counter()
    for labels, value in samples(operator_metrics, "kubetune_api_requests_total"):
        own[f"{labels['verb']} {labels['resource']}"] += value
    result.operator_requests_per_trial = {k: v / trials for k, v in sorted(own.items())}
    result.operator_writes_per_trial = sum(v for k, v in own.items() if k.split()[0] in WRITES) / trials
    result.operator_throttled = sum(v for _, v in samples(operator_metrics, "kubetune_api_throttled_total"))
    rejected = "apiserver_flowcontrol_rejected_requests_total"
    result.apf_rejected = sum(v for _, v in samples(after, rejected)) - sum(v for _, v in samples(before, rejected))


def _read_operator_metrics(result: Result, text: str) -> None:
    """The suggestion calls, the passes and the event loop's lag, from the operator's /metrics."""
    def total(name: str) -> float:
        return sum(v for _, v in samples(text, name))

    result.suggestion_calls = total("kubetune_suggestion_seconds_count")
    result.suggestion_seconds = total("kubetune_suggestion_seconds_sum")
    result.suggestions = total("kubetune_suggestions_total")
    result.suggestion_slowest = _slowest(samples(text, "kubetune_suggestion_seconds_bucket"))
    result.passes = total("kubetune_reconcile_seconds_count")
    result.pass_seconds = total("kubetune_reconcile_seconds_sum")
    buckets = samples(text, "kubetune_event_loop_lag_seconds_bucket")
    ticks = total("kubetune_event_loop_lag_seconds_count")
    if ticks:
        result.lag = {"ticks": ticks, "mean": total("kubetune_event_loop_lag_seconds_sum") / ticks,
                      "p99": _quantile(buckets, 0.99), "slowest": _slowest(buckets),
                      "over_100ms": 1 - _share_within(buckets, 0.1), "over_1s": 1 - _share_within(buckets, 1.0)}


def _cumulative(buckets: list[tuple[dict[str, str], float]]) -> list[tuple[float, float]]:
    return sorted((float(labels["le"]), value) for labels, value in buckets)


def _quantile(buckets: list[tuple[dict[str, str], float]], q: float) -> float:
    """The upper bound of the bucket holding the ``q`` quantile (a histogram knows no finer)."""
    counts = _cumulative(buckets)
    total = counts[-1][1] if counts else 0.0
    return next((bound for bound, count in counts if count >= q * total), float("nan"))


def _slowest(buckets: list[tuple[dict[str, str], float]]) -> float:
    counts = _cumulative(buckets)
    total = counts[-1][1] if counts else 0.0
    return next((bound for bound, count in counts if count >= total), float("nan")) if total else 0.0


def _share_within(buckets: list[tuple[dict[str, str], float]], bound: float) -> float:
    counts = dict(_cumulative(buckets))
    total = counts.get(float("inf"), 0.0)
    return counts.get(bound, 0.0) / total if total else 1.0


def _wait_for_storage(cluster: ControlPlane) -> None:
    """Waits until the API server lists the kubetune resources: right after their CRDs are established it may
    answer 429 ("storage is (re)initializing") for a while, which a cluster whose CRDs were installed long
    before never shows, and which would be counted as the operator's 429s."""
    import urllib.error

    deadline = time.monotonic() + 60
    for kind in ("experiments", "trials"):
        while True:
            try:
                cluster.get(f"/apis/kubetune.io/v1alpha1/namespaces/{NAMESPACE}/{kind}?limit=1")
                break
            except urllib.error.HTTPError as exc:
                if exc.code != 429 or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def _wait_until_serving(port: int, operator: subprocess.Popen, workdir: Path) -> None:
    """Waits until the operator serves /metrics (kopf's startup is done: its imports, the first connections),
    then a moment for kopf to begin watching, so that its start is not counted as the scenario's work."""
    deadline = time.monotonic() + 120
    while not _scrape(port) and time.monotonic() < deadline:
        if operator.poll() is not None:
            raise RuntimeError(f"the operator exited ({operator.returncode}); see {workdir}/operator.log")
        time.sleep(0.5)
    time.sleep(3)


def _scrape(port: int) -> str:
    import urllib.request

    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    except OSError:
        return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the size")
    parser.add_argument("--only", nargs="*", help="run only these scenarios (by name)")
    parser.add_argument("--algorithms", nargs="*", choices=ALGORITHMS, help="run only these algorithms")
    parser.add_argument("--profile", action="store_true", help="sample the operator with py-spy throughout")
    parser.add_argument("--profile-as", choices=("before", "after"),
                        help="keep the profile (of the first scenario run) for the report's before/after tables")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "operator_scale.md")
    parser.add_argument("--report", action="store_true", help="only write the report again from the results JSON")
    args = parser.parse_args()
    json_path = args.out.with_suffix(".json")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    if args.report:
        write_report(args.out, json.loads(json_path.read_text()))
        return
    chosen = [s for s in scenarios(10 if args.quick else 1) if not args.only or s.name in args.only]
    partial = args.only or args.algorithms
    previous = {_key(r): r for r in json.loads(json_path.read_text())} if json_path.exists() and partial else {}
    for scenario in chosen:
        for algorithm in scenario.algorithms:
            if args.algorithms and algorithm not in args.algorithms:
                continue
            print(f"scenario: {scenario.label}, {algorithm}", flush=True)
            result = run_scenario(scenario, algorithm, profile=args.profile)
            print(json.dumps(asdict(result), indent=1), flush=True)
            previous[result.key] = {**asdict(result), "quick": args.quick, "date": time.strftime("%Y-%m-%d")}
            if args.profile_as and result.profile:
                keep_profile(args.out.parent / PROFILES, args.profile_as, result, args.quick)
                args.profile_as = None
            results = sorted(previous.values(), key=_order)
            json_path.write_text(json.dumps(results, indent=1) + "\n")
            write_report(args.out, results)


def keep_profile(path: Path, key: str, result: Result, quick: bool) -> None:
    """Keeps the operator's profile of ``result`` as the ``before`` or ``after`` one of the report."""
    assert result.profile is not None
    profiles = json.loads(path.read_text()) if path.exists() else {}
    command = (f"python -m benchmarks.operator_scale{' --quick' if quick else ''} --only {result.name} "
               f"--algorithms {result.algorithm} --profile")
    profiles[key] = {"note": f"{result.label}, {result.algorithm}{', --quick' if quick else ''}, "
                             f"{time.strftime('%Y-%m-%d')}", "command": command,
                     "samples": result.profile["operator"]["samples"], "profile": result.profile}
    path.write_text(json.dumps(profiles, indent=1) + "\n")


def _key(result: dict) -> str:
    return f"{result['name']}/{result.get('algorithm', 'random')}"


def _order(result: dict) -> tuple[int, int]:
    names = [s.name for s in scenarios(1)]
    name = names.index(result["name"]) if result["name"] in names else 99
    algorithm = ALGORITHMS.index(result.get("algorithm", "random"))
    return name, algorithm


if __name__ == "__main__":
    main()
