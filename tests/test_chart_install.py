"""The Helm chart installed for real: ``helm install``, ``upgrade`` and ``uninstall`` against a control plane of
its own (one without the CRDs, so that the install has to create them), behaving as the README says. The
operator's Deployment is created but never runs: no image can be built here."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import yaml
from cluster import ControlPlane
from cluster.identity import CHART, kubectl, tool

ROOT = Path(__file__).parent.parent
RELEASE, NAMESPACE = "kubetune", "kubetune"


def helm(cluster: ControlPlane, *args: str) -> str:
    result = subprocess.run([tool("helm"), "--kubeconfig", str(cluster.admin_kubeconfig), *args],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, f"helm {' '.join(args)}: {result.stderr}"
    return result.stdout


def get(cluster: ControlPlane, *args: str) -> dict:
    return json.loads(kubectl(cluster.admin_kubeconfig, "get", *args, "-o", "json").stdout)


def names(cluster: ControlPlane, kind: str, namespaced: bool = True) -> set[str]:
    scope = ("-n", NAMESPACE) if namespaced else ()
    return {item["metadata"]["name"] for item in get(cluster, kind, *scope)["items"]
            if item["metadata"].get("labels", {}).get("app.kubernetes.io/instance") == RELEASE
            or kind == "customresourcedefinitions"}


def test_install_upgrade_and_uninstall(bare_cluster, tmp_path):
    cluster = bare_cluster
    helm(cluster, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace")

    crds = {"experiments.kubetune.io", "trials.kubetune.io"}
    assert crds <= names(cluster, "customresourcedefinitions", namespaced=False)
    assert names(cluster, "deployments") == {"kubetune"}
    assert names(cluster, "serviceaccounts") == {"kubetune"}
    assert names(cluster, "services") == {"kubetune-metrics", "kubetune-reports"}
    assert names(cluster, "roles") == {"kubetune-leader-election", "kubetune-report-key"}
    assert "kubetune" in names(cluster, "clusterroles", namespaced=False)
    assert "kubetune" in names(cluster, "clusterrolebindings", namespaced=False)
    deployment = get(cluster, "deployment", "kubetune", "-n", NAMESPACE)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("ghcr.io/kubetune/kubetune:")
    assert "--all-namespaces" in container["args"] and "--gpu-sharing=whole" in container["args"]

    # an experiment applied by a user, which must outlive the chart
    example = yaml.safe_load((ROOT / "examples" / "k8s" / "branin.yaml").read_text())
    example["metadata"]["namespace"] = NAMESPACE
    kubectl(cluster.admin_kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump(example))

    # upgrade: new values reach the Deployment; CRDs are never changed by Helm after the first install
    changed = tmp_path / "chart"
    shutil.copytree(CHART, changed, symlinks=False)
    crd_file = changed / "crds" / "experiments.kubetune.io.yaml"
    crd_file.write_text(crd_file.read_text().replace("Trials running at once.", "Changed by an upgrade."))
    helm(cluster, "upgrade", RELEASE, str(changed), "--namespace", NAMESPACE, "--set", "gpuSharing.mode=hami",
         "--set", "logLevel=debug")
    args = get(cluster, "deployment", "kubetune", "-n", NAMESPACE)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--gpu-sharing=hami" in args and "--log-level=debug" in args
    assert json.loads(helm(cluster, "history", RELEASE, "-n", NAMESPACE, "-o", "json"))[-1]["revision"] == 2
    crd = get(cluster, "crd", "experiments.kubetune.io")
    assert "Changed by an upgrade." not in json.dumps(crd)
    assert "Trials running at once." in json.dumps(crd)

    # uninstall: the operator, its RBAC and Service go; the CRDs and the experiments stay
    helm(cluster, "uninstall", RELEASE, "--namespace", NAMESPACE)
    assert names(cluster, "deployments") == set()
    assert names(cluster, "serviceaccounts") == set()
    assert names(cluster, "services") == set()
    assert names(cluster, "roles") == set()
    assert "kubetune" not in names(cluster, "clusterroles", namespaced=False)
    assert crds <= names(cluster, "customresourcedefinitions", namespaced=False)
    assert [e["metadata"]["name"] for e in get(cluster, "experiments", "-n", NAMESPACE)["items"]] == [
        example["metadata"]["name"]]
