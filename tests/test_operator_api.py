"""The operator's calls against the real API server: listings read a page at a time and shaped as they come,
and what the server refuses or cannot answer turned into the errors the handlers explain."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from kubernetes import client, config

from kubetune.core.cluster.outcome import essentials
from kubetune.core.cluster.pods import EXPERIMENT_LABEL, TRIAL_LABEL
from kubetune.operator import api as api_module
from kubetune.operator.api import Forbidden, Invalid, KubernetesApi, NotFound, Refused, Unavailable

RESTRICTED = {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}


def pod(name: str, experiment: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {EXPERIMENT_LABEL: experiment, TRIAL_LABEL: name}},
            "spec": {"schedulerName": "nobody", "securityContext": RESTRICTED, "containers": [
                {"name": "trial", "image": "python:3.12-slim",
                 "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}}


def admin_api(namespace) -> KubernetesApi:
    return KubernetesApi(config.new_client_from_config(str(namespace.cluster.admin_kubeconfig)))


def run(api: KubernetesApi, call):
    """Runs one call in an event loop of its own, then closes the HTTP session made for that loop."""
    async def closing():
        try:
            return await call
        finally:
            await api.close()

    return asyncio.run(closing())


def test_a_listing_is_read_a_page_at_a_time_and_shaped(namespace, monkeypatch):
    for i in range(5):
        namespace.cluster.request("POST", f"/api/v1/namespaces/{namespace.name}/pods", pod(f"demo-{i}", "demo"))
    namespace.cluster.request("POST", f"/api/v1/namespaces/{namespace.name}/pods", pod("other-0", "other"))
    monkeypatch.setattr(api_module, "LIST_PAGE", 2)
    api = admin_api(namespace)
    pages = []
    send = api._send

    def counting(method, path, query=None, **options):
        pages.append((query or {}).get("continue"))
        return send(method, path, query, **options)

    monkeypatch.setattr(api, "_send", counting)
    listed = run(api, api.list("pods", namespace.name, "demo", essentials))
    assert sorted(p["metadata"]["name"] for p in listed) == [f"demo-{i}" for i in range(5)]
    assert len(pages) == 3 and pages[0] is None and all(pages[1:])  # three pages, each after the one before
    assert all("managedFields" not in p["metadata"] and "image" not in json.dumps(p) for p in listed)
    # the pods of ended trials are left out of a listing of unfinished ones; one pod may be read alone
    namespace.cluster.request("PATCH", f"/api/v1/namespaces/{namespace.name}/pods/demo-0/status",
                              {"status": {"phase": "Succeeded"}}, "application/merge-patch+json")
    unfinished = run(api, api.list("pods", namespace.name, "demo", essentials, unfinished=True))
    assert sorted(p["metadata"]["name"] for p in unfinished) == [f"demo-{i}" for i in range(1, 5)]
    assert run(api, api.get("pods", namespace.name, "demo-0"))["status"]["phase"] == "Succeeded"


def test_refusals_and_an_absent_server_become_errors_that_say_what_happened(namespace, tmp_path):
    nobody = namespace.cluster.service_account_kubeconfig(tmp_path / "nobody.kubeconfig", namespace.name, "default")
    forbidden = KubernetesApi(config.new_client_from_config(str(nobody)))
    with pytest.raises(Forbidden, match='cannot list resource "pods"'):
        run(forbidden, forbidden.list("pods", namespace.name, "demo"))
    admin = admin_api(namespace)
    with pytest.raises(NotFound):
        run(admin, admin.delete("pods", namespace.name, "never-was"))
    with pytest.raises(NotFound):
        run(admin, admin.get("pods", namespace.name, "never-was"))
    configuration = client.Configuration(host="https://127.0.0.1:1")
    configuration.retries = 0
    absent = KubernetesApi(client.ApiClient(configuration))
    with pytest.raises(Unavailable, match="could not be reached"):
        run(absent, absent.list("pods", namespace.name, "demo"))


def test_a_dry_run_stores_nothing_and_says_whether_the_pod_is_invalid_or_refused(namespace):
    admin = admin_api(namespace)
    run(admin, admin.create("pods", namespace.name, pod("demo-0", "demo"), dry_run=True))
    assert namespace.pods() == []
    broken = pod("demo-1", "demo")
    broken["spec"]["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    with pytest.raises(Invalid, match=r'volumeMounts\[0\]\.name: Not found: "data"'):
        run(admin, admin.create("pods", namespace.name, broken, dry_run=True))
    namespace.apply({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "none"},
                     "spec": {"hard": {"pods": "0"}}})
    for _ in range(240):  # the quota controller fills in its status
        if (namespace.get("resourcequota", "none").get("status") or {}).get("hard"):
            break
        time.sleep(0.25)
    with pytest.raises(Refused, match="exceeded quota: none"):
        run(admin, admin.create("pods", namespace.name, pod("demo-2", "demo"), dry_run=True))
    with pytest.raises(Refused, match="exceeded quota: none"):
        run(admin, admin.create("pods", namespace.name, pod("demo-2", "demo")))


def test_the_pod_watch_sees_trial_pods_only_from_where_they_stood_when_it_started(namespace):
    """Against kube-apiserver: a trial pod that existed before the watch started is not replayed, the changes
    after it are (slimmed), and pods without the experiment label are never sent."""
    from kubetune.operator.pod_watch import PodWatch

    url = f"/api/v1/namespaces/{namespace.name}/pods"
    namespace.cluster.request("POST", url, pod("demo-0", "demo"))
    seen: list[tuple[str, str]] = []
    other = pod("unrelated", "demo")
    del other["metadata"]["labels"][EXPERIMENT_LABEL]

    api = admin_api(namespace)

    async def scenario():
        watch = PodWatch(api, [namespace.name], lambda kind, p: seen.append(
            (kind, p["metadata"]["name"], "image" in json.dumps(p))), lambda: None)
        await watch.start()
        namespace.cluster.request("POST", url, other)
        namespace.cluster.request("POST", url, pod("demo-1", "demo"))
        namespace.cluster.request("DELETE", f"{url}/demo-0")
        for _ in range(600):
            if ("DELETED", "demo-0") in [(kind, name) for kind, name, _ in seen]:
                break
            await asyncio.sleep(0.05)
        await watch.stop()

    run(api, scenario())
    events = [(kind, name) for kind, name, _ in seen]
    assert events[0] == ("ADDED", "demo-1") and ("DELETED", "demo-0") in events
    assert ("ADDED", "demo-0") not in events  # it was there before the watch began: not replayed
    assert all(name != "unrelated" for _, name, _ in seen) and not any(image for *_, image in seen)


def test_credentials_are_read_again_after_a_401():
    """The bearer token's header is kept for a while (a kubeconfig's is read again at every refresh); a 401
    reads it again at once and tries once more with the new token."""
    configuration = client.Configuration(host="https://127.0.0.1:1")
    configuration.api_key = {"authorization": "Bearer old"}
    api = KubernetesApi(client.ApiClient(configuration))
    sent: list[str] = []
    revoked: set[str] = set()

    async def exchange(method, path, query, data, headers, status_write):
        sent.append(headers["authorization"])
        if headers["authorization"] in revoked:
            return 401, "Unauthorized", None, b'{"message": "Unauthorized"}'
        return 200, "OK", None, b'{"kind": "Pod"}'

    api._exchange = exchange
    assert asyncio.run(api.get("pods", "team", "p")) == {"kind": "Pod"}
    configuration.api_key = {"authorization": "Bearer new"}  # rotated: the old one stops working
    revoked.add("Bearer old")
    assert asyncio.run(api.get("pods", "team", "p")) == {"kind": "Pod"}
    assert sent == ["Bearer old", "Bearer old", "Bearer new"]
