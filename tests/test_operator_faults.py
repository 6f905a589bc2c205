"""What goes wrong on a real cluster, and what the operator does about it: a permission missing from its RBAC
(403), and kube-apiserver restarting in the middle of an experiment."""

from __future__ import annotations

import time

from cluster import Behaviour, TestKubelet
from cluster.identity import kubectl
from operator_cluster import Namespace, Operator, experiment, namespace_name, operator_identity, succeeded, wait_for


def test_a_missing_permission_is_reported_and_other_experiments_go_on(namespace):
    cluster = namespace.cluster
    other = Namespace(cluster, namespace_name("other"), namespace.tmp)
    cluster.create_namespace(other.name, {"pod-security.kubernetes.io/enforce": "restricted"})
    try:
        def without_pod_creation(identity) -> None:  # the Role of the test's namespace loses one verb
            for rule in identity.rules("Role", namespace.name):
                if "pods" in rule["resources"]:
                    rule["verbs"] = [verb for verb in rule["verbs"] if verb != "create"]

        watch = [namespace.name, other.name]
        kubeconfig = operator_identity(namespace, watch, edit=without_pod_creation)
        with TestKubelet(cluster, namespaces=watch), Operator(namespace, kubeconfig, watch) as operator:
            namespace.apply(experiment(name="blocked"))
            other.apply(experiment(name="allowed"))
            status = wait_for(lambda: (s := namespace.status("blocked")).get("reason") == "Forbidden" and s,
                              what="the Forbidden reason in the blocked experiment's status")
            succeeded(other, "allowed")
            time.sleep(12)  # long enough for retries: they back off instead of spinning
            assert operator.alive()
        log = operator.log()
    finally:
        kubectl(cluster.admin_kubeconfig, "delete", "namespace", other.name, "--wait=false", check=False)
    assert status["phase"] == "Running"
    assert 'cannot create resource "pods"' in status["message"] and "RBAC" in status["message"]
    assert status["conditions"][0]["reason"] == "Forbidden"
    assert "Traceback" not in log
    reported = [line for line in log.splitlines() if "not allowed to do what this experiment needs" in line]
    assert 1 <= len(reported) <= 4, reported  # 10 s, then 20 s, ... between attempts
    assert other.status("allowed")["trials"]["succeeded"] == 6


def test_the_operator_rides_out_a_restart_of_the_api_server(namespace):
    with namespace.kubelet(behaviour=lambda pod: Behaviour(seconds=0.5)) as kubelet, \
            Operator(namespace, operator_identity(namespace), [namespace.name]) as operator:
        namespace.apply(experiment(maxTrials=20, parallelism=3, algorithm={"name": "gp"}))
        wait_for(lambda: sum(t.get("status", {}).get("phase") == "Succeeded" for t in namespace.trials()) >= 3,
                 what="three trials")
        namespace.cluster.stop_apiserver()
        time.sleep(3)  # trials end meanwhile; nobody can record them
        namespace.cluster.start_apiserver()
        final = succeeded(namespace, timeout=180)
        assert operator.alive()
    trials = namespace.trials()
    assert sorted(t["metadata"]["name"] for t in trials) == sorted(f"demo-{i}" for i in range(20))
    assert all(t["status"]["phase"] == "Succeeded" for t in trials)
    assert final["trials"]["succeeded"] == 20
    assert kubelet.max_unfinished["demo"] <= 3
    assert "Traceback" not in operator.log()
