"""Leader election: the Lease rules, the election against the real API server (a conditional patch with a
stale resourceVersion answers 409), and :func:`lead` stopping the operator when leadership is lost."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import socket
import urllib.request

import pytest
from kubernetes import config

from kubetune.core.cluster.leadership import (
    ElectionTiming,
    LeaseState,
    claim,
    format_micro_time,
    may_take,
    parse_micro_time,
)
from kubetune.operator.api import Conflict, KubernetesApi
from kubetune.operator.leader import LeaderElection, lead

NOW = datetime.datetime(2026, 11, 22, 12, 0, 0, 250000, tzinfo=datetime.UTC)
# Short enough for a test, long enough that a busy machine still renews in time.
TIMING = ElectionTiming(duration_seconds=6, renew_deadline_seconds=4.0, retry_seconds=0.2)
# A hand-over "at once" comes before the Lease could have expired; waiting for the expiry would take longer.
AT_ONCE = TIMING.duration_seconds - 1.0
# A bound for what is not under test (a free Lease taken, an operator started): only a hang exceeds it.
SOON = 30.0


def lease(holder: str | None, renewed: datetime.datetime | None, duration: int = 15, transitions: int = 0) -> dict:
    spec = {"holderIdentity": holder, "leaseDurationSeconds": duration, "leaseTransitions": transitions}
    if renewed is not None:
        spec.update(acquireTime=format_micro_time(renewed), renewTime=format_micro_time(renewed))
    return {"metadata": {"resourceVersion": "7"}, "spec": spec}


def test_micro_time_round_trips():
    assert format_micro_time(NOW) == "2026-11-22T12:00:00.250000Z"
    assert parse_micro_time(format_micro_time(NOW)) == NOW


@pytest.mark.parametrize(("holder", "age", "expected"), [
    (None, None, True),  # nobody holds it
    ("b", 5, False),  # held and renewed 5 s ago
    ("b", 15, True),  # the holder has been silent for the whole duration
    ("a", 5, True),  # already ours
])
def test_who_may_take_the_lease(holder, age, expected):
    renewed = None if age is None else NOW - datetime.timedelta(seconds=age)
    assert may_take(LeaseState.of(lease(holder, renewed)), "a", NOW) is expected


def test_claim_counts_transitions_and_keeps_the_acquire_time_on_renewal():
    taken = claim(LeaseState.of(lease("b", NOW - datetime.timedelta(seconds=30), transitions=3)), "a", NOW, TIMING)
    assert taken["holderIdentity"] == "a" and taken["leaseTransitions"] == 4
    assert taken["acquireTime"] == taken["renewTime"] == format_micro_time(NOW)
    later = NOW + datetime.timedelta(seconds=1)
    renewed = claim(LeaseState.of({"metadata": {"resourceVersion": "8"}, "spec": taken}), "a", later, TIMING)
    assert renewed["leaseTransitions"] == 4
    assert renewed["acquireTime"] == format_micro_time(NOW) and renewed["renewTime"] == format_micro_time(later)
    assert claim(None, "a", NOW, TIMING)["leaseTransitions"] == 0


def test_timing_must_let_the_holder_stop_before_others_may_take_over():
    with pytest.raises(ValueError):
        ElectionTiming(duration_seconds=5, renew_deadline_seconds=6)


@pytest.fixture
def leases(namespace):
    """The Lease calls, as an admin, in the test's own namespace of the real control plane."""
    api = KubernetesApi(config.new_client_from_config(str(namespace.cluster.admin_kubeconfig)))
    return api, namespace.name


def election(leases, identity: str) -> LeaderElection:
    api, namespace = leases
    return LeaderElection(api, namespace, "kubetune-operator", identity, TIMING)


@pytest.mark.asyncio
async def test_a_stale_lease_write_is_refused(leases):
    api, ns = leases
    created = await api.create_lease(ns, "l", {"holderIdentity": "a"})
    version = created["metadata"]["resourceVersion"]
    await api.patch_lease(ns, "l", version, {"holderIdentity": "b"})
    with pytest.raises(Conflict):
        await api.patch_lease(ns, "l", version, {"holderIdentity": "c"})
    assert (await api.get_lease(ns, "l"))["spec"]["holderIdentity"] == "b"


@pytest.mark.asyncio
async def test_only_one_replica_leads_and_a_release_hands_over_at_once(leases):
    api, ns = leases
    first, second = election(leases, "first"), election(leases, "second")
    await first.acquire()
    holding = asyncio.create_task(first.hold())
    with pytest.raises(TimeoutError):  # renewed all along: the Lease never expires
        await asyncio.wait_for(second.acquire(), 2 * TIMING.duration_seconds)
    holding.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await holding
    await first.release()
    await asyncio.wait_for(second.acquire(), AT_ONCE)
    state = LeaseState.of(await api.get_lease(ns, "kubetune-operator"))
    assert state.holder == "second" and state.transitions == 1


@pytest.mark.asyncio
async def test_a_release_after_a_renewal_it_never_saw_still_hands_over(leases):
    """A renewal cancelled mid-call still lands from its worker thread, so the holder's last known
    resourceVersion is stale when it releases: the release must not be refused with 409."""
    api, ns = leases
    first, second = election(leases, "first"), election(leases, "second")
    await first.acquire()
    current = LeaseState.of(await api.get_lease(ns, "kubetune-operator"))
    late_renewal = claim(current, "first", datetime.datetime.now(datetime.UTC), TIMING)
    await api.patch_lease(ns, "kubetune-operator", current.resource_version, late_renewal)
    await first.release()
    await asyncio.wait_for(second.acquire(), AT_ONCE)
    assert LeaseState.of(await api.get_lease(ns, "kubetune-operator")).holder == "second"


@pytest.mark.asyncio
async def test_a_silent_holder_is_replaced_after_the_duration(leases):
    api, ns = leases
    first, second = election(leases, "first"), election(leases, "second")
    await first.acquire()  # and then never renews, as if it hung
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(second.acquire(), 3 * TIMING.duration_seconds)
    assert loop.time() - started >= TIMING.duration_seconds - 0.5


@pytest.mark.asyncio
async def test_lead_stops_the_operator_when_the_lease_is_lost(leases):
    api, ns = leases
    operating, stopped = asyncio.Event(), asyncio.Event()

    async def operate(stop: asyncio.Event) -> None:
        operating.set()
        await stop.wait()
        stopped.set()

    leading = asyncio.create_task(lead(election(leases, "first"), operate))
    await asyncio.wait_for(operating.wait(), SOON)
    # another replica took the Lease (the first one's renewals did not reach the server in time)
    current = await api.get_lease(ns, "kubetune-operator")
    await api.patch_lease(ns, "kubetune-operator", current["metadata"]["resourceVersion"],
                          {"holderIdentity": "second"})
    assert await asyncio.wait_for(leading, AT_ONCE) == 1
    assert stopped.is_set()


@pytest.mark.asyncio
async def test_lead_releases_the_lease_when_the_operator_stops_on_its_own(leases):
    api, ns = leases
    first, second = election(leases, "first"), election(leases, "second")

    async def operate(stop: asyncio.Event) -> None:
        await asyncio.sleep(0.3)

    assert await lead(first, operate) == 0
    await asyncio.wait_for(second.acquire(), AT_ONCE)


@pytest.mark.asyncio
async def test_a_standby_answers_its_liveness_probe_until_it_leads(leases):
    api, ns = leases
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    holder = election(leases, "first")
    await holder.acquire()
    operating = asyncio.Event()

    async def operate(stop: asyncio.Event) -> None:
        operating.set()
        await stop.wait()

    standby = asyncio.create_task(lead(election(leases, "second"), operate, f"http://127.0.0.1:{port}/healthz"))
    url = f"http://127.0.0.1:{port}/healthz"
    deadline = asyncio.get_running_loop().time() + SOON
    while True:
        try:
            answer = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=2).read())
            break
        except OSError:
            assert asyncio.get_running_loop().time() < deadline, "the standby never answered its liveness probe"
            await asyncio.sleep(0.1)
    assert json.loads(answer) == {"standby": True} and not operating.is_set()
    await holder.release()
    await asyncio.wait_for(operating.wait(), AT_ONCE)
    with pytest.raises(OSError):  # the standby server is gone: kopf serves the probe from now on
        await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=2).read())
    standby.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await standby
