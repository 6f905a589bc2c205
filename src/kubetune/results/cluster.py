"""Reading an Experiment on a cluster back through the user's kubeconfig: the Experiment and its Trials
(:func:`read_cluster_experiment`, for ``report`` and ``export``), or only what ``status`` needs
(:meth:`ClusterReader.running_trials`: the pods of the trials that hold a slot now, metadata only, and the
Trials behind the few shown).

The ``kubernetes`` client is the ``operator`` extra and is imported only here, when a cluster is read, so
``kubetune status DIR`` needs the base install alone. Every failure a user can cause (no extra, no or a
broken kubeconfig, an unreachable server, a missing experiment, RBAC) is a :class:`ClusterError` whose
message is one line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from kubetune.core.cluster.crd import GROUP, VERSION
from kubetune.core.cluster.pods import ATTEMPT_LABEL, EXPERIMENT_LABEL, TRIAL_LABEL
from kubetune.core.lifecycle import TrialRecord
from kubetune.results.model import Results

PAGE = 500  # objects per page of a listing
TIMEOUT_SECONDS = 30  # per request
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
MISSING_EXTRA = "reading an experiment on a cluster needs the kubernetes client: pip install 'kubetune[operator]'"


class ClusterError(Exception):
    """The experiment cannot be read from the cluster; the message (one line) says why."""


class Forbidden(ClusterError):
    """RBAC does not let the user make this call."""


@dataclass
class RunningPod:
    """A pod of a trial that holds a slot now (the latest attempt's, when a trial has several)."""

    trial: str
    attempt: int
    phase: str  # Pending or Running
    created: str | None  # the pod's creationTimestamp: when the attempt started, as the Trial's startTime says


class ClusterReader:
    """One connection to the API server as the user's kubeconfig says (``kubeconfig``: a path, default
    ``$KUBECONFIG`` or ``~/.kube/config``; ``context``: default its current context), in ``namespace``
    (default the context's namespace, else ``default``)."""

    def __init__(self, namespace: str | None = None, kubeconfig: str | None = None, context: str | None = None):
        try:
            import urllib3
            from kubernetes import config
            from kubernetes.client.exceptions import ApiException
        except ImportError:
            raise ClusterError(MISSING_EXTRA) from None
        path = kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        self._client, default_namespace = _connect(config, path, context)
        self._client.configuration.retries = False  # one attempt: an unreachable server is said at once
        self.host = self._client.configuration.host
        self.namespace = namespace or default_namespace
        # ApiException: the client's own for a TLS failure (status 0); answers are read here, never raised
        self._unreachable = (urllib3.exceptions.HTTPError, OSError, ApiException)

    # -- calls ----------------------------------------------------------------------------------------------
    def _get(self, what: str, path: str, accept: str = "application/json", **query: str | int) -> dict[str, Any]:
        """The answer, as plain JSON, of one GET; failures become a one-line :class:`ClusterError` naming
        ``what`` was asked. The request goes through the client's ``ApiClient`` (its TLS, token and
        credential plugins) but not its generated API classes, whose import alone takes seconds."""
        try:
            method, url, headers, _, _ = self._client.param_serialize(
                "GET", path, query_params=[(k, v) for k, v in query.items() if v], header_params={"Accept": accept},
                auth_settings=["BearerToken"])
            answer = self._client.call_api(method, url, header_params=headers, _request_timeout=TIMEOUT_SECONDS)
            data = answer.read()
        except self._unreachable as exc:
            raise ClusterError(f"cannot reach the Kubernetes API server at {self.host}: {_why(exc)} (is the "
                               "cluster running, and the kubeconfig the right one?)") from None
        if not 200 <= answer.status < 300:
            kind = Forbidden if answer.status in (401, 403) else ClusterError
            raise kind(_refusal(what, self.namespace, answer.status, data))
        try:
            return dict(json.loads(data or b"{}"))
        except (ValueError, TypeError):
            raise ClusterError(f"{what}: the API server's answer is not a JSON object") from None

    def _custom_path(self, kind: str, name: str = "") -> str:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(self.namespace)}/{kind}"
        return f"{path}/{quote(name)}" if name else path

    def experiment(self, name: str) -> dict[str, Any]:
        return self._get(f"experiment {name}", self._custom_path("experiments", name))

    def trial(self, name: str) -> dict[str, Any]:
        return self._get(f"trial {name}", self._custom_path("trials", name))

    def _pages(self, what: str, path: str, **options: str) -> Iterator[dict[str, Any]]:
        """Every item of a listing, a page (``limit``/``continue``) at a time."""
        token = ""
        while True:
            page = self._get(what, path, limit=PAGE, **options, **{"continue": token})
            yield from page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return

    def trials(self, experiment: str) -> Iterator[dict[str, Any]]:
        """The experiment's Trials, a page at a time."""
        yield from self._pages(f"trials of experiment {experiment}", self._custom_path("trials"),
                               labelSelector=f"{EXPERIMENT_LABEL}={experiment}")

    def running_pods(self, experiment: str) -> list[RunningPod]:
        """The pods of the experiment's trials that hold a slot now (Pending or Running), one per trial: the
        API server filters by phase, and answers with metadata only, so this costs the running trials, not the
        experiment's thousands of finished ones."""
        latest: dict[str, RunningPod] = {}
        pods, selector = f"/api/v1/namespaces/{quote(self.namespace)}/pods", f"{EXPERIMENT_LABEL}={experiment}"
        for phase in ("Pending", "Running"):
            for pod in self._pages(f"pods of experiment {experiment}", pods, accept=METADATA_ONLY,
                                   labelSelector=selector, fieldSelector=f"status.phase={phase}"):
                found = _running_pod(pod, phase)
                if found and (found.trial not in latest or latest[found.trial].attempt < found.attempt):
                    latest[found.trial] = found
        return list(latest.values())

    def running_trials(self, experiment: str) -> list[RunningPod]:
        """What :meth:`running_pods` says, from the Trials themselves (every one of them, a page at a time): for
        a user whom RBAC lets read Trials but not pods."""
        found = []
        for trial in self.trials(experiment):
            status = trial.get("status") or {}
            if status.get("phase", "Pending") in ("Pending", "Running"):
                found.append(RunningPod(trial=str((trial.get("metadata") or {}).get("name")),
                                        attempt=int(status.get("attempts") or 0), phase=status.get("phase", "Pending"),
                                        created=status.get("startTime")))
        return found

    def trials_named(self, names: list[str]) -> list[dict[str, Any]]:
        """The Trials of these names (a few, for the running trials shown), fetched side by side; one deleted
        meanwhile is left out."""

        def get(name: str) -> dict[str, Any] | None:
            try:
                return self.trial(name)
            except ClusterError:
                return None

        with ThreadPoolExecutor(8) as threads:
            return [trial for trial in threads.map(get, names) if trial]


def _connect(config: Any, path: str, context: str | None) -> tuple[Any, str]:
    """The API client and the context's namespace, from the kubeconfig at ``path``."""
    files = [p for p in path.split(os.pathsep) if p]
    if not any(os.path.exists(os.path.expanduser(p)) for p in files):
        raise ClusterError(f"no kubeconfig at {path} (pass --kubeconfig FILE, or set KUBECONFIG)")
    try:
        contexts, current = config.list_kube_config_contexts(config_file=path)
        chosen = next((c for c in contexts if c.get("name") == context), None) if context else current
        if chosen is None:
            raise ClusterError(f"kubeconfig {path}: no context named {context!r}")
        api_client = config.new_client_from_config(config_file=path, context=context, persist_config=False)
    except ClusterError:
        raise
    except Exception as exc:  # the client raises ConfigException, YAML, OS and type errors for a broken file
        raise ClusterError(f"kubeconfig {path} cannot be used: {_one_line(exc)}") from None
    namespace = str(((chosen or {}).get("context") or {}).get("namespace") or "default")
    return api_client, namespace


def _running_pod(pod: dict[str, Any], phase: str) -> RunningPod | None:
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    if TRIAL_LABEL not in labels or meta.get("deletionTimestamp"):
        return None
    try:
        attempt = int(labels.get(ATTEMPT_LABEL, 1))
    except ValueError:
        attempt = 1
    return RunningPod(trial=str(labels[TRIAL_LABEL]), attempt=attempt, phase=phase,
                      created=meta.get("creationTimestamp"))


def read_cluster_experiment(name: str, namespace: str | None = None, kubeconfig: str | None = None,
                            context: str | None = None) -> Results:
    """The Experiment ``name`` and every one of its Trials (listed a page at a time), as :class:`Results`."""
    return read_experiment(ClusterReader(namespace, kubeconfig, context), name)


def read_experiment(reader: ClusterReader, name: str) -> Results:
    experiment = reader.experiment(name)
    records = []
    for trial in reader.trials(name):
        try:
            records.append(TrialRecord.from_trial(trial))
        except (KeyError, TypeError, ValueError):  # not a Trial the operator wrote: left out
            continue
    return results_of(experiment, records, f"{reader.namespace}/{name}")


def results_of(experiment: dict[str, Any], records: list[TrialRecord], source: str) -> Results:
    status = experiment.get("status") or {}
    meta = experiment.get("metadata") or {}
    manifest = {"apiVersion": experiment.get("apiVersion"), "kind": experiment.get("kind"),
                "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
                "spec": experiment.get("spec") or {}}
    return Results(name=str(meta.get("name")), source=source, manifest=manifest,
                   trials=sorted(records, key=lambda r: r.number), attempts=[], summary=status,
                   phase=str(status.get("phase") or "Created"))


def _refusal(what: str, namespace: str, status: int, body: bytes) -> str:
    """One line for an API error: what was asked, and why it was refused."""
    try:
        message = json.loads(body).get("message") or ""
    except (TypeError, ValueError, AttributeError):
        message = body[:200].decode(errors="replace")
    if status == 404:
        return f"{what} not found in namespace {namespace}"
    if status in (401, 403):
        return f"not allowed to read {what} in namespace {namespace}: {_one_line(message) or status}"
    return f"{what}: the API server answered {status}: {_one_line(message)}"


def _why(exc: BaseException) -> str:
    """The innermost reason of a connection failure ("Connection refused"), not urllib3's chain of wrappers."""
    import re

    text = str(getattr(exc, "reason", None) or exc)
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    return found.group(1).strip() if found else _one_line(text)


def _one_line(message: Any) -> str:
    return " ".join(str(message).split())[:300]
