"""Leader election between operator replicas over a Lease (the rules are in :mod:`kubetune.core.cluster.leadership`).

With ``kubetune operator --leader-election`` a replica first waits for the Lease, serving only its health
endpoint, then runs the operator while it keeps renewing the Lease. If it cannot renew (another replica took
the Lease, or the API stayed unreachable past the renew deadline) it stops the operator and exits with an
error, so Kubernetes restarts it as a standby; stopping on purpose (SIGTERM) releases the Lease so a standby
takes over at once instead of after the Lease's duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from kubetune.core.cluster.leadership import ElectionTiming, LeaseState, claim, may_take, release
from kubetune.operator.api import Conflict, LeaseApi, NotFound

logger = logging.getLogger("kubetune.leader")
DEFAULT_TIMING = ElectionTiming()
RELEASE_ATTEMPTS = 3


class LeadershipLost(Exception):
    """This replica may no longer act: the Lease is someone else's, or could not be renewed in time."""


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class LeaderElection:
    def __init__(self, api: LeaseApi, namespace: str, name: str, identity: str,
                 timing: ElectionTiming = DEFAULT_TIMING, clock: Callable[[], datetime.datetime] = utc_now):
        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.timing, self.clock = timing, clock
        self.holder: str | None = None  # as last seen
        self._lease: LeaseState | None = None  # ours, while we hold it

    async def acquire(self) -> None:
        """Returns once this replica holds the Lease."""
        announced: object = ...
        while True:
            try:
                if await self._try_take():
                    logger.info("leading: holding Lease %s/%s as %s", self.namespace, self.name, self.identity)
                    return
            except (Conflict, NotFound):
                pass  # someone else moved first; look again
            except Exception as exc:  # the API is unreachable: keep waiting, say why once in a while
                logger.warning("cannot read Lease %s/%s: %s", self.namespace, self.name, exc)
            if self.holder != announced:
                logger.info("standing by: Lease %s/%s is held by %s", self.namespace, self.name, self.holder)
                announced = self.holder
            await asyncio.sleep(self.timing.retry_seconds)

    async def hold(self) -> None:
        """Renews the Lease until cancelled; raises :class:`LeadershipLost` when this replica must stop."""
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.timing.retry_seconds)
            try:
                await self._renew()
                renewed = time.monotonic()
                continue
            except LeadershipLost:
                raise
            except Exception as exc:
                logger.warning("cannot renew Lease %s/%s: %s", self.namespace, self.name, exc)
            if time.monotonic() - renewed > self.timing.renew_deadline_seconds:
                raise LeadershipLost(f"Lease {self.namespace}/{self.name} not renewed for "
                                     f"{self.timing.renew_deadline_seconds:g} s")

    async def release(self) -> None:
        """Gives the Lease up (when stopping on purpose), so a standby need not wait for it to expire."""
        if self._lease is None or self._lease.resource_version is None:
            return
        version: str | None = self._lease.resource_version
        self._lease = None
        try:
            for _ in range(RELEASE_ATTEMPTS):
                try:
                    await self.api.patch_lease(self.namespace, self.name, version or "", release())
                    logger.info("released Lease %s/%s", self.namespace, self.name)
                    return
                except Conflict:
                    # A renewal cancelled mid-call still lands from its worker thread and moves the Lease on:
                    # give up the Lease only while it is still ours, at its current version.
                    state = LeaseState.of(await self.api.get_lease(self.namespace, self.name))
                    if state.holder != self.identity:
                        return
                    version = state.resource_version
            raise Conflict(f"the Lease kept changing over {RELEASE_ATTEMPTS} attempts")
        except Exception as exc:  # it will expire instead
            logger.warning("could not release Lease %s/%s: %s", self.namespace, self.name, exc)

    async def _try_take(self) -> bool:
        now = self.clock()
        try:
            lease = await self.api.get_lease(self.namespace, self.name)
        except NotFound:
            created = await self.api.create_lease(self.namespace, self.name, claim(None, self.identity, now,
                                                                                     self.timing))
            self._lease = LeaseState.of(created)
            return True
        state = LeaseState.of(lease)
        self.holder = state.holder
        if not may_take(state, self.identity, now) or state.resource_version is None:
            return False
        patched = await self.api.patch_lease(self.namespace, self.name, state.resource_version,
                                             claim(state, self.identity, now, self.timing))
        self._lease = LeaseState.of(patched)
        self.holder = self.identity
        return True

    async def _renew(self) -> None:
        assert self._lease is not None and self._lease.resource_version is not None
        try:
            patched = await self.api.patch_lease(self.namespace, self.name, self._lease.resource_version,
                                                 claim(self._lease, self.identity, self.clock(), self.timing))
        except Conflict:  # the Lease changed since our last write: is it still ours?
            state = LeaseState.of(await self.api.get_lease(self.namespace, self.name))
            if state.holder != self.identity or state.resource_version is None:
                self._lease = None
                raise LeadershipLost(f"Lease {self.namespace}/{self.name} is now held by {state.holder}") from None
            patched = await self.api.patch_lease(self.namespace, self.name, state.resource_version,
                                                 claim(state, self.identity, self.clock(), self.timing))
        self._lease = LeaseState.of(patched)


async def lead(election: LeaderElection, operate: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
               health_endpoint: str | None = None) -> int:
    """Waits for the Lease, then runs ``operate(stop)`` while holding it. Returns the process exit status:
    0 when the operator stopped on its own (the Lease is released), 1 when leadership was lost."""
    async with _standby_health(health_endpoint):
        await election.acquire()
    stop = asyncio.Event()
    operator = asyncio.create_task(operate(stop))
    keeper = asyncio.create_task(election.hold())
    try:
        await asyncio.wait({operator, keeper}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        operator.cancel()
        raise
    finally:
        if not keeper.done():
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
    if operator.done():
        await election.release()
        operator.result()
        return 0
    logger.error("stopping the operator: %s", keeper.exception())
    stop.set()
    with contextlib.suppress(Exception):
        await operator
    return 1


@contextlib.asynccontextmanager
async def _standby_health(endpoint: str | None) -> AsyncIterator[None]:
    """Answers the liveness probe while standing by (kopf serves it once this replica leads)."""
    if not endpoint:
        yield
        return
    from aiohttp import web

    url = urllib.parse.urlsplit(endpoint)

    async def healthy(_: web.Request) -> web.Response:
        return web.json_response({"standby": True})

    app = web.Application()
    app.router.add_get(url.path or "/", healthy)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, url.hostname or "0.0.0.0", 80 if url.port is None else url.port).start()
        yield
    finally:
        await runner.cleanup()
