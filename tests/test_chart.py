"""The Helm chart, rendered by a real Helm: lint, schema of the values, every rendered object against the
Kubernetes schemas, the restricted security context, least-privilege RBAC, and CRDs identical to crds/."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from restricted import restricted_violations

from kubetune.cli import _parser

ROOT = Path(__file__).parent.parent
CHART = ROOT / "charts" / "kubetune"
HELM = shutil.which("helm", path=str(ROOT / ".tools")) or shutil.which("helm")
K8S_VERSION = kubernetes_validate.latest_version()
pytestmark = pytest.mark.skipif(HELM is None, reason="helm is fetched by `make test` (scripts/fetch_tools.py)")

VALUE_SETS = {
    "default": {},
    "namespaced": {"watch": {"allNamespaces": False, "namespaces": ["team-a", "team-b"]}},
    "release-namespace-only": {"watch": {"allNamespaces": False}},
    "two-replicas": {"replicaCount": 2, "leaderElection": {"enabled": False}},
    "single-no-election": {"leaderElection": {"enabled": False}},
    "no-reports": {"reports": {"enabled": False}},
    "kai": {"gpuSharing": {"mode": "kai", "kai": {"queue": "research"}}},
    "hami": {"gpuSharing": {"mode": "hami", "hami": {"limitCores": True}}},
    "volcano": {"gpuSharing": {"mode": "volcano"}},
    "timeslicing": {"gpuSharing": {"mode": "timeslicing", "timeslicing": {"resource": "nvidia.com/gpu.shared"}}},
    "mig": {"gpuSharing": {"mode": "mig", "mig": {"profiles": [
        {"fraction": 0.5, "resource": "nvidia.com/mig-3g.20gb"}, {"fraction": 1, "resource": "nvidia.com/mig-7g.40gb"},
        {"fraction": 0.25, "resource": "nvidia.com/mig-2g.10gb"}]}}},
    "everything": {
        "image": {"repository": "registry.example.com/ml/kubetune", "tag": "0.1.0-rc1", "pullPolicy": "Always",
                  "pullSecrets": ["registry-credentials"]},
        "metrics": {"port": 9100, "serviceMonitor": {"enabled": True, "interval": "15s",
                                                      "labels": {"release": "prometheus"}}},
        "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
        "priorityClassName": "system-cluster-critical", "logLevel": "debug",
        "extraEnv": [{"name": "TZ", "value": "UTC"}], "podLabels": {"team": "ml"},
        "serviceAccount": {"create": True, "name": "tuner", "annotations": {"iam.example.com/role": "tuner"}},
    },
}

# Exactly what the operator calls (see kubetune.operator.api and kopf's own needs), per watched namespace.
OPERATOR_RULES = {
    ("kubetune.io", "experiments", "list"), ("kubetune.io", "experiments", "watch"),
    ("kubetune.io", "experiments", "patch"), ("kubetune.io", "experiments/status", "patch"),
    ("kubetune.io", "trials", "create"), ("kubetune.io", "trials", "list"), ("kubetune.io", "trials/status", "patch"),
    ("", "pods", "create"), ("", "pods", "delete"), ("", "pods", "get"), ("", "pods", "list"), ("", "pods", "watch"),
    ("", "pods/log", "get"), ("", "events", "create"), ("", "events", "patch"),
}
REPORT_KEY_RULES = {("", "secrets", "create", None), ("", "secrets", "get", "kubetune-report-key")}
LEASE_RULES = {("coordination.k8s.io", "leases", "create", None),
               ("coordination.k8s.io", "leases", "get", "kubetune-operator"),
               ("coordination.k8s.io", "leases", "patch", "kubetune-operator")}


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)}:\n{result.stderr}")
    return result


def values_file(tmp_path: Path, values: dict) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def render(tmp_path: Path, values: dict, *extra: str) -> list[dict]:
    out = helm("template", "tune", str(CHART), "--namespace", "kubetune", "-f", values_file(tmp_path, values),
               *extra).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def of_kind(objects: list[dict], kind: str, users: bool = False) -> list[dict]:
    """The objects of one kind; ClusterRoles only the operator's, or with ``users`` only those aggregated into
    the built-in user-facing roles."""
    return [o for o in objects if o["kind"] == kind and (kind != "ClusterRole" or users == _aggregated(o))]


def _aggregated(role: dict) -> bool:
    return any(label.startswith("rbac.authorization.k8s.io/aggregate-to-")
               for label in role["metadata"].get("labels", {}))


def rules(role: dict) -> set[tuple]:
    found = set()
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in rule.get("resourceNames") or [None]:
                        found.add((group, resource, verb, name))
    return found


@pytest.mark.parametrize("name", VALUE_SETS)
def test_lint_is_clean(tmp_path, name):
    result = helm("lint", "--strict", str(CHART), "-f", values_file(tmp_path, VALUE_SETS[name]))
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_rendered_object_validates_against_the_kubernetes_schema(tmp_path, name):
    objects = render(tmp_path, VALUE_SETS[name], "--include-crds")
    assert {"Deployment", "ServiceAccount", "Service", "CustomResourceDefinition"} <= {o["kind"] for o in objects}
    for obj in objects:
        if obj["apiVersion"] == "monitoring.coreos.com/v1":  # the Prometheus Operator's CRD: checked below
            continue
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_operator_pod_is_restricted_probed_and_bounded(tmp_path, name):
    (deployment,) = of_kind(render(tmp_path, VALUE_SETS[name]), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    assert pod["securityContext"]["runAsUser"] != 0
    for container in pod["containers"]:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["port"] == "health"
        assert container["resources"]["requests"] and container["resources"]["limits"]
    assert all("emptyDir" in volume for volume in pod["volumes"])


@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_operator_arguments_are_ones_it_accepts(tmp_path, name):
    values = VALUE_SETS[name]
    (deployment,) = of_kind(render(tmp_path, values), "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    parsed = _parser().parse_args(["operator", *args])  # the image's entrypoint is `kubetune operator`
    sharing = values.get("gpuSharing", {})
    assert parsed.gpu_sharing == sharing.get("mode", "whole")
    if "mig" in sharing:
        assert sorted(parsed.mig_profile) == sorted((p["fraction"], p["resource"])
                                                    for p in sharing["mig"]["profiles"])
    watch = values.get("watch", {})
    if watch.get("allNamespaces", True):
        assert parsed.all_namespaces and parsed.namespace is None
    else:
        assert parsed.namespace == (watch.get("namespaces") or ["kubetune"])
    elected = values.get("leaderElection", {}).get("enabled", True) or values.get("replicaCount", 1) > 1
    assert parsed.leader_election is elected
    assert parsed.metrics_port == values.get("metrics", {}).get("port", 9090)
    if values.get("reports", {}).get("enabled", True):
        assert parsed.reports_port == 8090 and parsed.report_key_namespace == "kubetune"
        assert parsed.reports_url == "http://tune-kubetune-reports.kubetune.svc:8090"
    else:
        assert parsed.reports_port == 0


def test_cluster_wide_rbac_is_exactly_what_the_operator_uses(tmp_path):
    objects = render(tmp_path, {})
    (cluster_role,) = of_kind(objects, "ClusterRole")
    assert rules(cluster_role) == {(*rule, None) for rule in OPERATOR_RULES}
    (binding,) = of_kind(objects, "ClusterRoleBinding")
    (account,) = of_kind(objects, "ServiceAccount")
    assert binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": "kubetune"}]
    roles = {r["metadata"]["name"]: r for r in of_kind(objects, "Role")}
    lease_role, key_role = roles["tune-kubetune-leader-election"], roles["tune-kubetune-report-key"]
    assert lease_role["metadata"]["namespace"] == "kubetune" and rules(lease_role) == LEASE_RULES
    assert key_role["metadata"]["namespace"] == "kubetune" and rules(key_role) == REPORT_KEY_RULES


def test_namespaced_rbac_is_a_role_in_each_watched_namespace(tmp_path):
    objects = render(tmp_path, VALUE_SETS["namespaced"])
    assert of_kind(objects, "ClusterRole") == [] and of_kind(objects, "ClusterRoleBinding") == []
    roles = {r["metadata"]["namespace"]: r for r in of_kind(objects, "Role") if "leader" not in r["metadata"]["name"]
             and "report-key" not in r["metadata"]["name"]}
    assert set(roles) == {"team-a", "team-b"}
    assert all(rules(role) == {(*rule, None) for rule in OPERATOR_RULES} for role in roles.values())
    bindings = {b["metadata"]["namespace"] for b in of_kind(objects, "RoleBinding") if "leader" not in
                b["metadata"]["name"] and "report-key" not in b["metadata"]["name"]}
    assert bindings == {"team-a", "team-b"}


def test_no_election_no_lease_access_and_nothing_beyond_the_minimum(tmp_path):
    for name, values in VALUE_SETS.items():
        objects = render(tmp_path, values)
        every_rule = set().union(*(rules(r) for r in of_kind(objects, "Role") + of_kind(objects, "ClusterRole")))
        allowed = {*OPERATOR_RULES, *(r[:3] for r in LEASE_RULES), *(r[:3] for r in REPORT_KEY_RULES)}
        assert {rule[:3] for rule in every_rule} <= allowed, name
        assert not any("*" in rule for rule in every_rule), name
        secrets = {rule for role in of_kind(objects, "Role") + of_kind(objects, "ClusterRole")
                   for rule in rules(role) if rule[1] == "secrets"}
        assert secrets == (set() if name == "no-reports" else REPORT_KEY_RULES), name
        assert all(role["metadata"]["name"].endswith("-report-key") and role["metadata"]["namespace"] == "kubetune"
                   for role in of_kind(objects, "Role") + of_kind(objects, "ClusterRole")
                   if any(rule[1] == "secrets" for rule in rules(role))), name
    objects = render(tmp_path, VALUE_SETS["single-no-election"])
    assert not any(rule[0] == "coordination.k8s.io" for role in of_kind(objects, "Role") for rule in rules(role))


# What users get through the built-in roles: view reads, edit and admin also write Experiments (never Trials).
USER_RULES = {
    "view": {("kubetune.io", resource, verb, None)
             for resource in ("experiments", "experiments/status", "trials", "trials/status")
             for verb in ("get", "list", "watch")},
    "edit": {("kubetune.io", "experiments", verb, None) for verb in ("create", "update", "patch", "delete",
                                                                     "deletecollection")},
}


def test_user_roles_are_aggregated_into_view_edit_and_admin(tmp_path):
    roles = {r["metadata"]["name"]: r for r in of_kind(render(tmp_path, {}), "ClusterRole", users=True)}
    assert set(roles) == {"tune-kubetune-view", "tune-kubetune-edit"}
    for name, expected in USER_RULES.items():
        role = roles[f"tune-kubetune-{name}"]
        assert rules(role) == expected
        labels = {label.rsplit("-", 1)[1] for label, value in role["metadata"]["labels"].items()
                  if label.startswith("rbac.authorization.k8s.io/aggregate-to-") and value == "true"}
        assert labels == ({"view", "edit", "admin"} if name == "view" else {"edit", "admin"})
    assert of_kind(render(tmp_path, {"userRoles": {"enabled": False}}), "ClusterRole", users=True) == []


def test_two_replicas_always_elect_a_leader(tmp_path):
    (deployment,) = of_kind(render(tmp_path, VALUE_SETS["two-replicas"]), "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert "--leader-election" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_service_monitor_scrapes_the_metrics_port(tmp_path):
    objects = render(tmp_path, VALUE_SETS["everything"])
    (monitor,) = of_kind(objects, "ServiceMonitor")
    (service,) = [s for s in of_kind(objects, "Service") if s["metadata"]["name"].endswith("-metrics")]
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
    assert [p["port"] for p in service["spec"]["ports"]] == [9100]
    assert of_kind(render(tmp_path, {}), "ServiceMonitor") == []


@pytest.mark.parametrize(("values", "message"), [
    ({"replicaCount": "many"}, "/replicaCount"),
    ({"replicaCount": 0}, "/replicaCount"),
    ({"gpuSharing": {"mode": "teleport"}}, "/gpuSharing/mode"),
    ({"gpuSharing": {"mode": "mig", "mig": {"profiles": [{"fraction": 2, "resource": "nvidia.com/mig-7g.80gb"}]}}},
     "/gpuSharing/mig/profiles/0/fraction"),
    ({"watch": {"namespaces": ["Team_A"]}}, "/watch/namespaces/0"),
    ({"logLevel": "chatty"}, "/logLevel"),
    ({"replicas": 2}, "additional properties 'replicas' not allowed"),
])
def test_wrong_values_fail_at_install_time_with_a_clear_message(tmp_path, values, message):
    result = helm("template", "tune", str(CHART), "-f", values_file(tmp_path, values), check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr and message in result.stderr


def test_chart_crds_are_the_generated_ones():
    shown = [doc for doc in yaml.safe_load_all(helm("show", "crds", str(CHART)).stdout) if doc]
    generated = [yaml.safe_load(path.read_text()) for path in sorted((ROOT / "crds").glob("*.yaml"))]
    assert sorted(shown, key=json.dumps) == sorted(generated, key=json.dumps)
    assert (CHART / "crds").is_symlink() and (CHART / "crds").resolve() == (ROOT / "crds").resolve()


def test_chart_app_version_is_the_package_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2" and chart["appVersion"] == project["version"]


def test_the_packaged_chart_carries_the_crds(tmp_path):
    helm("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("kubetune-*.tgz")
    with tarfile.open(archive) as packaged:
        names = {name for name in packaged.getnames() if name.startswith("kubetune/crds/")}
        assert names == {f"kubetune/crds/{path.name}" for path in (ROOT / "crds").glob("*.yaml")}
        for name in names:
            assert packaged.extractfile(name).read() == (ROOT / "crds" / Path(name).name).read_bytes()


def test_the_reports_service_reaches_the_operator_port_trial_pods_are_given(tmp_path):
    objects = render(tmp_path, {})
    (service,) = [s for s in of_kind(objects, "Service") if s["metadata"]["name"] == "tune-kubetune-reports"]
    (deployment,) = of_kind(objects, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert service["spec"]["ports"] == [{"name": "reports", "port": 8090, "targetPort": "reports", "protocol": "TCP"}]
    assert {"name": "reports", "containerPort": 8090, "protocol": "TCP"} in container["ports"]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert not [s for s in of_kind(render(tmp_path, VALUE_SETS["no-reports"]), "Service") if "reports" in
                s["metadata"]["name"]]
