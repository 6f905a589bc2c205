"""What goes wrong on a real cluster, and what the operator does about it: a permission missing from its RBAC
(403), kube-apiserver restarting in the middle of an experiment, and API Priority and Fairness answering 429."""

from __future__ import annotations

import json
import re
import time
import urllib.request

from cluster import Behaviour, TestKubelet, free_port
from cluster.identity import kubectl
from operator_cluster import Namespace, Operator, experiment, namespace_name, operator_identity, succeeded, wait_for
from prometheus_client.parser import text_string_to_metric_families


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
            # the retries back off instead of spinning: wait for the second one, which comes 10 s after the first
            wait_for(lambda: len(_refusals(operator.log())) >= 2, timeout=120, what="a second attempt")
            held = wait_for(lambda: [e for e in namespace.events() if e["reason"] == "Forbidden" and e["count"] >= 2],
                            timeout=60, what="the Forbidden Event counted twice")
            assert operator.alive()
        log = operator.log()
    finally:
        kubectl(cluster.admin_kubeconfig, "delete", "namespace", other.name, "--wait=false", check=False)
    assert status["phase"] == "Running"
    assert 'cannot create resource "pods"' in status["message"] and "RBAC" in status["message"]
    assert status["conditions"][0]["reason"] == "Forbidden"
    assert "Traceback" not in log
    # the hold is one Warning about the experiment, counted at each retry, not one Event per retry
    forbidden = [e for e in namespace.events() if e["reason"] == "Forbidden"]
    assert len(forbidden) == 1 and held[0]["type"] == "Warning" and held[0]["involvedObject"]["name"] == "blocked"
    assert held[0]["message"] == status["message"]
    delays = [int(delay) for delay in _refusals(log)]
    assert delays == [min(10 * 2**i, 60) for i in range(len(delays))], delays  # 10 s, 20 s, ... at most a minute
    assert other.status("allowed")["trials"]["succeeded"] == 6


def _refusals(log: str) -> list[str]:
    """The delays the operator announced after each refused attempt, in seconds."""
    return re.findall(r"not allowed to do what this experiment needs: .*\(retrying in (\d+) s\)", log)


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


def test_429s_from_api_priority_and_fairness_are_retried(namespace):
    """The operator's ServiceAccount gets a priority level of a few seats that rejects rather than queues, so
    its bursts of calls meet 429s, as they would on a busy cluster."""
    cluster, name = namespace.cluster, f"tiny-{namespace.name}"
    flow = "/apis/flowcontrol.apiserver.k8s.io/v1"
    cluster.request("POST", f"{flow}/prioritylevelconfigurations", {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
        "metadata": {"name": name}, "spec": {"type": "Limited", "limited": {
            "nominalConcurrencyShares": 1, "lendablePercent": 0, "limitResponse": {"type": "Reject"}}}})
    cluster.request("POST", f"{flow}/flowschemas", {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema", "metadata": {"name": name},
        "spec": {"priorityLevelConfiguration": {"name": name}, "matchingPrecedence": 500, "rules": [{
            "subjects": [{"kind": "ServiceAccount", "serviceAccount": {"name": "kubetune",
                                                                        "namespace": namespace.name}}],
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"], "namespaces": ["*"],
                               "clusterScope": True}]}]}})
    port = free_port()
    try:
        with namespace.kubelet(behaviour=lambda pod: Behaviour(seconds=0.2)), \
                Operator(namespace, operator_identity(namespace), [namespace.name],
                         ("--metrics-port", str(port))) as operator:
            namespace.apply(experiment(maxTrials=60, parallelism=30))
            final = succeeded(namespace, timeout=180)
            metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        cluster.request("DELETE", f"{flow}/flowschemas/{name}")
        cluster.request("DELETE", f"{flow}/prioritylevelconfigurations/{name}")
    throttled = sum(s.value for family in text_string_to_metric_families(metrics) for s in family.samples
                    if s.name == "kubetune_api_throttled_total")
    assert throttled > 0
    trials = namespace.trials()
    assert final["trials"]["succeeded"] == 60 and len(trials) == 60
    assert len({json.dumps(t["spec"]["params"], sort_keys=True) for t in trials}) == 60
    assert "Traceback" not in operator.log()
