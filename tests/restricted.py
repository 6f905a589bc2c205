"""The Pod Security Standard "restricted" (kubernetes.io/docs/concepts/security/pod-security-standards),
checked on a pod spec: what both the chart's operator pod and the operator's trial pods must meet."""

from __future__ import annotations

from typing import Any

ALLOWED_VOLUME_KINDS = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                        "projected", "secret"}


def restricted_violations(pod_spec: dict[str, Any]) -> list[str]:
    pod_security = pod_spec.get("securityContext") or {}
    problems = [f"{flag} is set" for flag in ("hostNetwork", "hostPID", "hostIPC") if pod_spec.get(flag)]
    for volume in pod_spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_KINDS:
            problems.append(f"volume {volume['name']} is {sorted(kinds)}")
    containers = (pod_spec.get("containers") or []) + (pod_spec.get("initContainers") or [])
    for container in containers:
        problems += [f"{container['name']}: {problem}" for problem in _container_violations(container, pod_security)]
    return problems


def _container_violations(container: dict[str, Any], pod_security: dict[str, Any]) -> list[str]:
    security = container.get("securityContext") or {}

    def setting(key: str) -> Any:
        return security.get(key, pod_security.get(key))

    capabilities = security.get("capabilities") or {}
    checks = {
        "runAsNonRoot is not true": setting("runAsNonRoot") is not True,
        "runAsUser is 0": setting("runAsUser") == 0,
        "no RuntimeDefault seccomp profile":
            (setting("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"),
        "allowPrivilegeEscalation is not false": security.get("allowPrivilegeEscalation") is not False,
        "privileged": bool(security.get("privileged")),
        "capabilities do not drop ALL": "ALL" not in (capabilities.get("drop") or []),
        f"adds capabilities {capabilities.get('add')}": bool(set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}),
        "hostPort": any(port.get("hostPort") for port in container.get("ports") or []),
    }
    return [problem for problem, violated in checks.items() if violated]
