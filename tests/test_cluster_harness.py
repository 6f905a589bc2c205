"""The test kubelet behaves as a kubelet does where the operator relies on it: without kube-scheduler it binds
pods through ``pods/binding``; termination messages keep their last 4 KiB; logs are served through the API
server's ``pods/log`` (400 while the container has not started, ``tailLines`` honoured); pods being deleted
are force-deleted; and the test control plane stops every process it started."""

from __future__ import annotations

import json
import os
import time

import pytest
from cluster import Behaviour, ControlPlane, FakeNode, TestKubelet
from operator_cluster import wait_for

RESTRICTED = {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}


def pod(name: str, x: float = 3.0) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"kubetune.io/experiment": "e"}},
            "spec": {"restartPolicy": "Never", "securityContext": RESTRICTED, "containers": [
                {"name": "trial", "image": "python:3.12-slim", "env": [{"name": "KUBETUNE_PARAMS",
                                                                         "value": json.dumps({"x": x})}],
                 "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}}


def phase(cluster: ControlPlane, namespace: str, name: str) -> str | None:
    found = cluster.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
    return None if found is None else found.get("status", {}).get("phase")


@pytest.fixture
def bare(bare_cluster):
    bare_cluster.create_namespace(name := f"harness-{time.monotonic_ns() % 10**9}")
    return bare_cluster, name


def test_without_a_scheduler_pods_are_bound_by_the_kubelet_and_run(bare):
    cluster, namespace = bare
    behaviours = {"short": Behaviour(), "long": Behaviour(message="x" * 3000 + "y" * 3000),
                  "waiting": Behaviour(pending_seconds=30)}
    with TestKubelet(cluster, [FakeNode("bare-1")], behaviour=lambda p: behaviours[p["metadata"]["name"]],
                     bind=True, namespaces=[namespace]) as kubelet:
        for name in behaviours:
            cluster.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod(name))
        wait_for(lambda: phase(cluster, namespace, "short") == "Succeeded" == phase(cluster, namespace, "long"))
        short = cluster.get(f"/api/v1/namespaces/{namespace}/pods/short")
        long = cluster.get(f"/api/v1/namespaces/{namespace}/pods/long")
        waiting = cluster.get(f"/api/v1/namespaces/{namespace}/pods/waiting")
        with pytest.raises(Exception, match="400"):  # the container has not started: no log yet
            cluster.get(f"/api/v1/namespaces/{namespace}/pods/waiting/log")
        # a pod being deleted is removed by its kubelet (a bound pod waits for it)
        cluster.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/waiting")
        wait_for(lambda: phase(cluster, namespace, "waiting") is None, what="the kubelet to remove the pod")
    assert short["spec"]["nodeName"] == "bare-1" and waiting["spec"]["nodeName"] == "bare-1"
    terminated = short["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0
    assert json.loads(terminated["message"])["kubetune"]["metrics"]["loss"]["latest"] == 1
    message = long["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    assert len(message) == 4096 and message.endswith("y" * 3000) and message.startswith("x")
    assert kubelet.errors == []


def test_logs_are_served_through_the_api_server(bare):
    cluster, namespace = bare
    behaviour = Behaviour(report="log", log="".join(f"line {i}\n" for i in range(10)))
    with TestKubelet(cluster, [FakeNode("bare-2")], behaviour=lambda p: behaviour, bind=True,
                     namespaces=[namespace]):
        cluster.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod("logged"))
        wait_for(lambda: phase(cluster, namespace, "logged") == "Succeeded")
        whole = cluster.get(f"/api/v1/namespaces/{namespace}/pods/logged/log")
        tail = cluster.get(f"/api/v1/namespaces/{namespace}/pods/logged/log?tailLines=2")
    assert whole.startswith("line 0\n") and "epoch 2: loss=1.0" in whole
    assert tail == "epoch 1: loss=3.0\nepoch 2: loss=1.0\n"


def test_the_control_plane_stops_every_process_it_started():
    with ControlPlane(scheduler=False) as cluster:
        pids = [component.process.pid for component in cluster.components.values()]
        workdir = cluster.workdir
        assert len(pids) == 3 and all(_alive(pid) for pid in pids)
    assert not any(_alive(pid) for pid in pids)
    assert not workdir.exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[1].split()[0] != "Z"
