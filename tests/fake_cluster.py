"""An in-memory cluster for the reconciler's tests: the ClusterApi protocol over dicts, plus a test
kubelet that moves pods through their phases the way a real one reports them.

The kubelet runs each trial "container" by evaluating ``(x - 2)^2`` from the pod's KUBETUNE_PARAMS and
writes the SDK's termination-message summary, or plain log output, or a failure, as a test asks.
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from kubetune.core import termination
from kubetune.operator.api import ApiError, Conflict, NotFound, belongs

# Whether the API server refuses a pod: the error it answers for (pod, dry_run), or None to admit it.
Refusal = Callable[[dict[str, Any], bool], ApiError | None]


class FakeCluster:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.logs: dict[tuple[str, str], str] = {}
        self.writes: Counter[str] = Counter()
        self.max_active_pods = 0
        self.lists = 0
        self.gets = 0
        self.dry_runs = 0
        self.refusal: Refusal | None = None  # set by a test to have pod creations refused
        self._rv = itertools.count(1)

    # -- ClusterApi ---------------------------------------------------------------------------------------
    async def list(self, kind: str, namespace: str, experiment: str,
                   shape: Callable[[dict[str, Any]], dict[str, Any]] = lambda obj: obj,
                   unfinished: bool = False) -> list[dict[str, Any]]:
        self.lists += 1
        return [shape(copy.deepcopy(o)) for (k, ns, _), o in self.objects.items()
                if k == kind and ns == namespace and belongs(o, experiment)
                and not (unfinished and (o.get("status") or {}).get("phase") in ("Succeeded", "Failed"))]

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        self.gets += 1
        if (kind, namespace, name) not in self.objects:
            raise NotFound(name)
        return copy.deepcopy(self.objects[(kind, namespace, name)])

    async def create(self, kind: str, namespace: str, body: dict[str, Any], dry_run: bool = False
                     ) -> dict[str, Any]:
        """Stores ``body``; a dry run (``?dryRun=All``) only says whether it would be: a pod is refused when
        ``refusal`` says so, and an existing object is a Conflict either way (a real API server validates and
        admits it before it finds the name taken)."""
        refused = self.refusal(body, dry_run) if self.refusal is not None and kind == "pods" else None
        if refused is not None:
            raise refused
        key = (kind, namespace, body["metadata"]["name"])
        if key in self.objects:
            raise Conflict(key)
        if dry_run:
            self.dry_runs += 1
            return copy.deepcopy(body)
        self.writes[f"create {kind}"] += 1
        obj = copy.deepcopy(body)
        obj["metadata"].update(uid=str(uuid.uuid4()), namespace=namespace, resourceVersion=str(next(self._rv)))
        self.objects[key] = obj
        self._count_active()
        return copy.deepcopy(obj)

    async def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        key = (kind, namespace, name)
        if key not in self.objects:
            raise NotFound(key)
        self.writes[f"status {kind}"] += 1
        self.objects[key]["status"] = copy.deepcopy(status)

    async def patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """A merge patch of top-level fields (all the recorder's patches need)."""
        key = (kind, namespace, name)
        if key not in self.objects:
            raise NotFound(key)
        self.writes[f"patch {kind}"] += 1
        self.objects[key].update(copy.deepcopy(patch))

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        if self.objects.pop((kind, namespace, name), None) is None:
            raise NotFound(name)
        self.writes[f"delete {kind}"] += 1

    async def pod_log(self, namespace: str, name: str, container: str) -> str:
        if ("pods", namespace, name) not in self.objects:
            raise NotFound(name)
        return self.logs.get((namespace, name), "")

    # -- helpers --------------------------------------------------------------------------------------------
    def add_experiment(self, document: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
        obj = copy.deepcopy(document)
        obj["metadata"].update(namespace=namespace, uid=str(uuid.uuid4()))
        self.objects[("experiments", namespace, obj["metadata"]["name"])] = obj
        return obj

    def experiment(self, name: str, namespace: str = "default") -> dict[str, Any]:
        return copy.deepcopy(self.objects[("experiments", namespace, name)])

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for (k, _, _), o in self.objects.items() if k == kind]

    def active_pods(self) -> list[dict[str, Any]]:
        active = ("Pending", "Running")
        return [p for p in self.of_kind("pods") if p.get("status", {}).get("phase", "Pending") in active]

    def _count_active(self) -> None:
        self.max_active_pods = max(self.max_active_pods, len(self.active_pods()))


class FakeKubelet:
    """Moves pods Pending -> Running -> Succeeded/Failed. ``behaviour(params, pod) -> str`` picks the ending:
    "sdk" (termination-message summary), "log" (metrics only in the log), "fail", "evict", "nometrics"."""

    def __init__(self, cluster: FakeCluster, behaviour=lambda params, pod: "sdk"):
        self.cluster = cluster
        self.behaviour = behaviour

    def step(self, finish: int | None = None) -> int:
        """Starts every pending pod, then finishes up to ``finish`` running pods (all by default)."""
        finished = 0
        for pod in sorted(self.cluster.of_kind("pods"), key=lambda p: p["metadata"]["name"]):
            status = pod.setdefault("status", {"phase": "Pending"})
            if status["phase"] == "Pending":
                status.update(phase="Running", containerStatuses=[
                    {"name": pod["spec"]["containers"][0]["name"], "state": {"running": {}}}])
            elif status["phase"] == "Running" and (finish is None or finished < finish):
                finished += self._advance(pod)
        return finished

    def _advance(self, pod: dict[str, Any]) -> int:
        """Moves one running pod on; 1 when it ended."""
        self._finish(pod)
        return 1

    def _finish(self, pod: dict[str, Any]) -> None:
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}
        params = json.loads(env["KUBETUNE_PARAMS"])
        value = (float(params.get("x", 0.0)) - 2.0) ** 2
        ending = self.behaviour(params, pod)
        name = pod["spec"]["containers"][0]["name"]
        meta = pod["metadata"]
        if ending == "evict":
            pod["status"] = {"phase": "Failed", "reason": "Evicted", "message": "The node was low on memory."}
            return
        if ending == "fail":
            terminated = {"exitCode": 2, "reason": "Error", "message": "Traceback: boom"}
            phase = "Failed"
        elif ending == "log":
            self.cluster.logs[(meta["namespace"], meta["name"])] = f"epoch 1: loss={value}\n"
            terminated, phase = {"exitCode": 0, "reason": "Completed"}, "Succeeded"
        elif ending == "nometrics":
            terminated, phase = {"exitCode": 0, "reason": "Completed"}, "Succeeded"
        else:
            summary: dict[str, dict[str, float]] = {}
            termination.add(summary, "loss", value)
            terminated = {"exitCode": 0, "reason": "Completed", "message": termination.encode(summary)}
            phase = "Succeeded"
        pod["status"] = {"phase": phase, "containerStatuses": [{"name": name, "state": {"terminated": terminated}}]}


class ReportingKubelet(FakeKubelet):
    """A kubelet whose trials report while they run, as ``kubetune.report(step=k, loss=...)`` does in a pod:
    at each :meth:`step` every running pod reports its next step (its loss, ``(x - 2)^2 + 1/step``, falls with
    the steps), through ``push(namespace, trial, attempt, values)``; a pod that reported ``steps`` steps
    succeeds at the next step."""

    def __init__(self, cluster: FakeCluster, push: Callable[[str, str, int, dict[str, float]], None],
                 steps: int = 9) -> None:
        super().__init__(cluster)
        self.push, self.steps = push, steps
        self.reported: Counter[str] = Counter()  # pod name -> steps reported

    def _advance(self, pod: dict[str, Any]) -> int:
        """Reports the pod's next step, or ends it once it reported them all."""
        meta = pod["metadata"]
        if self.reported[meta["name"]] >= self.steps:
            self._finish(pod)
            return 1
        self.reported[meta["name"]] += 1
        step = self.reported[meta["name"]]
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}
        x = float(json.loads(env["KUBETUNE_PARAMS"]).get("x", 0.0))
        self.push(meta["namespace"], meta["labels"]["kubetune.io/trial"], int(meta["labels"]["kubetune.io/attempt"]),
                  {"step": step, "loss": (x - 2.0) ** 2 + 1.0 / step})
        return 0
