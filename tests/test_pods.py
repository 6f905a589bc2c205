"""Trial pods: rendering, GPU sharing modes, and validation against the real Kubernetes schemas."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
from restricted import restricted_violations

from conftest import manifest
from kubetune.core.cluster.gpu_sharing import MODES, GpuSharing, GpuSharingError, place
from kubetune.core.cluster.pods import render_pod
from kubetune.core.manifest import load_experiment, load_experiment_file

K8S_VERSION = kubernetes_validate.latest_version()
OWNER = {"apiVersion": "kubetune.io/v1alpha1", "kind": "Trial", "name": "demo-3",
         "uid": "0d8c6a3e-3f0e-4a7e-9a55-1b2c3d4e5f60", "controller": True, "blockOwnerDeletion": True}


def experiment(gpu: float = 0, annotations: dict | None = None, **template):
    document = manifest(args=["--x=${params.x}", "--trial=${trial.id}"],
                        template={"resources": {"cpu": "500m", "memory": "1Gi", "gpu": gpu}, "timeoutSeconds": 90,
                                  **template})
    document["metadata"]["namespace"] = "team-a"
    if annotations:
        document["metadata"]["annotations"] = annotations
    return load_experiment(document)


def validate(pod: dict) -> None:
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_pod_carries_the_trial():
    pod = render_pod(experiment(), "demo-3", {"x": 1.5}, GpuSharing(), owner=OWNER)
    validate(pod)
    meta, spec = pod["metadata"], pod["spec"]
    assert meta["name"] == "demo-3" and meta["namespace"] == "team-a"
    assert meta["labels"]["kubetune.io/experiment"] == "demo" and meta["labels"]["kubetune.io/trial"] == "demo-3"
    assert meta["ownerReferences"] == [OWNER]
    assert spec["restartPolicy"] == "Never" and spec["activeDeadlineSeconds"] == 90
    container = spec["containers"][0]
    assert container["args"] == ["--x=1.5", "--trial=demo-3"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["KUBETUNE_PARAM_X"] == "1.5" and env["KUBETUNE_TRIAL"] == "demo-3"
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}}


def test_retry_pods_have_their_own_names():
    pod = render_pod(experiment(), "demo-3", {"x": 1.5}, GpuSharing(), attempt=2)
    assert pod["metadata"]["name"] == "demo-3-r2" and pod["metadata"]["labels"]["kubetune.io/attempt"] == "2"
    validate(pod)


EXPECTED = {
    ("whole", 0.25): ({"nvidia.com/gpu": "1"}, {}, {}, None),
    ("whole", 2): ({"nvidia.com/gpu": "2"}, {}, {}, None),
    ("kai", 0.25): ({}, {"gpu-fraction": "0.25"}, {"kai.scheduler/queue": "research"}, "kai-scheduler"),
    ("kai", 2): ({"nvidia.com/gpu": "2"}, {}, {"kai.scheduler/queue": "research"}, "kai-scheduler"),
    ("hami", 0.25): ({"nvidia.com/gpu": "1", "nvidia.com/gpumem-percentage": "25", "nvidia.com/gpucores": "25"},
                     {}, {}, None),
    ("hami", 1): ({"nvidia.com/gpu": "1"}, {}, {}, None),
    ("volcano", 0.25): ({"volcano.sh/vgpu-number": "1", "volcano.sh/vgpu-memory-percentage": "25"}, {}, {},
                        "volcano"),
    ("volcano", 2): ({"volcano.sh/vgpu-number": "2"}, {}, {}, "volcano"),
    ("timeslicing", 0.25): ({"nvidia.com/gpu.shared": "1"}, {}, {}, None),
    ("timeslicing", 2): ({"nvidia.com/gpu": "2"}, {}, {}, None),
    ("mig", 0.1): ({"nvidia.com/mig-1g.10gb": "1"}, {}, {}, None),
    ("mig", 0.25): ({"nvidia.com/mig-2g.20gb": "1"}, {}, {}, None),
    ("mig", 0.3): ({"nvidia.com/mig-3g.40gb": "1"}, {}, {}, None),
    ("mig", 0.75): ({"nvidia.com/mig-7g.80gb": "1"}, {}, {}, None),
    ("mig", 2): ({"nvidia.com/mig-7g.80gb": "2"}, {}, {}, None),
}


@pytest.mark.parametrize(("mode", "amount"), sorted(EXPECTED))
def test_every_gpu_mode_renders_a_valid_pod(mode, amount):
    sharing = GpuSharing(mode, kai_queue="research", hami_cores=True, timeslicing_resource="nvidia.com/gpu.shared")
    pod = render_pod(experiment(gpu=amount), "demo-3", {"x": 1.5}, sharing, owner=OWNER)
    validate(pod)
    limits, annotations, labels, scheduler = EXPECTED[(mode, amount)]
    container = pod["spec"]["containers"][0]
    assert container["resources"].get("limits", {}) == limits
    assert pod["metadata"].get("annotations", {}) == annotations
    assert {k: v for k, v in pod["metadata"]["labels"].items() if not k.startswith("kubetune.io/")} == labels
    assert pod["spec"].get("schedulerName") == scheduler


def test_every_mode_is_covered():
    assert {mode for mode, _ in EXPECTED} == set(MODES)


def test_what_a_mode_cannot_express_names_the_mode():
    with pytest.raises(GpuSharingError, match="timeslicing: 2 whole GPU"):
        place(2, GpuSharing("timeslicing"))
    with pytest.raises(GpuSharingError, match="mig: no MIG profile"):
        place(0.5, GpuSharing("mig", mig_profiles=((0.25, "nvidia.com/mig-2g.20gb"),)))
    with pytest.raises(GpuSharingError, match="whole number"):
        place(1.5, GpuSharing("hami"))


def test_experiment_annotation_overrides_the_cluster_mode():
    pod = render_pod(experiment(gpu=0.5, annotations={"kubetune.io/gpu-sharing": "hami"}), "demo-1", {"x": 1.0},
                     GpuSharing("whole"))
    assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpumem-percentage"] == "50"
    with pytest.raises(GpuSharingError, match="unknown GPU sharing mode 'teleport'"):
        render_pod(experiment(gpu=0.5, annotations={"kubetune.io/gpu-sharing": "teleport"}), "demo-1", {"x": 1.0},
                   GpuSharing())


def test_no_gpu_no_limits():
    pod = render_pod(experiment(gpu=0), "demo-1", {"x": 1.0}, GpuSharing("kai"))
    assert "limits" not in pod["spec"]["containers"][0]["resources"]
    assert "schedulerName" not in pod["spec"]
    assert "KUBETUNE_GPU_SHARE" not in {e["name"] for e in pod["spec"]["containers"][0]["env"]}


@pytest.mark.parametrize(("amount", "share"), [(0.25, "0.25"), (2, "1.0")])
def test_the_trial_is_told_its_gpu_share(amount, share):
    pod = render_pod(experiment(gpu=amount), "demo-1", {"x": 1.0}, GpuSharing("hami"))
    assert {"name": "KUBETUNE_GPU_SHARE", "value": share} in pod["spec"]["containers"][0]["env"]


def test_trial_pods_meet_the_restricted_pod_security_standard_by_default():
    pod = render_pod(experiment(), "demo-3", {"x": 1.5}, GpuSharing(), owner=OWNER)
    validate(pod)
    assert restricted_violations(pod["spec"]) == []
    assert pod["spec"]["securityContext"]["runAsUser"] != 0


def test_the_experiments_own_security_settings_win():
    document = manifest(template={"resources": {"cpu": "500m"}})
    spec = document["spec"]["trialTemplate"]["spec"]
    spec["securityContext"] = {"runAsUser": 1000, "fsGroup": 100}
    spec["initContainers"] = [{"name": "fetch", "image": "busybox",
                               "securityContext": {"readOnlyRootFilesystem": True}}]
    spec["containers"][0]["securityContext"] = {"allowPrivilegeEscalation": True}
    pod = render_pod(load_experiment(document), "demo-1", {"x": 1.0}, GpuSharing())
    validate(pod)
    assert pod["spec"]["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 65532,
                                              "seccompProfile": {"type": "RuntimeDefault"}, "fsGroup": 100}
    assert pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is True
    init = pod["spec"]["initContainers"][0]["securityContext"]
    assert init == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                    "readOnlyRootFilesystem": True}
    assert restricted_violations(pod["spec"]) == [f"{pod['spec']['containers'][0]['name']}: allowPrivilegeEscalation "
                                                  "is not false"]


@pytest.mark.parametrize("example", ["branin.yaml", "fractional-gpu.yaml"])
def test_the_cluster_examples_render_valid_restricted_pods(example):
    experiment_ = load_experiment_file(Path(__file__).parent.parent / "examples" / "k8s" / example)
    pod = render_pod(experiment_, f"{experiment_.name}-0", {p.name: p.min if p.min is not None else p.values[0]
                                                             for p in experiment_.spec.parameters}, GpuSharing())
    validate(pod)
    assert restricted_violations(pod["spec"]) == []
