"""Fractional and whole GPUs on a real control plane: kube-scheduler places the operator's trial pods on fake
nodes that advertise GPU resources, only where the translated request fits; trials beyond capacity wait
Pending and the experiment still finishes. Modes whose scheduler is not kube-scheduler (KAI, HAMi's
resources, Volcano) are checked for what the API server accepts and keeps."""

from __future__ import annotations

import pytest
from cluster import Behaviour, FakeNode
from operator_cluster import experiment, release_until_ended, run_operator, wait_for

from kubetune.core.cluster.gpu_sharing import GpuSharing
from kubetune.core.cluster.pods import render_pod
from kubetune.core.manifest import load_experiment

PLACED = [
    # mode, operator arguments, the GPU node's resources, what a trial asks for
    ("whole", (), {"nvidia.com/gpu": "2"}, 1),
    ("timeslicing", ("--timeslicing-resource", "nvidia.com/gpu.shared"), {"nvidia.com/gpu.shared": "2"}, 0.25),
    ("mig", (), {"nvidia.com/mig-2g.20gb": "2"}, 0.25),
]


@pytest.mark.parametrize(("mode", "args", "resources", "gpu"), PLACED, ids=[p[0] for p in PLACED])
def test_trials_are_placed_only_where_their_gpu_fits_and_wait_beyond_capacity(namespace, mode, args, resources, gpu):
    # node-gpu has room for two trials; node-other has other GPU resources (or none) and must never get one
    other = {"whole": {}, "timeslicing": {"nvidia.com/gpu": "4"}, "mig": {"nvidia.com/mig-1g.10gb": "7"}}[mode]
    nodes = [FakeNode("node-gpu", extended=resources), FakeNode("node-other", extended=other)]
    document = experiment(maxTrials=6, parallelism=4, template={"resources": {"gpu": gpu}, "retain": "all"})
    # its pods are read at the end (retain: all); trials end only when the test lets them: two run, and the other
    # two wait for a GPU, however slow the machine
    with namespace.kubelet(nodes, behaviour=lambda pod: Behaviour(held=True)) as kubelet, \
            run_operator(namespace, "--gpu-sharing", mode, *args):
        namespace.apply(document)
        waiting = wait_for(lambda: len(found := [p for p in namespace.pods() if _unschedulable(p)]) == 2 and found,
                           timeout=120, what="two trials waiting for a GPU")
        wait_for(lambda: len(kubelet.holding()) == 2, what="two trials running")
        final = release_until_ended(namespace, kubelet)
    assert final["phase"] == "Succeeded" and final["trials"]["succeeded"] == 6
    assert "Insufficient" in _unschedulable(waiting[0])
    pods = namespace.pods()
    assert {p["spec"]["nodeName"] for p in pods} == {"node-gpu"}
    assert kubelet.max_running_on["node-gpu"] == 2 and kubelet.max_running_on["node-other"] == 0
    assert kubelet.max_unfinished["demo"] == 4  # the operator kept parallelism pods; two had to wait
    (resource,) = resources
    assert all(p["spec"]["containers"][0]["resources"]["limits"] == {resource: "1"} for p in pods)


def _unschedulable(pod: dict) -> str:
    for condition in pod.get("status", {}).get("conditions") or []:
        if condition["type"] == "PodScheduled" and condition.get("reason") == "Unschedulable":
            return condition.get("message", "")
    return ""


def test_kai_hami_and_volcano_pods_are_accepted_with_their_scheduler_annotations_and_resources(namespace):
    documents = {}
    for mode in ("kai", "hami", "volcano"):
        document = experiment(name=f"gpu-{mode}", maxTrials=1, parallelism=1, template={"resources": {"gpu": 0.25}})
        document["metadata"]["annotations"] = {"kubetune.io/gpu-sharing": mode}
        documents[mode] = document
    with namespace.kubelet([FakeNode("node-gpu", extended={"nvidia.com/gpu": "4"})]), \
            run_operator(namespace, "--kai-queue", "research", "--hami-cores"):
        for document in documents.values():
            namespace.apply(document)
        pods = wait_for(lambda: (found := {p["metadata"]["name"]: p for p in namespace.pods()}) and len(found) == 3
                        and found, what="one pod per experiment")
    sharing = GpuSharing("whole", kai_queue="research", hami_cores=True)
    for mode, document in documents.items():
        stored = pods[f"gpu-{mode}-0"]
        spec = load_experiment(document)
        spec.metadata.namespace = namespace.name
        trial = next(t for t in namespace.trials() if t["metadata"]["name"] == f"gpu-{mode}-0")
        rendered = render_pod(spec, trial["metadata"]["name"], trial["spec"]["params"], sharing)
        assert stored["spec"].get("schedulerName") == rendered["spec"].get("schedulerName", "default-scheduler")
        assert rendered["metadata"].get("annotations", {}).items() <= stored["metadata"].get("annotations", {}).items()
        assert rendered["metadata"]["labels"].items() <= stored["metadata"]["labels"].items()
        limits = rendered["spec"]["containers"][0].get("resources", {}).get("limits")
        assert stored["spec"]["containers"][0].get("resources", {}).get("limits") == limits, mode
        assert stored.get("status", {}).get("phase") == "Pending"  # no KAI, HAMi or Volcano here to run it
    assert pods["gpu-kai-0"]["spec"]["schedulerName"] == "kai-scheduler"
    assert pods["gpu-kai-0"]["metadata"]["annotations"]["gpu-fraction"] == "0.25"
    assert pods["gpu-volcano-0"]["spec"]["schedulerName"] == "volcano"
    assert pods["gpu-hami-0"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpumem-percentage"] == "25"
