"""The shipped examples run, and the CLI's other faces: validate, progress output, exit codes."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

from kubetune.cli import _parser, main

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize("example", ["quickstart.yaml", "sklearn-digits/experiment.yaml", "k8s/branin.yaml",
                                     "k8s/fractional-gpu.yaml", "gpu-digits/experiment.yaml",
                                     "sklearn-epochs/experiment.yaml", "k8s/early-stopping.yaml",
                                     "ray/experiment.yaml"])
def test_example_validates(example, capsys):
    assert main(["validate", str(EXAMPLES / example)]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "First trial would run: python" in out


def test_user_text_is_shown_as_written_not_as_console_markup(capsys):
    assert main(["validate", str(EXAMPLES / "k8s/fractional-gpu.yaml")]) == 0
    assert "model(X[i:i + 256])" in capsys.readouterr().out


def test_the_cluster_example_runs_locally_too(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(EXAMPLES / "k8s/branin.yaml"), "--max-trials", "3", "--parallelism", "3",
                 "--out", str(out), "--quiet"]) == 0
    records = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert [r["state"] for r in records] == ["Succeeded"] * 3
    assert all(r["value"] >= 0.397887 for r in records)


def test_quickstart_runs_and_prints_the_best_trial(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "kubetune.cli", "run", str(EXAMPLES / "quickstart.yaml"), "--out", str(out),
         "--max-trials", "8"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"Succeeded": 8}
    assert f"Best trial: {summary['best']['id']} branin=" in result.stdout
    assert "Succeeded (MaxTrialsReached)" in result.stdout


def test_sklearn_example_runs(tmp_path):
    out = tmp_path / "out"
    code = main(["run", str(EXAMPLES / "sklearn-digits" / "experiment.yaml"), "--out", str(out),
                 "--max-trials", "3", "--quiet"])
    assert code == 0
    rows = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(0 < r["metrics"]["accuracy"] <= 1 for r in rows)
    assert all("fit_seconds" in r["metrics"] for r in rows)


def test_sklearn_epochs_example_stops_hopeless_trials_early(tmp_path):
    out = tmp_path / "out"
    code = main(["run", str(EXAMPLES / "sklearn-epochs" / "experiment.yaml"), "--out", str(out),
                 "--max-trials", "8", "--quiet"])
    assert code == 0
    latest = {}
    for line in (out / "trials.jsonl").read_text().splitlines():
        row = json.loads(line)
        latest[row["id"]] = row
    states = [r["state"] for r in latest.values()]
    assert len(states) == 8 and set(states) <= {"Succeeded", "EarlyStopped"}
    assert all(r["progress"]["reports"] >= 1 for r in latest.values())


def test_the_kuberay_rayjob_runs_the_ray_example_from_its_configmap():
    documents = list(yaml.safe_load_all((EXAMPLES / "ray" / "rayjob.yaml").read_text()))
    [job] = [d for d in documents if d["kind"] == "RayJob"]
    config_maps = {d["metadata"]["name"]: d for d in documents if d["kind"] == "ConfigMap"}
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    # the entrypoint is a kubetune command line that runs the experiment on this Ray cluster
    command = shlex.split(spec["entrypoint"])
    assert command[:2] == ["kubetune", "run"]
    args = _parser().parse_args(command[1:])
    assert (args.backend, args.address) == ("ray", "auto") and args.out is not None
    manifest, out = PurePosixPath(args.file), PurePosixPath(args.out)
    # on the head pod (where a Ray job's entrypoint runs) the manifest's folder is the ConfigMap, and the run
    # folder is a volume of its own, outside the manifest's folder (Ray copies that folder to every node)
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mounts = {PurePosixPath(m["mountPath"]): m["name"] for m in head["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in head["volumes"]}
    config = volumes[mounts[manifest.parent]]["configMap"]
    assert any(out == mount or mount in out.parents for mount in mounts) and manifest.parent not in out.parents
    # the ConfigMap carries examples/ray as it is, so the two cannot drift apart
    files = {item["path"]: item["key"] for item in config["items"]}
    assert set(files) == {manifest.name, "train.py"}
    data = config_maps[config["name"]]["data"]
    for path, key in files.items():
        assert data[key] == (EXAMPLES / "ray" / path).read_text(), f"{key} differs from examples/ray/{path}"
    # packages through pip; no working_dir (kubetune's ray.init sets it, and Ray refuses a conflicting key)
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert not {"working_dir", "excludes"} & set(runtime_env)
    packages = " ".join(runtime_env["pip"])
    assert "kubetune" in packages and "scikit-learn" in packages
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    assert spec["rayClusterSpec"]["workerGroupSpecs"], "the trials run on worker pods"


def test_the_kuberay_rayjobs_pods_and_configmap_are_valid_kubernetes_objects():
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    documents = list(yaml.safe_load_all((EXAMPLES / "ray" / "rayjob.yaml").read_text()))
    [job] = [d for d in documents if d["kind"] == "RayJob"]
    cluster = job["spec"]["rayClusterSpec"]
    templates = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]
    for template in templates:  # what KubeRay makes its pods from
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pod"}, "spec": template["spec"]}
        kubernetes_validate.validate(pod, version, strict=True)
    for document in documents:
        if document["kind"] == "ConfigMap":
            kubernetes_validate.validate(document, version, strict=True)


def test_missing_file_is_bad_input(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read the manifest" in capsys.readouterr().err


def test_bad_override_is_rejected(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["run", str(EXAMPLES / "quickstart.yaml"), "--parallelism", "0"])
    assert caught.value.code == 2
