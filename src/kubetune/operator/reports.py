"""The report endpoint: trial pods push their intermediate values here while they run, for early stopping.

``POST /v1/reports`` with ``{"trial": NAME, "namespace": NS, "values": {"step": 3, "loss": 0.4}}`` and
``Authorization: Bearer TOKEN`` (the pod's ``$KUBETUNE_REPORT_TOKEN``, see
:mod:`kubetune.core.cluster.report_token`). A report is checked and queued for the experiment's next
reconciliation pass (:class:`ReportSink`, the reconciler), which is woken; the endpoint itself writes and
deletes nothing. Refusals carry a status code and a one-line reason, and are logged: 401 a missing or
forged token, 403 a token of another trial or of an earlier attempt, 404 an unknown trial, 409 a trial that
has ended, 413 a body over :data:`MAX_BODY_BYTES`, 400 malformed JSON or values, 503 an experiment the
operator has not listed yet (after a restart). Served over plain HTTP inside the cluster (the token, not the
transport, is what authorises a report; see the README).

The key is 32 random bytes in the Secret :data:`KEY_SECRET` of the operator's namespace, created by the
first operator that finds it missing and read by every later one, so tokens outlive restarts.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from kubetune.core.cluster.report_token import KEY_BYTES, Claim, read_token
from kubetune.operator.api import Conflict, NotFound, SecretApi

logger = logging.getLogger("kubetune.operator.reports")
PATH = "/v1/reports"
MAX_BODY_BYTES = 16 * 1024
KEY_SECRET = "kubetune-report-key"
KEY_FIELD = "key"
DEFAULT_PORT = 8090


@dataclass(frozen=True)
class Standing:
    """What the endpoint needs to know of a trial: its experiment, its current attempt, whether it ended, and
    the experiment's resource field (``step`` by default). ``ready`` is False while the operator has not
    listed the experiment yet."""

    experiment: str
    attempt: int = 0
    ended: bool = False
    resource: str = "step"
    ready: bool = True


class ReportSink(Protocol):
    def standing(self, namespace: str, trial: str) -> Standing | None:
        """The trial's standing; None for a trial of no experiment the operator follows, or unknown to it."""

    def accept(self, namespace: str, experiment: str, trial: str, attempt: int, values: dict[str, float]) -> None:
        """Queues one checked report for the experiment's next pass."""


class Refused(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


def make_app(key: bytes, sink: ReportSink, wake: Callable[[str, str], None]) -> web.Application:
    """The endpoint's application; ``wake(namespace, experiment)`` wakes the experiment's reconciler."""

    async def receive(request: web.Request) -> web.Response:
        try:
            namespace, experiment, trial = await _check(request, key, sink)
        except Refused as refusal:
            logger.warning("report refused (%d) from %s: %s", refusal.status, request.remote, refusal.reason)
            return web.json_response({"error": refusal.reason}, status=refusal.status)
        wake(namespace, experiment)
        return web.json_response({"accepted": trial}, status=202)

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post(PATH, receive)
    return app


async def _check(request: web.Request, key: bytes, sink: ReportSink) -> tuple[str, str, str]:
    """Checks one report and queues it; (namespace, experiment, trial). Raises :class:`Refused`."""
    claim = _claim(request.headers.get("Authorization", ""), key)
    body = await _body(request)
    namespace, trial, values = _parse(body)
    if (claim.namespace, claim.trial) != (namespace, trial):
        raise Refused(403, f"the token is for trial {claim.namespace}/{claim.trial}, not {namespace}/{trial}")
    standing = sink.standing(namespace, trial)
    if standing is None:
        raise Refused(404, f"no trial {namespace}/{trial} is known to the operator")
    if not standing.ready:
        raise Refused(503, f"the operator has not listed experiment {namespace}/{standing.experiment} yet")
    if standing.ended:
        raise Refused(409, f"trial {namespace}/{trial} has ended")
    if claim.attempt != standing.attempt:
        raise Refused(403, f"the token is for attempt {claim.attempt} of {namespace}/{trial}, which is at "
                           f"attempt {standing.attempt}")
    sink.accept(namespace, standing.experiment, trial, claim.attempt, _numbers(values, standing.resource))
    return namespace, standing.experiment, trial


def _claim(authorization: str, key: bytes) -> Claim:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Refused(401, "no bearer token (Authorization: Bearer $KUBETUNE_REPORT_TOKEN)")
    claim = read_token(key, token.strip())
    if claim is None:
        raise Refused(401, "the token was not issued by this operator")
    return claim


async def _body(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise Refused(413, f"a report is at most {MAX_BODY_BYTES} bytes")
    raw = b""
    while chunk := await request.content.read(MAX_BODY_BYTES + 1 - len(raw)):
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:  # a body sent without its length, or with a false one
            raise Refused(413, f"a report is at most {MAX_BODY_BYTES} bytes")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Refused(400, f"the body is not JSON: {exc}") from None


def _parse(body: Any) -> tuple[str, str, dict[str, Any]]:
    if not isinstance(body, dict):
        raise Refused(400, 'the body must be a JSON object {"trial": ..., "namespace": ..., "values": {...}}')
    namespace, trial, values = body.get("namespace"), body.get("trial"), body.get("values")
    if not isinstance(namespace, str) or not isinstance(trial, str) or not namespace or not trial:
        raise Refused(400, '"trial" and "namespace" must be non-empty strings')
    if not isinstance(values, dict) or not values:
        raise Refused(400, '"values" must be a non-empty object of numbers')
    return namespace, trial, values


def _numbers(values: dict[str, Any], resource: str) -> dict[str, float]:
    """The report's values as floats; refused when one is not a number a float holds, or the resource is
    missing or not finite."""
    bad = sorted(name for name, value in values.items()
                 if isinstance(value, bool) or not isinstance(value, int | float))
    if bad:
        raise Refused(400, f"values must be numbers; not: {', '.join(bad)}")
    try:
        numbers = {name: float(value) for name, value in values.items()}
    except OverflowError:  # an integer of hundreds of digits
        raise Refused(400, "values must be numbers within a double's range") from None
    step = numbers.get(resource)
    if step is None:
        raise Refused(400, f"the report has no {resource!r} (the experiment's earlyStopping.resource)")
    if not math.isfinite(step):
        raise Refused(400, f"{resource!r} must be a finite number, not {step}")
    return numbers


async def load_key(api: SecretApi, namespace: str) -> bytes:
    """The report key from the Secret in the operator's namespace, created with a fresh key if missing (by
    whichever operator gets there first: one that finds it created meanwhile reads that one)."""
    try:
        secret = await api.get_secret(namespace, KEY_SECRET)
    except NotFound:
        data = {KEY_FIELD: base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}
        try:
            secret = await api.create_secret(namespace, KEY_SECRET, data)
            logger.info("created the report key Secret %s/%s", namespace, KEY_SECRET)
        except Conflict:
            secret = await api.get_secret(namespace, KEY_SECRET)
    encoded = (secret.get("data") or {}).get(KEY_FIELD)
    key = base64.b64decode(encoded) if encoded else b""
    if len(key) < KEY_BYTES:
        raise ValueError(f"Secret {namespace}/{KEY_SECRET} has no {KEY_FIELD!r} of {KEY_BYTES} bytes; delete it and "
                         "the operator creates a new one")
    return key


async def serve(app: web.Application, port: int, host: str = "0.0.0.0") -> web.AppRunner:  # noqa: S104
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
