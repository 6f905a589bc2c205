"""The operator's Prometheus metrics: counted by a real reconciliation run, served over HTTP and scraped."""

from __future__ import annotations

import asyncio
import urllib.request

from fake_cluster import FakeCluster, FakeKubelet
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from test_reconcile import drive, experiment_document

from kubetune.core.cluster.gpu_sharing import GpuSharing
from kubetune.operator import metrics as metrics_module
from kubetune.operator.metrics import CountingApi, OperatorMetrics
from kubetune.operator.reconcile import Reconciler

DOCUMENTED = {"kubetune_experiments", "kubetune_trials_running", "kubetune_trials_created",
              "kubetune_trials_finished", "kubetune_suggestion_seconds", "kubetune_suggestions",
              "kubetune_reconcile_errors", "kubetune_api_requests", "kubetune_api_throttled",
              "kubetune_reconcile_seconds", "kubetune_event_loop_lag_seconds",
              "kubetune_suggestion_worker_restarts", "kubetune_suggestion_wait_seconds", "kubetune_events"}


def scrape(port: int) -> dict[tuple, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_a_run_is_counted_and_served():
    metrics = OperatorMetrics(CollectorRegistry())
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=6, parallelism=2))
    failing = FakeKubelet(cluster, behaviour=lambda params, pod: "fail" if pod["metadata"]["name"] == "demo-1"
                          else "sdk")
    reconciler = Reconciler(CountingApi(cluster, metrics), GpuSharing(), metrics=metrics)
    result = asyncio.run(drive(reconciler, cluster, failing))
    server = metrics.serve(0, "127.0.0.1")
    try:
        samples = scrape(server.server_port)
    finally:
        server.shutdown()
    families = {name.removesuffix("_total").removesuffix("_count").removesuffix("_sum").removesuffix("_bucket")
                .removesuffix("_created") for name, _ in samples}
    assert families >= DOCUMENTED
    counts = result.status["trials"]
    assert samples["kubetune_trials_created_total", ()] == 6
    assert samples["kubetune_trials_finished_total", (("state", "Succeeded"),)] == counts["succeeded"]
    assert counts["failed"] == 1
    assert samples["kubetune_trials_finished_total", (("state", "Failed"),)] == 1
    assert samples["kubetune_experiments", (("phase", "Succeeded"),)] == 1
    assert samples["kubetune_experiments", (("phase", "Running"),)] == 0
    assert samples["kubetune_trials_running", ()] == 0
    assert samples["kubetune_suggestions_total", ()] == 6
    assert samples["kubetune_suggestion_seconds_count", ()] >= 3  # the first fill, then one call per freed slot
    assert samples["kubetune_api_requests_total", (("outcome", "ok"), ("resource", "pods"), ("verb", "create"))] == 6
    # the first trial's pod, asked of the API server once before any trial was created
    assert samples["kubetune_api_requests_total", (("outcome", "ok"), ("resource", "pods"), ("verb", "dry-run"))] == 1
    assert samples["kubetune_reconcile_errors_total", ()] == 0


def test_the_documented_table_lists_every_metric():
    registry = CollectorRegistry()
    OperatorMetrics(registry)
    names = {metric.name for metric in registry.collect()}
    assert names == DOCUMENTED
    for name in names:
        assert f"``{name}" in metrics_module.__doc__


def test_experiments_leave_the_gauges_when_deleted():
    metrics = OperatorMetrics(CollectorRegistry())
    metrics.experiment_seen("a", "Running", 3)
    metrics.experiment_seen("b", "Running", 2)
    metrics.experiment_seen("a", "Succeeded", 0)
    assert metrics.experiments.labels("Running")._value.get() == 1
    assert metrics.trials_running._value.get() == 2
    metrics.experiment_gone("b")
    assert metrics.experiments.labels("Running")._value.get() == 0
    assert metrics.trials_running._value.get() == 0


def test_deleted_experiments_leave_the_gauges_of_a_running_operator(namespace):
    from cluster import Behaviour, free_port
    from operator_cluster import ended, experiment, run_operator, wait_for

    port = free_port()
    broken = experiment(name="broken")
    broken["spec"]["parameters"][0].update(min=10, max=1)

    def experiments_gauge() -> dict[str, float]:
        return {dict(labels)["phase"]: value for (name, labels), value in scrape(port).items()
                if name == "kubetune_experiments"}

    with namespace.kubelet(behaviour=lambda pod: Behaviour(seconds=0.2)), \
            run_operator(namespace, "--metrics-port", str(port)):
        namespace.apply(experiment(name="done", maxTrials=2))
        namespace.apply(broken)
        ended(namespace, "done")
        ended(namespace, "broken")
        assert wait_for(lambda: (g := experiments_gauge()).get("Succeeded") == 1 and g.get("Failed") == 1 and g,
                        what="both experiments in the gauge")
        namespace.kubectl("delete", "experiments", "--all")
        wait_for(lambda: sum(experiments_gauge().values()) == 0, what="the deleted experiments to leave the gauge")
