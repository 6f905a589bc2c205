"""The trial pods' watch: every change of a trial pod, slimmed to what a pass needs, handed to the event loop.

kopf watches whole resource kinds (every pod of a namespace, its label filters applied on this side) and
runs its full machinery for each event: wrappers, per-object workers and memories, cause detection, a deep
copy of the body for the handler. With thousands of trials that was a quarter of the operator's CPU, for an
event handler that only passes the pod on. This watch asks the API server for trial pods only (the
``kubetune.io/experiment`` label), reads the stream in a thread of its own, parses and slims each pod there
(:func:`kubetune.core.cluster.outcome.essentials`), and calls ``on_event`` on the loop.

It starts from the pods' current ``resourceVersion`` (the reconciler lists what exists when it follows an
experiment, and again every minute), resumes from the last version it saw when the stream ends, and when the
API server no longer has that version (410 Gone) starts again from the current one and calls ``on_gap``:
events were missed, and the followed experiments must list their pods again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from kubetune.core.cluster.outcome import essentials

logger = logging.getLogger("kubetune.operator")
WATCH_SECONDS = 300  # the API server ends a watch after this long; it is opened again from the last version
MAX_BACKOFF_SECONDS = 30.0


class PodStream(Protocol):
    """The two calls of the watch, both blocking (made in the watch's thread)."""

    def pods_version(self, namespace: str | None) -> str: ...
    def watch_pods(self, namespace: str | None, resource_version: str, timeout_seconds: int) -> Any: ...


class Gone(Exception):
    """The API server no longer has the version the watch asked to resume from."""


class PodWatch:
    """One thread per namespace watched (``None``: every namespace), from :meth:`start` to :meth:`stop`."""

    def __init__(self, api: PodStream, namespaces: list[str] | None, on_event: Callable[[str, dict], None],
                 on_gap: Callable[[], None]):
        self._api = api
        self._scopes: list[str | None] = list(namespaces) if namespaces else [None]
        self._on_event, self._on_gap = on_event, on_gap
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    async def start(self) -> None:
        """Reads where each namespace's pods stand now, then watches from there (a namespace whose version
        cannot be read now is tried again by its thread, which then calls ``on_gap``)."""
        loop = asyncio.get_running_loop()
        for scope in self._scopes:
            try:
                version: str | None = await asyncio.to_thread(self._api.pods_version, scope)
            except Exception as exc:
                logger.warning("the pod watch%s cannot start yet: %s", f" of {scope}" if scope else "", exc)
                version = None
            thread = threading.Thread(target=self._watch, args=(loop, scope, version), daemon=True,
                                      name=f"kubetune-pod-watch-{scope or 'all'}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Hands nothing more to the loop. A thread waiting for the stream's next line ends once it comes (its
        threads are daemons: they do not hold the process up); closing the stream from here would wait for that
        read to return."""
        self._stopping.set()

    def _watch(self, loop: asyncio.AbstractEventLoop, scope: str | None, version: str | None) -> None:
        backoff = 1.0
        while not self._stopping.is_set():
            try:
                if version is None:
                    version = self._api.pods_version(scope)
                    loop.call_soon_threadsafe(self._on_gap)
                version = self._follow(loop, scope, version)
                backoff = 1.0
            except Gone:
                logger.warning("the pod watch%s fell behind the API server; the experiments list their pods again",
                               f" of {scope}" if scope else "")
                version = None
            except Exception as exc:  # unreachable, refused, cut: tried again from the same version
                if self._stopping.is_set():
                    return
                if getattr(exc, "status", None) == 410:  # refused to resume from a version it no longer has
                    version = None
                    continue
                logger.warning("the pod watch%s failed (again in %.0f s): %s", f" of {scope}" if scope else "",
                               backoff, exc)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def _follow(self, loop: asyncio.AbstractEventLoop, scope: str | None, version: str) -> str:
        """Reads one watch until the API server ends it; the last version seen."""
        response = self._api.watch_pods(scope, version, WATCH_SECONDS)
        try:
            for line in lines(response):
                if self._stopping.is_set():
                    break
                event = json.loads(line)
                kind, pod = event.get("type", ""), event.get("object") or {}
                if kind == "ERROR":
                    if pod.get("code") == 410:
                        raise Gone(pod.get("message", ""))
                    raise RuntimeError(pod.get("message") or f"watch error {pod}")
                version = (pod.get("metadata") or {}).get("resourceVersion") or version
                if kind != "BOOKMARK":
                    loop.call_soon_threadsafe(self._on_event, kind, essentials(pod))
        finally:
            response.close()
        return version


def lines(response: Any) -> Iterator[bytes]:
    """The lines of a streamed response (a watch sends one JSON event per line)."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=False):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line for line in complete if line.strip())
    if pending.strip():
        yield pending
