"""End to end: kubectl applies the CRDs and an Experiment to the emulated API server, the real operator
(kopf, in a background thread) runs it, a test kubelet plays the pods, and kubectl reads the results."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from kopf.testing import KopfRunner
from kube_emulator import EmulatedKubelet, RunningEmulator
from prometheus_client.parser import text_string_to_metric_families

from conftest import manifest

ROOT = Path(__file__).parent.parent
KUBECTL = shutil.which("kubectl", path=str(ROOT / ".tools")) or shutil.which("kubectl")
OPERATOR = str(Path(__file__).parent / "operator_app.py")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is fetched by `make test` (scripts/fetch_tools.py)")


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    with RunningEmulator() as emulator:
        kubeconfig = tmp_path / "kubeconfig"
        emulator.kubeconfig(kubeconfig)
        monkeypatch.setenv("KUBETUNE_TEST_API", emulator.url)

        def kubectl(*args: str, check: bool = True) -> str:
            result = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), *args], capture_output=True,
                                    text=True, timeout=60)
            if check and result.returncode != 0:
                raise AssertionError(f"kubectl {' '.join(args)}: {result.stderr}")
            return result.stdout

        kubectl("apply", "--validate=false", "-f", str(ROOT / "crds"))
        emulator.kubectl = kubectl
        emulator.tmp = tmp_path
        yield emulator


def operator():
    return KopfRunner(["run", "--standalone", "--namespace", "default", OPERATOR])


def apply(cluster, document: dict) -> None:
    path = cluster.tmp / f"{document['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(document))
    cluster.kubectl("apply", "--validate=false", "-f", str(path))


def status(cluster, name: str) -> dict:
    out = cluster.kubectl("get", "experiment", name, "-o", "json")
    return json.loads(out).get("status") or {}


def wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def experiment(name="demo", **spec):
    document = manifest(**{"maxTrials": 6, "parallelism": 2, "algorithm": {"name": "random"}, **spec})
    document["metadata"]["name"] = name
    document["spec"]["trialTemplate"]["spec"]["containers"][0].update(command=["python", "train.py"])
    return document


def trials(cluster) -> list[dict]:
    return json.loads(cluster.kubectl("get", "trials", "-o", "json"))["items"]


def test_experiment_applied_with_kubectl_runs_to_succeeded(cluster):
    with operator() as runner, EmulatedKubelet(cluster.url) as kubelet:
        apply(cluster, experiment())
        final = wait_for(lambda: (s := status(cluster, "demo")).get("phase") == "Succeeded" and s)
    assert runner.exception is None
    items = trials(cluster)
    assert sorted(t["metadata"]["name"] for t in items) == [f"demo-{i}" for i in range(6)]
    assert all(t["status"]["phase"] == "Succeeded" for t in items)
    assert kubelet.max_running <= 2
    assert final["trials"]["succeeded"] == 6 and final["reason"] == "MaxTrialsReached"
    best = min(items, key=lambda t: t["status"]["value"])
    assert final["best"]["trial"] == best["metadata"]["name"]
    table = cluster.kubectl("get", "trials")
    assert "demo-5" in table
    pods = json.loads(cluster.kubectl("get", "pods", "-o", "json"))["items"]
    assert {p["metadata"]["ownerReferences"][0]["kind"] for p in pods} == {"Trial"}


def test_bad_manifest_ends_failed_with_the_reason(cluster):
    document = experiment(name="broken")
    document["spec"]["parameters"][0].update(min=10, max=1)
    with operator() as runner:
        apply(cluster, document)
        final = wait_for(lambda: (s := status(cluster, "broken")).get("phase") == "Failed" and s)
    assert runner.exception is None
    assert final["reason"] == "InvalidSpec"
    assert "spec.parameters[0]: max (1) must be greater than min (10)" in final["message"]
    assert trials(cluster) == []
    events = json.loads(cluster.kubectl("get", "events", "-o", "json"))["items"]
    assert any(e.get("reason") == "InvalidSpec" and "must be greater than min" in e.get("message", "")
               for e in events)


def test_operator_killed_mid_experiment_resumes_without_duplicates(cluster):
    with EmulatedKubelet(cluster.url, interval=0.3):
        with operator():
            apply(cluster, experiment(maxTrials=8, parallelism=2, algorithm={"name": "gp"}))
            wait_for(lambda: sum(t.get("status", {}).get("phase") == "Succeeded" for t in trials(cluster)) >= 3)
        before = {t["metadata"]["name"]: t["status"].get("value") for t in trials(cluster)
                  if t.get("status", {}).get("phase") == "Succeeded"}
        with operator() as runner:
            final = wait_for(lambda: (s := status(cluster, "demo")).get("phase") == "Succeeded" and s)
    assert runner.exception is None
    items = trials(cluster)
    assert sorted(t["metadata"]["name"] for t in items) == sorted(f"demo-{i}" for i in range(8))
    after = {t["metadata"]["name"]: t["status"].get("value") for t in items}
    assert all(after[name] == value for name, value in before.items())
    assert final["trials"]["created"] == 8
    assert len({json.dumps(t["spec"]["params"], sort_keys=True) for t in items}) == 8


def test_operator_command_line_refuses_to_run_without_a_scope():
    result = subprocess.run([sys.executable, "-m", "kubetune.cli", "operator"], capture_output=True, text=True,
                            env={**os.environ})
    assert result.returncode == 2 and "--namespace" in result.stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def replica(cluster, identity: str, metrics_port: int) -> subprocess.Popen:
    """``kubetune operator --leader-election`` in its own process, as one replica of a Deployment."""
    log = (cluster.tmp / f"{identity}.log").open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "kubetune.cli", "operator", "--namespace", "default", "--leader-election",
         "--identity", identity, "--lease-namespace", "default", "--lease-duration", "3",
         "--liveness", "http://127.0.0.1:0/healthz", "--metrics-port", str(metrics_port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "KUBECONFIG": str(cluster.tmp / "kubeconfig")})


def log_of(cluster, identity: str) -> str:
    return (cluster.tmp / f"{identity}.log").read_text()


def lease_holder(cluster) -> str | None:
    lease = cluster.emulator.get("leases", "default", "kubetune-operator")
    return ((lease or {}).get("spec") or {}).get("holderIdentity")


def test_two_replicas_only_the_lease_holder_acts_and_the_standby_takes_over(cluster):
    first_port, second_port = free_port(), free_port()
    first = replica(cluster, "first", first_port)
    second = None
    try:
        wait_for(lambda: lease_holder(cluster) == "first")
        second = replica(cluster, "second", second_port)
        wait_for(lambda: "standing by: Lease default/kubetune-operator is held by first" in log_of(cluster, "second"))
        with EmulatedKubelet(cluster.url, interval=0.3):
            apply(cluster, experiment(maxTrials=8, parallelism=2, algorithm={"name": "gp"}))
            wait_for(lambda: sum(t.get("status", {}).get("phase") == "Succeeded" for t in trials(cluster)) >= 3)
            assert "leading" not in log_of(cluster, "second")
            assert "experiment default/demo" not in log_of(cluster, "second")
            assert "experiment default/demo: following it" in log_of(cluster, "first")
            first.kill()  # no chance to release the Lease: the standby waits for it to expire
            first.wait(10)
            final = wait_for(lambda: (s := status(cluster, "demo")).get("phase") == "Succeeded" and s, timeout=90)
        assert lease_holder(cluster) == "second" and "leading" in log_of(cluster, "second")
        assert "experiment default/demo: following it" in log_of(cluster, "second")
        # the new leader's metrics: it created the trials the first one had not
        scraped = urllib.request.urlopen(f"http://127.0.0.1:{second_port}/metrics", timeout=10).read().decode()
        samples = {(s.name, s.labels.get("phase", "")): s.value
                   for family in text_string_to_metric_families(scraped) for s in family.samples}
        assert 0 < samples["kubetune_trials_created_total", ""] < 8
        assert samples["kubetune_experiments", "Succeeded"] == 1
        items = trials(cluster)
        assert sorted(t["metadata"]["name"] for t in items) == sorted(f"demo-{i}" for i in range(8))
        assert final["trials"]["created"] == 8
        assert len({json.dumps(t["spec"]["params"], sort_keys=True) for t in items}) == 8
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)
