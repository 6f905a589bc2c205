"""The kopf handlers: thin glue between Kubernetes events and :class:`~kubetune.operator.reconcile.Reconciler`.

Each Experiment gets a kopf daemon that runs reconciliation passes until the experiment ends. A pass runs
when a pod of the experiment changes (the pod handler wakes the daemon) and at least every
``RESYNC_SECONDS`` regardless, so a missed event costs latency, never correctness. Experiments are
independent tasks, and the GP suggestion runs in a worker thread, so one slow experiment never stalls the
others. Two replicas never both act: kopf's peering lets one run and pauses the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from typing import Any

import kopf

from kubetune.core.crd import GROUP, VERSION
from kubetune.core.gpu_sharing import GpuSharing
from kubetune.core.pods import EXPERIMENT_LABEL
from kubetune.operator.api import ClusterApi, KubernetesApi
from kubetune.operator.reconcile import Reconciler

RESYNC_SECONDS = 10.0


class OperatorState:
    """What the handlers share: the reconciler and one wake-up event per experiment (no other state)."""

    def __init__(self, api: ClusterApi, sharing: GpuSharing):
        self.reconciler = Reconciler(api, sharing)
        self.wakers: dict[tuple[str, str], asyncio.Event] = {}

    def waker(self, namespace: str, name: str) -> asyncio.Event:
        return self.wakers.setdefault((namespace, name), asyncio.Event())


_configuration: dict[str, Any] = {"sharing": GpuSharing(), "api": None}


def configure(sharing: GpuSharing, api: ClusterApi | None = None) -> None:
    """Called by ``kubetune operator`` (or a test) before kopf starts."""
    _configuration.update(sharing=sharing, api=api)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/operator"
    settings.posting.level = 20  # INFO and above become Kubernetes Events
    api = _configuration["api"] or KubernetesApi()
    memo.state = OperatorState(api, _configuration["sharing"])


@kopf.daemon(GROUP, VERSION, "experiments", cancellation_timeout=10.0)
async def run_experiment(body: kopf.Body, meta: kopf.Meta, memo: kopf.Memo, stopped: kopf.DaemonStopped,
                         logger: Any, **_: Any) -> None:
    state: OperatorState = memo.state
    waker = state.waker(meta.namespace, meta.name)
    reported_invalid = False
    while not stopped:
        waker.clear()
        result = await state.reconciler.reconcile(copy.deepcopy(dict(body)))
        if result.status.get("reason") == "InvalidSpec" and not reported_invalid:
            kopf.warn(body, reason="InvalidSpec", message=result.status.get("message", ""))
            reported_invalid = True
        if result.done:
            reason, message = result.status.get("reason", "Finished"), result.status.get("message", "")
            if reason != "InvalidSpec":
                kopf.info(body, reason=reason, message=message)
            logger.info("experiment %s: %s (%s)", meta.name, result.status.get("phase"), reason)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waker.wait(), RESYNC_SECONDS)


@kopf.on.event("", "v1", "pods", labels={EXPERIMENT_LABEL: kopf.PRESENT})
async def pod_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    state: OperatorState | None = getattr(memo, "state", None)
    if state is None:
        return
    experiment = body.get("metadata", {}).get("labels", {}).get(EXPERIMENT_LABEL)
    namespace = body.get("metadata", {}).get("namespace")
    if experiment and namespace:
        state.waker(namespace, experiment).set()


@kopf.on.delete(GROUP, VERSION, "experiments", optional=True)
async def experiment_deleted(meta: kopf.Meta, memo: kopf.Memo, **_: Any) -> None:
    state: OperatorState | None = getattr(memo, "state", None)
    if state is not None:
        state.reconciler.forget(meta.uid)
        state.wakers.pop((meta.namespace, meta.name), None)
