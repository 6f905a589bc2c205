"""`kubetune run --backend ray` against a real multi-node Ray cluster started on this machine
(:mod:`ray_cluster`: a head and a worker node, each with one CPU and one fake GPU). Trials are
placed on both nodes, fractional GPUs are packed by Ray's scheduler, a node killed mid-run costs one retry,
Ctrl-C and resume, early stopping through Ray, the shipped examples/ray experiment. Bad input (no Ray, an address
nothing answers at) is exit 2."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from processes import process_ended
from ray_cluster import RAY_ENV, Cluster, free_port

from conftest import TRIALS, manifest
from kubetune.cli import main
from kubetune.core.spec import Resources
from kubetune.runners.ray_backend import UNLIMITED, _capacity, quantity, ray_resources

pytest.importorskip("ray")

ENV = RAY_ENV


@pytest.fixture
def cluster(ray_cluster: Cluster) -> Cluster:
    return ray_cluster


# -- helpers ---------------------------------------------------------------------------------------------------
def experiment(folder: Path, track: Path, *, sleep: float = 1.0, resources: dict[str, Any] | None = None,
               together: int = 0, **spec: Any) -> Path:
    doc = manifest(**spec)
    container = doc["spec"]["trialTemplate"]["spec"]["containers"][0]
    container.update(command=["python", str(TRIALS / "ray_probe.py")],
                     args=["--x=${params.x}", f"--sleep={sleep}", f"--track={track}", f"--together={together}"])
    doc["spec"]["trialTemplate"]["resources"] = resources or {"cpu": 1}
    folder.mkdir(parents=True, exist_ok=True)
    track.mkdir(parents=True, exist_ok=True)
    path = folder / "experiment.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def kubetune(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", "import sys; from kubetune.cli import main; sys.exit(main())",
                             *map(str, args)], env={**ENV, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen[str], timeout: float = 150) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f"kubetune run did not end: {output}") from None
    return process.returncode, output


def rows(out: Path) -> dict[str, dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for line in (out / "trials.jsonl").read_text().splitlines():
        row = json.loads(line)
        latest[row["id"]] = row
    return latest


def probes(track: Path) -> list[dict[str, Any]]:
    seen = []
    for path in track.glob("*.json"):
        with contextlib.suppress(ValueError):  # one being written
            seen.append(json.loads(path.read_text()))
    return seen


def most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak



# -- without a cluster -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "number"), [("500m", 0.5), ("2", 2), (1.5, 1.5), ("1Gi", 2**30), ("1G", 1e9),
                                               ("256Mi", 256 * 2**20), ("1e3", 1000)])
def test_kubernetes_quantities(text, number):
    assert quantity(text) == pytest.approx(number)


def test_resources_become_ray_task_options_and_bound_what_runs_at_once():
    options = ray_resources(Resources(cpu="250m", memory="1Gi", gpu=0.25))
    assert options == {"num_cpus": 0.25, "num_gpus": 0.25, "memory": float(2**30)}
    assert ray_resources(Resources()) == {"num_cpus": 1.0, "num_gpus": 0.0}
    cluster = {"CPU": 4.0, "GPU": 2.0, "memory": 64.0 * 2**30}
    assert _capacity(cluster, options) == 8  # the GPUs bound it: four trials to a GPU
    assert _capacity({"CPU": 4.0}, options) == 16  # no GPU yet (an autoscaler may add some): the CPUs bound it
    assert _capacity({}, options) == UNLIMITED


def test_an_address_nothing_answers_at_is_bad_input(tmp_path, capsys):
    path = experiment(tmp_path / "exp", tmp_path / "track")
    code = main(["run", str(path), "--out", str(tmp_path / "out"), "--backend", "ray",
                 "--address", f"127.0.0.1:{free_port()}"])
    assert code == 2
    assert "no Ray cluster answers there" in capsys.readouterr().err


def test_without_ray_installed_it_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    path = experiment(tmp_path / "exp", tmp_path / "track")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--backend", "ray"]) == 2
    assert "pip install 'kubetune[ray]'" in capsys.readouterr().err


def test_address_needs_the_ray_backend(tmp_path, capsys):
    path = experiment(tmp_path / "exp", tmp_path / "track")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--address", "auto"]) == 2
    assert "--address needs --backend ray" in capsys.readouterr().err


@pytest.mark.parametrize(("content", "message"), [
    ("pip: [a\n", "not YAML or JSON"),
    ("- pip\n", "must be a mapping of Ray runtime_env fields"),
    (b"\xff\xfe", "not YAML or JSON"),
    (None, "No such file or directory"),
])
def test_a_runtime_env_that_is_not_a_mapping_is_bad_input(tmp_path, capsys, content, message):
    path = experiment(tmp_path / "exp", tmp_path / "track")
    env = tmp_path / "runtime-env.yaml"
    if isinstance(content, bytes):
        env.write_bytes(content)
    elif content is not None:
        env.write_text(content)
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--backend", "ray", "--runtime-env",
                 str(env)]) == 2
    err = capsys.readouterr().err
    assert f"--runtime-env {env}" in err and message in err
    assert not (tmp_path / "out").exists()


def test_runtime_env_needs_the_ray_backend(tmp_path, capsys):
    path = experiment(tmp_path / "exp", tmp_path / "track")
    (tmp_path / "env.yaml").write_text("env_vars: {A: b}\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--runtime-env", str(tmp_path / "env.yaml")]) == 2
    assert "--runtime-env needs --backend ray" in capsys.readouterr().err


# -- on the cluster --------------------------------------------------------------------------------------------
def test_trials_run_on_both_nodes_and_their_logs_come_back(cluster, tmp_path):
    nodes = cluster.node_ids(2)
    track, out = tmp_path / "track", tmp_path / "out"
    path = experiment(tmp_path / "exp", track, sleep=1.5, parallelism=2, maxTrials=4, together=2)
    runtime_env = tmp_path / "runtime-env.yaml"
    runtime_env.write_text("env_vars: {PROBE_EXTRA: from the runtime env}\n")
    code, output = finish(kubetune("run", path, "--out", out, "--backend", "ray", "--address", cluster.address,
                                   "--runtime-env", runtime_env))
    assert code == 0, output
    assert "2 at a time" in output  # one CPU per node, one CPU per trial
    trials = rows(out)
    assert len(trials) == 4 and {t["state"] for t in trials.values()} == {"Succeeded"}
    assert {nodes[p["node"]] for p in probes(track)} == {"node_a", "node_b"}
    assert {p["extra"] for p in probes(track)} == {"from the runtime env"}
    for trial in trials.values():
        log = (out / "trials" / trial["id"] / "attempt-1.stdout.log").read_text()
        assert json.loads(log)["loss"] == pytest.approx(trial["value"])
    # the trials ran in Ray's copy of the manifest's folder (runtime_env working_dir), not in it
    assert all(Path(p["cwd"]) != tmp_path / "exp" for p in probes(track))


def test_fractional_gpus_are_packed_four_to_a_gpu_by_ray(cluster, tmp_path):
    nodes = cluster.node_ids(2)
    track, out = tmp_path / "track", tmp_path / "out"
    path = experiment(tmp_path / "exp", track, sleep=3, parallelism=10, maxTrials=10, together=8,
                      resources={"cpu": "100m", "gpu": 0.25})
    code, output = finish(kubetune("run", path, "--out", out, "--backend", "ray", "--address", cluster.address))
    assert code == 0, output
    assert "8 at a time (parallelism 10, but only 8 fit on the Ray cluster)" in output
    seen = probes(track)
    assert len(seen) == 10 and {p["share"] for p in seen} == {"0.25"}
    assert {p["cuda"] for p in seen} == {"0"}, "Ray gives each trial its node's one fake GPU"
    by_node: dict[str, list[tuple[float, float]]] = {}
    for probe in seen:
        by_node.setdefault(nodes[probe["node"]], []).append((probe["start"], probe["end"]))
    assert set(by_node) == {"node_a", "node_b"}
    assert all(most_at_once(spans) <= 4 for spans in by_node.values()), by_node
    assert max(most_at_once(spans) for spans in by_node.values()) >= 2, "the GPU was shared"


def test_a_node_lost_mid_trial_is_a_failed_attempt_that_is_retried(cluster, tmp_path):
    cluster.start("node_c", gpus=0)
    nodes = cluster.node_ids(3)
    track, out = tmp_path / "track", tmp_path / "out"
    path = experiment(tmp_path / "exp", track, sleep=4, parallelism=3, maxTrials=5,
                      template={"retries": 1})
    run = kubetune("run", path, "--out", out, "--backend", "ray", "--address", cluster.address)
    try:
        deadline = time.monotonic() + 60
        while not [p for p in probes(track) if nodes.get(p["node"]) == "node_c"]:
            assert time.monotonic() < deadline and run.poll() is None, "no trial reached node_c"
            time.sleep(0.2)
        victim = next(p for p in probes(track) if nodes.get(p["node"]) == "node_c")
        cluster.lose("node_c")
    finally:
        code, output = finish(run, timeout=180)
    assert code == 0, output
    trials = rows(out)
    assert len(trials) == 5 and {t["state"] for t in trials.values()} == {"Succeeded"}
    lost = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()
            if json.loads(line)["id"] == victim["trial"]]
    assert [(row["attempt"], row["state"]) for row in lost] == [(1, "Failed"), (2, "Succeeded")], lost
    assert lost[0]["reason"] == "NodeLost" and lost[0]["retry"] is True, lost
    assert process_ended(victim["pid"], within=0), "the trial's process went with its node"
    assert sorted(cluster.node_ids(2).values()) == ["node_a", "node_b"]


def test_a_working_dir_over_rays_limit_is_bad_input(cluster, tmp_path):
    track, out = tmp_path / "track", tmp_path / "out"
    path = experiment(tmp_path / "exp", track)
    (tmp_path / "exp" / "data.bin").write_bytes(os.urandom(300_000))
    # Ray's limit is its gRPC message size (512 MiB by default): lowered here for the driver only
    code, output = finish(kubetune("run", path, "--out", out, "--backend", "ray", "--address", cluster.address,
                                   env={"RAY_max_grpc_message_size": "100000"}))
    assert code == 2, output
    error = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "cannot start the Ray job with working_dir" in error[0], output
    assert "Package size (0.29MiB) exceeds the maximum size of 0.10MiB" in error[0]


def test_a_runtime_env_ray_refuses_is_bad_input(cluster, tmp_path):
    path = experiment(tmp_path / "exp", tmp_path / "track")
    (tmp_path / "env.yaml").write_text("pip: 5\n")
    code, output = finish(kubetune("run", path, "--out", tmp_path / "out", "--backend", "ray", "--address",
                                   cluster.address, "--runtime-env", tmp_path / "env.yaml"))
    assert code == 2, output
    error = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "the --runtime-env fields ['pip']" in error[0], output
    assert "Traceback" not in output


def test_ctrl_c_stops_the_ray_trials_and_resume_finishes(cluster, tmp_path):
    cluster.node_ids(2)
    track, out = tmp_path / "track", tmp_path / "out"
    # the trials would run for 10 minutes: only the kill ends them within the test
    path = experiment(tmp_path / "exp", track, sleep=600, parallelism=2, maxTrials=3)
    run = kubetune("run", path, "--out", out, "--backend", "ray", "--address", cluster.address)
    deadline = time.monotonic() + 60
    while len(probes(track)) < 2:
        assert time.monotonic() < deadline and run.poll() is None, "the trials did not start"
        time.sleep(0.2)
    run.send_signal(signal.SIGINT)
    code, output = finish(run, timeout=60)
    assert code == 130, output
    # their workers kill them a moment after the driver's cancel returns
    assert all(process_ended(p["pid"]) for p in probes(track)), "Ctrl-C killed the trials on their nodes"
    assert {t["state"] for t in rows(out).values()} == {"Killed"}
    path.write_text(path.read_text().replace("--sleep=600", "--sleep=0.5"))
    code, output = finish(kubetune("run", path, "--out", out, "--backend", "ray", "--address", cluster.address,
                                   "--resume"))
    assert code == 0, output
    trials = rows(out)
    assert len(trials) == 3 and {t["state"] for t in trials.values()} == {"Succeeded"}
    assert {t["attempt"] for t in trials.values() if t["number"] < 2} == {2}


def test_early_stopping_through_ray(cluster, tmp_path):
    cluster.node_ids(2)
    track, out = tmp_path / "track", tmp_path / "out"
    doc = manifest(maxTrials=8, parallelism=2,
                   earlyStopping={"rule": "asha", "settings": {"minResource": 1, "maxResource": 9}})
    doc["spec"]["trialTemplate"]["spec"]["containers"][0].update(
        command=["python", str(TRIALS / "curve.py")],
        args=["--x=${params.x}", "--steps=9", "--sleep=0.3", f"--track={track}"])
    doc["spec"]["trialTemplate"]["resources"] = {"cpu": 1}
    (tmp_path / "exp").mkdir()
    track.mkdir()
    path = tmp_path / "exp" / "experiment.yaml"
    path.write_text(yaml.safe_dump(doc))
    code, output = finish(kubetune("run", path, "--out", out, "--backend", "ray", "--address", cluster.address,
                                   "--quiet"))
    assert code == 0, output
    trials = rows(out)
    stopped = [t for t in trials.values() if t["state"] == "EarlyStopped"]
    finished = [t for t in trials.values() if t["state"] == "Succeeded"]
    assert stopped and finished and len(stopped) + len(finished) == 8
    for trial in stopped:
        assert trial["progress"]["step"] < 9 and trial["message"].startswith("stopped by the asha rule at step")
    for marker in track.iterdir():  # left by the stopped trials: their processes are gone, on their node
        assert process_ended(int(marker.read_text()), within=0)


def test_the_ray_example_runs_on_the_cluster(cluster, tmp_path):
    cluster.node_ids(2)
    out = tmp_path / "out"
    example = Path(__file__).resolve().parents[1] / "examples" / "ray" / "experiment.yaml"
    code, output = finish(kubetune("run", example, "--out", out, "--backend", "ray", "--address", cluster.address,
                                   "--max-trials", "4", "--parallelism", "2"))
    assert code == 0, output
    assert "2 at a time" in output
    trials = rows(out)
    assert len(trials) == 4, output
    for trial in trials.values():  # the JSON lines train.py prints are its reports, read through Ray
        assert trial["state"] in {"Succeeded", "EarlyStopped"} and trial["value"] is not None, trial
        assert 1 <= trial["progress"]["step"] <= 27 and 0 < trial["metrics"]["accuracy"] <= 1, trial
    assert any(trial["progress"]["step"] == 27 for trial in trials.values()), "a trial trained to the end"
