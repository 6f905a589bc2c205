"""The report endpoint (kubetune.operator.reports), its tokens, the pod's report variables and the SDK's push."""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import math
import string
import threading

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

import kubetune.trial.push as push_module
from conftest import FUZZ, JSON_LEAVES, JSON_VALUES, manifest
from kubetune.core.cluster.gpu_sharing import GpuSharing
from kubetune.core.cluster.pods import ReportTarget, render_pod
from kubetune.core.cluster.report_token import read_token, report_token
from kubetune.core.manifest import load_experiment
from kubetune.operator.api import Forbidden, NotFound
from kubetune.operator.reports import KEY_SECRET, MAX_BODY_BYTES, PATH, Standing, load_key, make_app
from kubetune.operator.startup import OperatorStartError, _report_key

KEY = b"k" * 32


class Sink:
    def __init__(self) -> None:
        self.trials = {"demo-1": Standing("demo", attempt=1), "demo-2": Standing("demo", attempt=2),
                       "demo-3": Standing("demo", attempt=1, ended=True)}
        self.accepted: list[tuple] = []

    def standing(self, namespace, trial):
        return self.trials.get(trial) if namespace == "ns" else None

    def accept(self, namespace, experiment, trial, attempt, values):
        self.accepted.append((namespace, experiment, trial, attempt, values))


def post(body, token=None, raw=None):
    """(status, answer, sink, woken) of one report."""

    async def go():
        sink, woken = Sink(), []
        app = make_app(KEY, sink, lambda ns, name: woken.append((ns, name)))
        async with TestClient(TestServer(app)) as client:
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            data = raw if raw is not None else json.dumps(body)
            answer = await client.post(PATH, data=data, headers=headers)
            return answer.status, await answer.json(), sink, woken

    return asyncio.run(go())


def report(trial="demo-1", **values):
    return {"trial": trial, "namespace": "ns", "values": values or {"step": 3, "loss": 0.4}}


def test_a_genuine_report_is_accepted_queued_and_wakes_the_experiment():
    status, answer, sink, woken = post(report(), report_token(KEY, "ns", "demo-1", 1))
    assert status == 202, answer
    assert sink.accepted == [("ns", "demo", "demo-1", 1, {"step": 3, "loss": 0.4})]
    assert woken == [("ns", "demo")]


def test_nan_is_a_value_but_not_a_step():
    token = report_token(KEY, "ns", "demo-1", 1)
    assert post(None, token, raw='{"trial": "demo-1", "namespace": "ns", "values": {"step": 1, "loss": NaN}}')[0] == 202
    status, answer, sink, _ = post(None, token, raw='{"trial": "demo-1", "namespace": "ns", '
                                                    '"values": {"step": NaN, "loss": 1}}')
    assert status == 400 and "step" in answer["error"] and not sink.accepted


def forged() -> str:
    claim = base64.urlsafe_b64encode(b"ns/demo-1/1").decode().rstrip("=")
    return f"{claim}.{'A' * 43}"


GOOD = report_token(KEY, "ns", "demo-1", 1)
BIG = report(step=1, loss=1.0, **{f"m{i}": 1.0 for i in range(2000)})
# case: (expected status, body, token, raw body)
REFUSALS = {
    "missing token": (401, report(), None, None),
    "forged token": (401, report(), forged(), None),
    "another key": (401, report(), report_token(b"x" * 32, "ns", "demo-1", 1), None),
    "another trial's token": (403, report(), report_token(KEY, "ns", "demo-2", 2), None),
    "stale attempt": (403, report("demo-2"), report_token(KEY, "ns", "demo-2", 1), None),
    "unknown trial": (404, report("demo-9"), report_token(KEY, "ns", "demo-9", 1), None),
    "ended trial": (409, report("demo-3"), report_token(KEY, "ns", "demo-3", 1), None),
    "oversized": (413, BIG, GOOD, None),
    "not JSON": (400, None, GOOD, "{not json"),
    "not an object": (400, None, GOOD, "[1, 2]"),
    "text value": (400, report(step=1, loss="low"), GOOD, None),
    "no step": (400, report(loss=0.3), GOOD, None),
    "boolean value": (400, report(step=1, loss=True), GOOD, None),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals(case, caplog):
    expected, body, token, raw = REFUSALS[case]
    assert len(json.dumps(BIG)) > MAX_BODY_BYTES
    status, answer, sink, woken = post(body, token, raw)
    assert status == expected, answer
    assert answer["error"] and not sink.accepted and not woken
    assert any("report refused" in r.getMessage() and str(expected) in r.getMessage() for r in caplog.records)


tokens = st.sampled_from([GOOD, forged(), report_token(KEY, "ns", "demo-2", 2), report_token(KEY, "ns", "demo-3", 1)]
                         ) | st.none() | st.text(string.ascii_letters + string.digits + "-_.=/ ", max_size=60)


def answered_clearly(body, token) -> None:
    """The endpoint answers with one of its statuses; what it accepts is floats with a finite step."""
    status, answer, sink, woken = post(body, token)
    assert status in (202, 400, 401, 403, 404, 409, 413), (status, answer)
    if status != 202:
        assert answer["error"] and not sink.accepted and not woken
        return
    [(_, _, _, _, values)] = sink.accepted
    assert all(type(value) is float for value in values.values()) and math.isfinite(values["step"])


@FUZZ
@given(body=JSON_VALUES | st.fixed_dictionaries({
    "trial": st.sampled_from(["demo-1", "demo-2", "demo-3", "demo-9", ""]) | JSON_VALUES,
    "namespace": st.just("ns") | JSON_VALUES, "values": JSON_VALUES}), token=tokens)
def test_any_body_and_token_are_answered_with_a_clear_status(body, token):
    answered_clearly(body, token)


@FUZZ
@given(values=st.dictionaries(st.sampled_from(["step", "loss"]) | st.text(max_size=4), JSON_LEAVES, max_size=4))
def test_only_numbers_a_float_holds_get_through_in_a_genuine_report(values):
    answered_clearly({"trial": "demo-1", "namespace": "ns", "values": values}, GOOD)


def test_tokens_name_their_trial_and_attempt():
    token = report_token(KEY, "ns", "my-exp-12", 3)
    claim = read_token(KEY, token)
    assert claim is not None and (claim.namespace, claim.trial, claim.attempt) == ("ns", "my-exp-12", 3)
    assert read_token(b"z" * 32, token) is None
    assert read_token(KEY, "garbage") is None and read_token(KEY, "a.b.c") is None


def test_the_pod_gets_the_endpoint_and_its_token_only_when_given():
    experiment = load_experiment(manifest())
    experiment.metadata.namespace = "ns"
    env = lambda pod: {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}  # noqa: E731
    plain = env(render_pod(experiment, "demo-1", {"x": 1.0}, GpuSharing()))
    assert "KUBETUNE_REPORT_URL" not in plain and "KUBETUNE_REPORT_TOKEN" not in plain
    target = ReportTarget("http://kubetune-reports.ops.svc:8090/v1/reports", "tok")
    given = env(render_pod(experiment, "demo-1", {"x": 1.0}, GpuSharing(), report=target))
    assert given["KUBETUNE_REPORT_URL"] == target.url and given["KUBETUNE_REPORT_TOKEN"] == "tok"
    assert given["KUBETUNE_NAMESPACE"] == "ns"


class Secrets:
    def __init__(self) -> None:
        self.secrets: dict = {}

    async def get_secret(self, namespace, name):
        if (namespace, name) not in self.secrets:
            raise NotFound(name)
        return self.secrets[(namespace, name)]

    async def create_secret(self, namespace, name, data):
        self.secrets[(namespace, name)] = {"data": data}
        return self.secrets[(namespace, name)]


def test_the_key_is_created_once_and_read_back():
    api = Secrets()
    first = asyncio.run(load_key(api, "ops"))
    assert len(first) == 32 and list(api.secrets) == [("ops", KEY_SECRET)]
    assert asyncio.run(load_key(api, "ops")) == first


# -- the SDK's push ------------------------------------------------------------------------------------------
class Recorder(http.server.BaseHTTPRequestHandler):
    received: list = []
    status = 202

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers["Content-Length"])
        Recorder.received.append((self.headers["Authorization"], json.loads(self.rfile.read(length))))
        self.send_response(Recorder.status)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def endpoint():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Recorder.received, Recorder.status = [], 202
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/reports"
    server.shutdown()


def test_report_pushes_to_the_endpoint_and_still_prints(endpoint, monkeypatch, capsys):
    import kubetune

    monkeypatch.setenv("KUBETUNE_REPORT_URL", endpoint)
    monkeypatch.setenv("KUBETUNE_REPORT_TOKEN", "tok")
    monkeypatch.setenv("KUBETUNE_TRIAL", "demo-1")
    monkeypatch.setenv("KUBETUNE_NAMESPACE", "ns")
    kubetune.report(step=2, loss=0.5)
    assert json.loads(capsys.readouterr().out) == {"loss": 0.5, "step": 2}
    assert Recorder.received == [("Bearer tok", {"trial": "demo-1", "namespace": "ns",
                                                 "values": {"loss": 0.5, "step": 2}})]


def test_an_unreachable_endpoint_warns_once_and_the_trial_goes_on(monkeypatch, capsys):
    import kubetune

    monkeypatch.setattr(push_module, "_warned", [])
    monkeypatch.setenv("KUBETUNE_REPORT_URL", "http://127.0.0.1:9/v1/reports")
    monkeypatch.setenv("KUBETUNE_REPORT_TOKEN", "tok")
    for step in range(3):
        kubetune.report(step=step, loss=1.0)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "could not deliver" in line]
    assert len(warnings) == 1


class Refusing:
    async def get_secret(self, namespace, name):
        raise Forbidden('secrets "kubetune-report-key" is forbidden')

    async def create_secret(self, namespace, name, data):
        raise AssertionError("never reached")


def test_a_key_the_operator_may_not_read_is_one_clear_start_error():
    with pytest.raises(OperatorStartError) as caught:
        _report_key(Refusing(), "ops")
    message = str(caught.value)
    assert "may not get or create the Secret ops/kubetune-report-key" in message and "--reports-port 0" in message
    api = Secrets()
    api.secrets[("ops", KEY_SECRET)] = {"data": {"key": base64.b64encode(b"short").decode()}}
    with pytest.raises(OperatorStartError, match="delete it and the operator creates a new one"):
        _report_key(api, "ops")


def test_a_refused_connection_is_tried_again_as_a_standby_replica_may_have_been_picked(monkeypatch):
    import urllib.error

    calls = []

    class Answer:
        status = 202

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def urlopen(request, timeout):
        calls.append(timeout)
        if len(calls) < 3:
            raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
        return Answer()

    monkeypatch.setattr(push_module.urllib.request, "urlopen", urlopen)
    monkeypatch.setenv("KUBETUNE_REPORT_URL", "http://reports:8090/v1/reports")
    monkeypatch.setenv("KUBETUNE_REPORT_TOKEN", "tok")
    assert push_module.deliver({"step": 1, "loss": 0.5}) is True and len(calls) == 3
