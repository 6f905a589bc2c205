"""The operator's identity in a test cluster, exactly as the Helm chart grants it: ``helm template`` renders the
chart, and its ServiceAccount, Roles, ClusterRoles and bindings (nothing else, no Deployment) are applied
with kubectl; the operator then runs with a kubeconfig holding that ServiceAccount's token, so a permission
the chart lacks is a failure in the tests rather than in a user's cluster."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from .control_plane import ROOT, ControlPlane

CHART = ROOT / "charts" / "kubetune"
TOOLS = ROOT / ".tools"
RBAC_KINDS = ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")


def tool(name: str) -> str:
    found = shutil.which(name, path=str(TOOLS)) or shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} is missing: `make tools` fetches it into .tools/")
    return found


def helm_template(release: str, namespace: str, values: dict[str, Any], *extra: str) -> list[dict[str, Any]]:
    """The chart as ``helm template`` renders it with ``values``."""
    result = subprocess.run([tool("helm"), "template", release, str(CHART), "--namespace", namespace,
                             "--values", "-", *extra], input=yaml.safe_dump(values), capture_output=True,
                            text=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"helm template failed: {result.stderr}")
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def chart_rbac(release: str, namespace: str, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart's ServiceAccount and RBAC objects."""
    return [o for o in helm_template(release, namespace, values) if o["kind"] in RBAC_KINDS]


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
    result = subprocess.run([tool("kubectl"), "--kubeconfig", str(kubeconfig), *args], input=stdin,
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


class OperatorIdentity:
    """The operator's ServiceAccount (release ``release`` in ``namespace``) with the chart's RBAC for
    watching ``watch`` (None: every namespace). A test may change ``objects`` (through :meth:`rules`, say)
    before :meth:`install` applies them, to remove a permission."""

    def __init__(self, cluster: ControlPlane, namespace: str, watch: list[str] | None = None,
                 release: str = "kubetune", leader_election: bool = True):
        self.cluster, self.namespace, self.release = cluster, namespace, release
        self.values: dict[str, Any] = {"leaderElection": {"enabled": leader_election}}
        self.values["watch"] = ({"allNamespaces": True} if watch is None
                                else {"allNamespaces": False, "namespaces": watch})
        self.objects = chart_rbac(release, namespace, self.values)
        (self.account,) = [o["metadata"]["name"] for o in self.objects if o["kind"] == "ServiceAccount"]

    def install(self, kubeconfig: Path) -> Path:
        """Applies the objects and writes a kubeconfig for the ServiceAccount to ``kubeconfig``."""
        documents = []
        for obj in self.objects:
            obj.setdefault("metadata", {})
            if obj["kind"] in ("ServiceAccount", "Role", "RoleBinding"):
                obj["metadata"].setdefault("namespace", self.namespace)
            documents.append(obj)
        kubectl(self.cluster.admin_kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
        return self.cluster.service_account_kubeconfig(kubeconfig, self.namespace, self.account)

    def rules(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """The rules of the operator's Role in ``namespace`` (or its ClusterRole), to edit before install."""
        for obj in self.objects:
            name = obj["metadata"]["name"]
            if obj["kind"] == kind and "leader" not in name and "report-key" not in name and (
                    namespace is None or obj["metadata"].get("namespace") == namespace):
                return obj["rules"]
        raise KeyError(f"no {kind} in {namespace}")
