"""Which cluster ``kubetune operator`` talks to, and as whom: in a pod, its ServiceAccount; run by hand, a
kubeconfig (``--kubeconfig``, else ``$KUBECONFIG`` or ``~/.kube/config``) and one of its contexts
(``--context``, else the current one). :func:`connect` loads it once into the Kubernetes client's default
configuration, and :func:`login` hands the same credentials to kopf, so the two never disagree (kopf's own
login would read the default kubeconfig's current context again).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class Connection:
    in_cluster: bool  # running in a pod, as its ServiceAccount
    namespace: str | None  # the pod's namespace, or the namespace the kubeconfig context names (if it does)
    where: str  # "the pod's ServiceAccount" or "kubeconfig FILE, context NAME", for messages


def connect(kubeconfig: str | None = None, context: str | None = None) -> Connection:
    """Loads the credentials into the Kubernetes client's default configuration; raises the client's
    ConfigException when there is neither a pod's ServiceAccount nor a usable kubeconfig."""
    from kubernetes import config

    if kubeconfig is None and context is None:
        try:
            config.load_incluster_config()
            return Connection(True, pod_namespace(), "the pod's ServiceAccount")
        except config.ConfigException:
            pass
    config.load_kube_config(config_file=kubeconfig, context=context)
    contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
    named = [c for c in contexts if c.get("name") == context] if context else [current]
    chosen: dict[str, Any] = (named[0] if named else None) or {}
    namespace = (chosen.get("context") or {}).get("namespace")
    file = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
    return Connection(False, namespace, f"kubeconfig {file}, context {chosen.get('name')}")


def pod_namespace() -> str | None:
    """The namespace of the pod the operator runs in (the chart sets POD_NAMESPACE)."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


def login(**_: Any) -> Any:
    """kopf's credentials, from the configuration :func:`connect` loaded."""
    import kopf
    from kubernetes import client

    configuration = client.Configuration.get_default_copy()
    header = (configuration.get_api_key_with_prefix("BearerToken")
              or configuration.get_api_key_with_prefix("authorization") or "")
    scheme, _space, token = header.rpartition(" ")
    return kopf.ConnectionInfo(
        server=configuration.host, ca_path=configuration.ssl_ca_cert, insecure=not configuration.verify_ssl,
        username=configuration.username or None, password=configuration.password or None,
        scheme=scheme or None, token=token or None, certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file)


def own_identity() -> str:
    """This operator's name among its replicas (in its Lease, and as the ``reportingInstance`` of its Events):
    its pod's name (the chart sets POD_NAME), else the host's name and the process id."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
