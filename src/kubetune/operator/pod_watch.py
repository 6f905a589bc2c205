"""The trial pods' watch: every change of a trial pod, slimmed to what a pass needs, handed to ``on_event``.

kopf watches whole resource kinds (every pod of a namespace, its label filters applied on this side) and
runs its full machinery for each event: wrappers, per-object workers and memories, cause detection, a deep
copy of the body for the handler. With thousands of trials that was a quarter of the operator's CPU, for an
event handler that only passes the pod on. This watch asks the API server for trial pods only (the
``kubetune.io/experiment`` label) and slims each event's pod as it comes
(:func:`kubetune.core.cluster.outcome.essentials`). It reads the stream on the event loop: in a thread of its
own it had to win the GIL back from the loop for every event, and at 2,000 trials in flight fell a minute
behind the pods.

It starts from the pods' current ``resourceVersion`` (the reconciler lists what exists when it follows an
experiment, and the unfinished pods again every minute), resumes from the last version it saw when the stream
ends, and when the API server no longer has that version (410 Gone) starts again from the current one and
calls ``on_gap``: events were missed, and the followed experiments must list their pods again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from kubetune.core.cluster.outcome import essentials

logger = logging.getLogger("kubetune.operator")
WATCH_SECONDS = 300  # the API server ends a watch after this long; it is opened again from the last version
MAX_BACKOFF_SECONDS = 30.0
YIELD_EVERY = 32  # events handled before the loop gets to run something else


class PodStream(Protocol):
    """The two calls of the watch."""

    async def pods_version(self, namespace: str | None) -> str: ...
    def watch_pods(self, namespace: str | None, resource_version: str, timeout_seconds: int
                   ) -> AsyncIterator[bytes]: ...


class Gone(Exception):
    """The API server no longer has the version the watch asked to resume from."""


class PodWatch:
    """One task per namespace watched (``None``: every namespace), from :meth:`start` to :meth:`stop`."""

    def __init__(self, api: PodStream, namespaces: list[str] | None, on_event: Callable[[str, dict], None],
                 on_gap: Callable[[], None]):
        self._api = api
        self._scopes: list[str | None] = list(namespaces) if namespaces else [None]
        self._on_event, self._on_gap = on_event, on_gap
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Reads where each namespace's pods stand now, then watches from there (a namespace whose version
        cannot be read now is tried again by its task, which then calls ``on_gap``)."""
        for scope in self._scopes:
            try:
                version: str | None = await self._api.pods_version(scope)
            except Exception as exc:
                logger.warning("the pod watch%s cannot start yet: %s", _of(scope), exc)
                version = None
            self._tasks.append(asyncio.create_task(self._watch(scope, version)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _watch(self, scope: str | None, version: str | None) -> None:
        backoff = 1.0
        while True:
            try:
                if version is None:
                    version = await self._api.pods_version(scope)
                    self._on_gap()
                version = await self._follow(scope, version)
                backoff = 1.0
            except Gone:
                logger.warning("the pod watch%s fell behind the API server; the experiments list their pods again",
                               _of(scope))
                version = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # unreachable, refused, cut: tried again from the same version
                if getattr(exc, "status", None) == 410:  # refused to resume from a version it no longer has
                    version = None
                    continue
                logger.warning("the pod watch%s failed (again in %.0f s): %s", _of(scope), backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def _follow(self, scope: str | None, version: str) -> str:
        """Reads one watch until the API server ends it; the last version seen."""
        read = 0
        async for line in self._api.watch_pods(scope, version, WATCH_SECONDS):
            read += 1
            if read % YIELD_EVERY == 0:  # a burst already read must not hold the loop for long
                await asyncio.sleep(0)
            event = json.loads(line)
            kind, pod = event.get("type", ""), event.get("object") or {}
            if kind == "ERROR":
                if pod.get("code") == 410:
                    raise Gone(pod.get("message", ""))
                raise RuntimeError(pod.get("message") or f"watch error {pod}")
            version = (pod.get("metadata") or {}).get("resourceVersion") or version
            if kind != "BOOKMARK":
                self._on_event(kind, essentials(pod))
        return version


async def lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The lines of a streamed answer (a watch sends one JSON event per line), whatever its chunks."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            if line.strip():
                yield line
    if pending.strip():
        yield pending


def _of(scope: str | None) -> str:
    return f" of {scope}" if scope else ""
