"""The trial pods' watch: events reach the loop slimmed and in order, a stream that ends is opened again from
the last version seen (bookmarks included), and a version the API server no longer has starts it again from
the current one with ``on_gap`` called, since events were missed. (The operator's tests on the real control
plane run it against kube-apiserver.)"""

from __future__ import annotations

import asyncio
import json
import threading

from kubetune.core.cluster.outcome import essentials
from kubetune.operator.api import Unavailable
from kubetune.operator.pod_watch import PodWatch, lines


def pod(name: str, version: int, phase: str = "Running") -> dict:
    return {"metadata": {"name": name, "namespace": "team", "resourceVersion": str(version),
                         "labels": {"kubetune.io/experiment": "demo"}, "managedFields": [{"manager": "kubelet"}]},
            "spec": {"containers": [{"name": "trial", "image": "python"}], "nodeName": "node-1"},
            "status": {"phase": phase, "hostIP": "10.0.0.1"}}


class Stream:
    """A watch's response: its lines in chunks cut anywhere, as a chunked HTTP body may be."""

    def __init__(self, events: list[dict]):
        body = b"".join(json.dumps(e).encode() + b"\n" for e in events)
        self.chunks = [body[i:i + 7] for i in range(0, len(body), 7)]
        self.closed = False

    def stream(self, amt=None, decode_content=False):
        yield from self.chunks

    def close(self):
        self.closed = True


class Api:
    """Answers the watch's calls from a script: each watch gets the next list of events (or an exception)."""

    def __init__(self, current: str, watches: list):
        self.current, self.watches = current, list(watches)
        self.asked: list[tuple[str | None, str]] = []
        self.versions_read = 0
        self.done = threading.Event()

    def pods_version(self, namespace):
        self.versions_read += 1
        return self.current

    def watch_pods(self, namespace, resource_version, timeout_seconds):
        self.asked.append((namespace, resource_version))
        if not self.watches:
            self.done.set()
            raise Unavailable("the script ended")
        answer = self.watches.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return Stream(answer)


def test_events_reach_the_loop_and_the_watch_resumes_and_restarts_as_it_must():
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

    async def scenario():
        api.current = "100"
        watch = PodWatch(api, ["team"], lambda kind, p: seen.append((kind, p)), lambda: gaps.append(len(seen)))
        await watch.start()
        api.current = "200"  # where the pods stand when the watch must start again
        while not api.done.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # what the thread handed over reaches the loop
        watch.stop()

    asyncio.run(scenario())
    assert api.asked == [("team", "100"), ("team", "150"), ("team", "150"), ("team", "200"), ("team", "210")]
    assert [(kind, p["metadata"]["name"], p["status"]["phase"]) for kind, p in seen] == [
        ("ADDED", "demo-0", "Pending"), ("MODIFIED", "demo-0", "Running"), ("MODIFIED", "demo-0", "Succeeded"),
        ("DELETED", "demo-0", "Succeeded")]
    assert seen[1][1] == essentials(pod("demo-0", 102))  # slimmed in the watch's thread
    assert gaps == [3]  # the events before the 410 were handed over, then the gap was reported
    assert api.versions_read == 2


def test_a_watch_that_cannot_start_reports_a_gap_once_it_can():
    class Unready(Api):
        def pods_version(self, namespace):
            self.versions_read += 1
            if self.versions_read == 1:
                raise Unavailable("the API server is not there yet")
            return self.current

    api = Unready("7", [[{"type": "ADDED", "object": pod("demo-1", 8)}]])
    seen, gaps = [], []

    async def scenario():
        watch = PodWatch(api, None, lambda kind, p: seen.append(kind), lambda: gaps.append(len(seen)))
        await watch.start()
        while not api.done.is_set():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        watch.stop()

    asyncio.run(scenario())
    assert api.asked[:2] == [(None, "7"), (None, "8")] and gaps == [0] and seen == ["ADDED"]


def test_lines_are_cut_at_newlines_whatever_the_chunks():
    class Chunks:
        def stream(self, amt=None, decode_content=False):
            yield from [b'{"a"', b': 1}\n{"b": 2}\n\n{"c"', b": 3}"]

    assert [json.loads(line) for line in lines(Chunks())] == [{"a": 1}, {"b": 2}, {"c": 3}]
