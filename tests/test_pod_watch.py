"""The trial pods' watch: events reach the handler slimmed and in order, a stream that ends is opened again
from the last version seen (bookmarks included), and a version the API server no longer has starts it again
from the current one with ``on_gap`` called, since events were missed. (The operator's tests on the real
control plane run it against kube-apiserver.)"""

from __future__ import annotations

import asyncio
import json

from kubetune.core.cluster.outcome import essentials
from kubetune.operator import pod_watch as pod_watch_module
from kubetune.operator.api import Unavailable
from kubetune.operator.pod_watch import PodWatch, lines


def pod(name: str, version: int, phase: str = "Running") -> dict:
    return {"metadata": {"name": name, "namespace": "team", "resourceVersion": str(version),
                         "labels": {"kubetune.io/experiment": "demo"}, "managedFields": [{"manager": "kubelet"}]},
            "spec": {"containers": [{"name": "trial", "image": "python"}], "nodeName": "node-1"},
            "status": {"phase": phase, "hostIP": "10.0.0.1"}}


async def chunks(events: list[dict]):
    """A watch's answer cut anywhere, as a chunked HTTP body may be."""
    body = b"".join(json.dumps(e).encode() + b"\n" for e in events)
    for i in range(0, len(body), 7):
        yield body[i:i + 7]


class Api:
    """Answers the watch's calls from a script: each watch gets the next list of events (or an exception)."""

    def __init__(self, current: str, watches: list):
        self.current, self.watches = current, list(watches)
        self.asked: list[tuple[str | None, str]] = []
        self.versions_read = 0
        self.done = asyncio.Event()

    async def pods_version(self, namespace):
        self.versions_read += 1
        return self.current

    async def watch_pods(self, namespace, resource_version, timeout_seconds):
        self.asked.append((namespace, resource_version))
        if not self.watches:
            self.done.set()
            raise Unavailable("the script ended")
        answer = self.watches.pop(0)
        if isinstance(answer, Exception):
            raise answer
        async for line in lines(chunks(answer)):
            yield line


def run_until_done(api: Api, watch: PodWatch, before=lambda: None) -> None:
    async def scenario():
        await watch.start()
        before()
        await api.done.wait()
        await watch.stop()

    asyncio.run(scenario())


def test_events_reach_the_handler_and_the_watch_resumes_and_restarts_as_it_must(monkeypatch):
    monkeypatch.setattr(pod_watch_module, "YIELD_EVERY", 1)
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old resource version"}}
    api = Api("100", [
        [{"type": "ADDED", "object": pod("demo-0", 101, "Pending")},
         {"type": "MODIFIED", "object": pod("demo-0", 102)},
         {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "150"}}}],
        Unavailable("connection reset"),  # tried again from the same version
        [{"type": "MODIFIED", "object": pod("demo-0", 160, "Succeeded")}, gone],
        [{"type": "DELETED", "object": pod("demo-0", 210, "Succeeded")}],
    ])
    seen: list[tuple[str, dict]] = []
    gaps: list[int] = []
    watch = PodWatch(api, ["team"], lambda kind, p: seen.append((kind, p)), lambda: gaps.append(len(seen)))

    def moved_on():
        api.current = "200"  # where the pods stand when the watch must start again

    run_until_done(api, watch, moved_on)
    assert api.asked == [("team", "100"), ("team", "150"), ("team", "150"), ("team", "200"), ("team", "210")]
    assert [(kind, p["metadata"]["name"], p["status"]["phase"]) for kind, p in seen] == [
        ("ADDED", "demo-0", "Pending"), ("MODIFIED", "demo-0", "Running"), ("MODIFIED", "demo-0", "Succeeded"),
        ("DELETED", "demo-0", "Succeeded")]
    assert seen[1][1] == essentials(pod("demo-0", 102))  # slimmed as it came
    assert gaps == [3]  # the events before the 410 were handed over, then the gap was reported
    assert api.versions_read == 2


def test_a_watch_that_cannot_start_reports_a_gap_once_it_can():
    class Unready(Api):
        async def pods_version(self, namespace):
            self.versions_read += 1
            if self.versions_read == 1:
                raise Unavailable("the API server is not there yet")
            return self.current

    api = Unready("7", [[{"type": "ADDED", "object": pod("demo-1", 8)}]])
    seen, gaps = [], []
    run_until_done(api, PodWatch(api, None, lambda kind, p: seen.append(kind), lambda: gaps.append(len(seen))))
    assert api.asked[:2] == [(None, "7"), (None, "8")] and gaps == [0] and seen == ["ADDED"]


def test_lines_are_cut_at_newlines_whatever_the_chunks():
    async def pieces():
        for piece in [b'{"a"', b': 1}\n{"b": 2}\n\n{"c"', b": 3}"]:
            yield piece

    async def read():
        return [json.loads(line) async for line in lines(pieces())]

    assert asyncio.run(read()) == [{"a": 1}, {"b": 2}, {"c": 3}]
