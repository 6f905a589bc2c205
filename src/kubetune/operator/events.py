"""Kubernetes Events about Experiments, posted as ``kubetune-operator``: what ``kubectl describe experiment`` shows
for every decision that changes what runs (started, suspended, resumed, held, finished, a trial failed, retried
or stopped early, the spec edited).

:class:`EventRecorder` behaves as client-go's event recorder does, within bounds: the same (object, type,
reason, message) again increments the ``count`` of the Event already posted and patches its ``lastTimestamp``
(client-go's EventLogger); more than ``SIMILAR_LIMIT`` different messages of one reason about one object within
``SIMILAR_WINDOW_SECONDS`` go into one Event "(combined from similar events): ..." (its EventAggregator); and
the writes of one reason about one object are rate-limited by a token bucket (its spam filter), an occurrence
that finds the bucket empty being counted in memory and written with the next write of its Event. So 5,000
failing trials post a few dozen Events, not 5,000. Its caches are bounded; after a restart a new Event is
posted. Posting never fails a pass: an error is logged in one line and counted, never raised.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from kubetune.core.lifecycle import FAILED, TrialRecord, iso
from kubetune.core.plan import ExperimentPhase
from kubetune.operator.api import NotFound
from kubetune.operator.connection import own_identity

logger = logging.getLogger("kubetune.operator.events")

COMPONENT = "kubetune-operator"
NORMAL, WARNING = "Normal", "Warning"
HOLDS = ("SpecChanged", "Forbidden", "PodRefused")  # reasons of an experiment held until something is fixed
SIMILAR_LIMIT = 10  # client-go's defaults: 10 different messages of one reason within 10 minutes, then combined
SIMILAR_WINDOW_SECONDS = 600.0
COMBINED = "(combined from similar events): "
BURST = 25  # writes of one reason about one object at once (client-go's spam filter allows 25 too) ...
REFILL_SECONDS = 10.0  # ... and then one more this often
CACHE_SIZE = 4096  # entries of each cache (client-go's LRU holds 4096)
MESSAGE_LIMIT = 1024  # characters of a message (events.k8s.io/v1 refuses longer ones)
K = TypeVar("K")
V = TypeVar("V")


class EventApi(Protocol):
    """The two calls the recorder makes (a subset of :class:`kubetune.operator.api.ClusterApi`)."""

    async def create(self, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]: ...
    async def patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Note:
    """What one Event says: its type (Normal or Warning), reason (one CamelCase word) and message."""

    type: str
    reason: str
    message: str


@dataclass
class _Event:
    """An Event this recorder posted (or is about to): its name, and the occurrences counted and written."""

    name: str
    namespace: str
    body: dict[str, Any]
    count: int = 1
    written: int = 0  # the count the API server has; 0: not created yet
    writing: bool = False


@dataclass
class _Similar:
    """The different messages of one reason about one object in the current window."""

    last: float
    messages: set[str] = field(default_factory=set)


@dataclass
class _Bucket:
    tokens: float
    at: float

    def take(self, now: float) -> bool:
        self.tokens = min(float(BURST), self.tokens + (now - self.at) / REFILL_SECONDS)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class EventRecorder:
    """Posts core/v1 Events through ``api``; ``count(outcome)`` is told of each occurrence's outcome: ``posted``,
    ``updated``, ``deferred`` (rate-limited: written with the next write of its Event) or ``failed``."""

    def __init__(self, api: EventApi, instance: str | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] | None = None, count: Callable[[str], None] = lambda outcome: None):
        self.api, self.instance, self.clock, self.count = api, instance or own_identity(), clock, count
        self.monotonic = monotonic or (lambda: self.clock().timestamp())
        self._events: OrderedDict[tuple[str, ...], _Event] = OrderedDict()
        self._similar: OrderedDict[tuple[str, ...], _Similar] = OrderedDict()
        self._buckets: OrderedDict[tuple[str, ...], _Bucket] = OrderedDict()
        self._last_name_stamp = 0

    async def record(self, involved: dict[str, Any], note: Note) -> None:
        """Posts ``note`` about the object ``involved`` (its :func:`reference`), or counts it on the Event that
        already says it. Never raises."""
        try:
            event = self._occurrence(involved, note)
            if event is None:
                self.count("deferred")
                return
            await self._write(event)
        except Exception as exc:  # an Event is never worth a failed pass
            self.count("failed")
            logger.warning("could not post the Event %s about %s %s: %s", note.reason, involved.get("kind"),
                           involved.get("name"), exc or type(exc).__name__)

    def _occurrence(self, involved: dict[str, Any], note: Note) -> _Event | None:
        """Counts one occurrence on its Event (made if new); the Event, if a write is allowed now."""
        now, stamp = self.monotonic(), iso(self.clock())
        subject = (involved["namespace"], involved["kind"], involved["name"], involved.get("uid", ""))
        message = self._combined(subject, note, note.message[:MESSAGE_LIMIT], now)
        key = (*subject, note.type, note.reason, "" if message.startswith(COMBINED) else message)
        event = _recent(self._events, key)
        if event is None:
            event = _Event(self._name(involved["name"]), involved["namespace"], {
                "apiVersion": "v1", "kind": "Event", "involvedObject": involved, "type": note.type,
                "reason": note.reason, "firstTimestamp": stamp, "source": {"component": COMPONENT},
                "reportingComponent": COMPONENT, "reportingInstance": self.instance[:128]})
            _keep(self._events, key, event)
        else:
            event.count += 1
        event.body.update(message=message, lastTimestamp=stamp, count=event.count)
        bucket = _recent(self._buckets, (*subject, note.reason))
        if bucket is None:
            bucket = _keep(self._buckets, (*subject, note.reason), _Bucket(float(BURST), now))
        return event if bucket.take(now) else None

    def _combined(self, subject: tuple[str, ...], note: Note, message: str, now: float) -> str:
        """The message as posted: itself, or marked combined once the reason had too many different ones."""
        key = (*subject, note.type, note.reason)
        similar = _recent(self._similar, key)
        if similar is None or now - similar.last > SIMILAR_WINDOW_SECONDS:
            similar = _keep(self._similar, key, _Similar(now))
        similar.last = now
        if message in similar.messages or len(similar.messages) < SIMILAR_LIMIT:
            similar.messages.add(message)
            return message
        return (COMBINED + message)[:MESSAGE_LIMIT]

    async def _write(self, event: _Event) -> None:
        """Writes the Event as it stands; an occurrence counted while a write is in flight is written right after
        it, by the same call, so that two writes of one Event never race."""
        if event.writing:
            return
        event.writing = True
        try:
            while event.written < event.count:
                count = event.count
                await self._send(event)
                event.written = count
        finally:
            event.writing = False

    async def _send(self, event: _Event) -> None:
        body = event.body
        if event.written:
            try:
                await self.api.patch("events", event.namespace, event.name, {
                    key: body[key] for key in ("count", "lastTimestamp", "message")})
                self.count("updated")
                return
            except NotFound:  # expired (the API server keeps Events an hour): posted again
                event.name = self._name(body["involvedObject"]["name"])
        # one that fails stays unwritten, with its count, for the next occurrence to post
        await self.api.create("events", event.namespace,
                              {**body, "metadata": {"name": event.name, "namespace": event.namespace}})
        self.count("posted")

    def _name(self, involved_name: str) -> str:
        """A name of its own, as client-go makes them: the object's name and a timestamp in hexadecimal."""
        stamp = max(int(self.clock().timestamp() * 1e9), self._last_name_stamp + 1)
        self._last_name_stamp = stamp
        return f"{involved_name}.{stamp:x}"


def reference(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The ``involvedObject`` of an Event about ``obj``. kubectl describe finds Events by name, namespace, kind
    and uid."""
    meta = obj.get("metadata") or {}
    found = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": meta.get("name"),
             "namespace": meta.get("namespace") or "default", "uid": meta.get("uid")}
    return {key: value for key, value in found.items() if value}


def _recent(cache: OrderedDict[K, V], key: K) -> V | None:
    """The cached value, marked most recently used."""
    value = cache.get(key)
    if value is not None:
        cache.move_to_end(key)
    return value


def _keep(cache: OrderedDict[K, V], key: K, value: V) -> V:
    """Caches ``value``, forgetting the least recently used entry beyond ``CACHE_SIZE``."""
    cache[key] = value
    if len(cache) > CACHE_SIZE:
        cache.popitem(last=False)
    return value


# -- what each decision says --------------------------------------------------------------------------------
def phase_changed(before: str | None, after: str, reason: str, message: str) -> Note | None:
    """The Event of an experiment's move from phase ``before`` to ``after`` (with the reason and message of the
    decision that moved it), or None when it did not move."""
    if before == after:
        return None
    if after == ExperimentPhase.SUSPENDED:
        return Note(NORMAL, "Suspended", message)
    if after == ExperimentPhase.RUNNING:
        resumed = before == ExperimentPhase.SUSPENDED
        return Note(NORMAL, "Resumed" if resumed else "Started", message)
    if after == ExperimentPhase.FAILED:
        return Note(WARNING, reason, message)
    if after == ExperimentPhase.SUCCEEDED:
        return Note(NORMAL, reason, message)
    return None


def hold_lifted(before: str | None, after: str | None) -> Note | None:
    """The Event of a hold that ended: the status's reason was a hold (``HOLDS``) and no longer is."""
    if before in HOLDS and after not in HOLDS:
        return Note(NORMAL, "HoldLifted", f"{before} no longer holds the experiment: trials start again")
    return None


def trial_ended(record: TrialRecord) -> Note | None:
    """The Event of a trial that just got its result: a Warning when it failed; None otherwise (a success is the
    normal course, and counted in the Experiment's status)."""
    if record.state not in FAILED:
        return None
    why = ": ".join(part for part in (record.reason, record.message) if part)
    return Note(WARNING, "TrialFailed", f"trial {record.id} failed" + (f": {why}" if why else ""))


def trial_retried(record: TrialRecord) -> Note:
    """The Event of a trial whose attempt failed and that runs again (``record`` as settled, before the next
    attempt starts)."""
    why = ": ".join(part for part in (record.reason, record.message) if part) or "no reason given"
    return Note(NORMAL, "TrialRetried",
                f"trial {record.id}: attempt {record.attempts} failed ({why}); starting attempt {record.attempts + 1}")


def trial_stopped_early(record: TrialRecord) -> Note:
    return Note(NORMAL, "TrialStoppedEarly", f"trial {record.id} {record.message or 'stopped early'}")
