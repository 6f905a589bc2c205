"""The local runner end to end, with real subprocesses running tests/trials/objective.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from processes import process_ended

from conftest import manifest
from kubetune.cli import main
from kubetune.core.manifest import load_experiment
from kubetune.runners import local_runner
from kubetune.runners.backend import RunnerError

ROW_FIELDS = {"id", "params", "state", "metrics", "started", "finished"}


def attempt_rows(out: Path) -> list[dict]:
    """Every row of trials.jsonl: one per ended attempt."""
    return [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]


def rows(out: Path) -> list[dict]:
    """The latest row of each trial, as a reader of trials.jsonl takes them."""
    latest: dict[str, dict] = {}
    for row in attempt_rows(out):
        latest[row["id"]] = row
    return list(latest.values())


def run_cli(file: Path, out: Path, *extra: str) -> int:
    return main(["run", str(file), "--out", str(out), "--quiet", *extra])


def test_runs_to_completion_within_parallelism(write_manifest, tmp_path):
    track = tmp_path / "running"
    track.mkdir()
    # the first three trials wait for each other, so that they run together however slowly processes start
    file = write_manifest(manifest(parallelism=3, maxTrials=12, args=["--x=${params.x}", "--sleep=0.3",
                                                                      f"--track={track}", "--together=3"]))
    out = tmp_path / "out"
    assert run_cli(file, out) == 0
    trials = rows(out)
    assert len(trials) == 12 and len({t["id"] for t in trials}) == 12
    assert all(set(t) >= ROW_FIELDS and t["state"] == "Succeeded" for t in trials)
    assert all(t["finished"].endswith("Z") and t["started"] <= t["finished"] for t in trials)
    concurrency = [t["metrics"]["concurrent"] for t in trials]
    assert max(concurrency) <= 3
    assert max(concurrency) == 3, "slots are refilled, so three trials do run together"
    summary = json.loads((out / "summary.json").read_text())
    best = min(trials, key=lambda t: t["value"])
    assert summary["best"]["value"] == best["value"] == pytest.approx((best["params"]["x"] - 2) ** 2)
    assert summary["best"]["id"] == best["id"]
    assert summary["counts"] == {"Succeeded": 12} and summary["phase"] == "Succeeded"


def test_the_contract_manifest_with_a_users_script(tmp_path):
    """Point 2's manifest shape (every parameter type, maximize, target, additional metrics) with a script of
    the user's own, run through the CLI as a user would."""
    (tmp_path / "train.py").write_text(
        "import argparse\n"
        "p = argparse.ArgumentParser()\n"
        "p.add_argument('--C', type=float); p.add_argument('--kernel'); p.add_argument('--degree', type=int)\n"
        "p.add_argument('--batch', type=int)\n"
        "a = p.parse_args()\n"
        "score = 1 / (1 + abs(a.C - 1)) + (a.kernel == 'rbf') * 0.1 + a.degree / 100 + a.batch / 1000\n"
        "print(f'accuracy={score} loss={1 - score}')\n"
    )
    (tmp_path / "experiment.yaml").write_text(f"""
apiVersion: kubetune.io/v1alpha1
kind: Experiment
metadata: {{name: wine-svc}}
spec:
  objective: {{metric: accuracy, direction: maximize, target: 5.0, additionalMetrics: [loss], strategy: latest}}
  parameters:
    - {{name: C, type: double, min: 0.001, max: 1000, scale: log}}
    - {{name: kernel, type: categorical, values: [rbf, linear, poly]}}
    - {{name: degree, type: int, min: 1, max: 5}}
    - {{name: batch, type: discrete, values: [16, 32, 64]}}
  algorithm: {{name: random, settings: {{}}}}
  seed: 0
  parallelism: 4
  maxTrials: 10
  maxFailedTrials: 3
  trialTemplate:
    timeoutSeconds: 600
    retries: 0
    resources: {{cpu: 1, memory: 1Gi}}
    metricsCollector: {{kind: stdout}}
    spec:
      containers:
        - name: trial
          image: python:3.12-slim
          command: [{sys.executable}, train.py]
          args: ["--C=${{params.C}}", "--kernel=${{params.kernel}}", "--degree=${{params.degree}}",
                 "--batch=${{params.batch}}"]
""")
    out = tmp_path / "results"
    assert run_cli(tmp_path / "experiment.yaml", out) == 0
    trials = rows(out)
    assert len(trials) == 10 and all(t["state"] == "Succeeded" for t in trials)
    assert all(set(t["metrics"]) == {"accuracy", "loss"} for t in trials)
    assert json.loads((out / "summary.json").read_text())["best"]["value"] == max(t["value"] for t in trials)


def test_environment_and_working_folder(write_manifest, tmp_path):
    script = (
        "import json, os, pathlib\n"
        "p = json.loads(os.environ['KUBETUNE_PARAMS'])\n"
        "assert os.environ['KUBETUNE_PARAM_LEARNING_RATE'] == repr(p['learning-rate'])\n"
        "assert os.environ['KUBETUNE_TRIAL'].startswith('demo-')\n"
        "assert os.environ['GREETING'] == 'lr ' + repr(p['learning-rate'])\n"
        "assert pathlib.Path('here.txt').exists()\n"
        "print('loss=', p['learning-rate'])\n"
    )
    (tmp_path / "here.txt").write_text("the manifest's folder is the working folder")
    document = manifest(parameters=[{"name": "learning-rate", "type": "double", "min": 0.1, "max": 1}], maxTrials=2)
    container = document["spec"]["trialTemplate"]["spec"]["containers"][0]
    container.update(command=[sys.executable, "-c", script], args=[],
                     env=[{"name": "GREETING", "value": "lr ${params.learning-rate}"}])
    out = tmp_path / "out"
    assert run_cli(write_manifest(document), out) == 0
    assert [t["state"] for t in rows(out)] == ["Succeeded"] * 2


def test_failures_metrics_unavailable_and_nan(write_manifest, tmp_path):
    cases = {"exit4": ("--exit=4", "Failed"), "none": ("--report=none", "MetricsUnavailable"),
             "nan": ("--report=nan", "MetricsUnavailable")}
    for name, (flag, state) in cases.items():
        out = tmp_path / name
        file = write_manifest(manifest(maxTrials=2, maxFailedTrials=5, args=["--x=${params.x}", flag]))
        assert run_cli(file, out) == 1, "no trial succeeded"
        trials = rows(out)
        assert [t["state"] for t in trials] == [state] * 2
        summary = json.loads((out / "summary.json").read_text())
        assert summary["best"] is None and summary["reason"] == "NoSuccessfulTrial"
    failed = rows(tmp_path / "exit4")[0]
    assert failed["exit_code"] == 4 and "exited with status 4" in failed["message"]
    assert "not finite" in rows(tmp_path / "nan")[0]["message"]


def test_max_failed_trials_fails_the_experiment(write_manifest, tmp_path):
    file = write_manifest(manifest(maxTrials=20, maxFailedTrials=2, parallelism=1, args=["--exit=1"]))
    out = tmp_path / "out"
    assert run_cli(file, out) == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["phase"] == "Failed" and summary["reason"] == "MaxFailedTrialsReached"
    assert summary["counts"] == {"Failed": 3}


def test_timeout_kills_the_whole_process_group(write_manifest, tmp_path):
    """The trial starts a child process and both outlive the timeout; the child is killed with the trial."""
    child_pid = tmp_path / "child.pid"
    child = f"import os, time; open({str(child_pid)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    script = tmp_path / "sleeper.py"
    script.write_text(f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', {child!r}])\n"
                      "time.sleep(600)\n")
    # the timeout is what is under test; 3 s leave the child time to start on a busy machine
    document = manifest(maxTrials=1, template={"timeoutSeconds": 3})
    document["spec"]["trialTemplate"]["spec"]["containers"][0].update(command=[sys.executable, str(script)], args=[])
    out = tmp_path / "out"
    assert run_cli(write_manifest(document), out) == 1
    (trial,) = rows(out)
    assert trial["state"] == "Failed" and trial["reason"] == "Timeout"
    assert child_pid.exists(), "the child process started before the timeout"
    assert process_ended(int(child_pid.read_text())), "the trial's child process was killed too"



def test_retries_rerun_a_failed_trial_in_its_slot(write_manifest, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    file = write_manifest(manifest(maxTrials=3, maxFailedTrials=0, template={"retries": 2},
                                   args=["--x=${params.x}", "--fail-attempts=2", f"--state={state}"]))
    out = tmp_path / "out"
    assert run_cli(file, out) == 0
    trials = rows(out)
    assert [(t["state"], t["attempt"]) for t in trials] == [("Succeeded", 3)] * 3
    assert len(list((out / "trials" / trials[0]["id"]).glob("attempt-*.stderr.log"))) == 3
    every = attempt_rows(out)
    assert len(every) == 9, "one row per attempt"
    assert sorted((t["attempt"], t["state"], bool(t.get("retry"))) for t in every if t["id"] == trials[0]["id"]) == [
        (1, "Failed", True), (2, "Failed", True), (3, "Succeeded", False)]
    assert trials[0]["message"].startswith("attempt 1 failed (exited with status")

    state2 = tmp_path / "state2"
    state2.mkdir()
    file = write_manifest(manifest(maxTrials=2, maxFailedTrials=5, template={"retries": 1},
                                   args=["--x=${params.x}", "--fail-attempts=5", f"--state={state2}"]))
    assert run_cli(file, tmp_path / "out2") == 1
    assert [(t["state"], t["attempt"]) for t in rows(tmp_path / "out2")] == [("Failed", 2)] * 2


def test_target_stops_the_experiment_early(write_manifest, tmp_path):
    document = manifest(maxTrials=50, parallelism=2, args=["--x=${params.x}"],
                        objective={"metric": "loss", "direction": "minimize", "target": 30})
    out = tmp_path / "out"
    assert run_cli(write_manifest(document), out) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reason"] == "TargetReached" and summary["best"]["value"] <= 30
    assert summary["trials"] < 50


def test_file_collector(write_manifest, tmp_path):
    document = manifest(maxTrials=3, parallelism=3, args=["--x=${params.x}", "--report=sdk"],
                        template={"metricsCollector": {"kind": "file", "path": "metrics/${trial.id}.txt"}})
    (tmp_path / "metrics").mkdir()
    out = tmp_path / "out"
    assert run_cli(write_manifest(document), out) == 0
    assert len(list((tmp_path / "metrics").iterdir())) == 3
    assert all(t["state"] == "Succeeded" for t in rows(out))


def test_grid_search_ends_when_the_grid_is_done(write_manifest, tmp_path):
    document = manifest(maxTrials=100, parallelism=2, algorithm={"name": "grid"},
                        parameters=[{"name": "x", "type": "int", "min": 0, "max": 4}])
    out = tmp_path / "out"
    assert run_cli(write_manifest(document), out) == 0
    assert sorted(t["params"]["x"] for t in rows(out)) == [0, 1, 2, 3, 4]
    assert json.loads((out / "summary.json").read_text())["reason"] == "SearchSpaceExhausted"


def test_refuses_to_overwrite_and_resumes_without_repeating(write_manifest, tmp_path):
    file = write_manifest(manifest(maxTrials=4, parallelism=2))
    out = tmp_path / "out"
    assert run_cli(file, out) == 0
    assert run_cli(file, out) == 2, "an existing run is never overwritten"
    first = attempt_rows(out)
    assert run_cli(file, out, "--resume", "--max-trials", "7") == 0
    after = attempt_rows(out)
    assert after[:4] == first
    assert len(after) == 7 and len({t["id"] for t in after}) == 7
    xs = [t["params"]["x"] for t in after]
    assert len(set(xs)) == 7


def test_resume_skips_a_torn_last_line(write_manifest, tmp_path):
    file = write_manifest(manifest(maxTrials=3))
    out = tmp_path / "out"
    assert run_cli(file, out) == 0
    with (out / "trials.jsonl").open("a") as f:
        f.write('{"id": "demo-9", "par')
    assert run_cli(file, out, "--resume", "--max-trials", "4") == 0
    assert len({t["id"] for t in map(json.loads, (out / "trials.jsonl").read_text().splitlines()[:3])}) == 3


def test_gpu_shares_are_packed_onto_devices(write_manifest, tmp_path):
    script = ("import os; print('loss=1 concurrent=0'); "
              "print('devices', os.environ['CUDA_VISIBLE_DEVICES'], 'share', os.environ['KUBETUNE_GPU_SHARE'])")
    document = manifest(maxTrials=8, parallelism=8, template={"resources": {"gpu": 0.25}})
    document["spec"]["trialTemplate"]["spec"]["containers"][0].update(command=[sys.executable, "-c", script], args=[])
    experiment = load_experiment(document)
    out = tmp_path / "out"
    import asyncio

    runner = local_runner(experiment, out, tmp_path, gpus=["0", "1"])
    outcome = asyncio.run(runner.run())
    assert outcome.phase == "Succeeded"
    devices = sorted(r.devices[0] for r in outcome.records)
    assert devices == ["0"] * 4 + ["1"] * 4
    logs = [(out / "trials" / r.id / "attempt-1.stdout.log").read_text() for r in outcome.records]
    assert all(f"devices {r.devices[0]} share 0.25" in log for r, log in zip(outcome.records, logs, strict=True))


def test_the_run_says_when_fewer_trials_fit_on_the_gpus_than_parallelism(write_manifest, tmp_path, monkeypatch,
                                                                          capsys):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    document = manifest(maxTrials=2, parallelism=4, template={"resources": {"gpu": 0.5}})
    assert main(["run", str(write_manifest(document)), "--out", str(tmp_path / "out")]) == 0
    assert "2 at a time (parallelism 4, but only 2 fit on this machine's GPUs)" in capsys.readouterr().out
    document = manifest(maxTrials=2, parallelism=2, template={"resources": {"gpu": 0.5}})
    assert main(["run", str(write_manifest(document)), "--out", str(tmp_path / "out2")]) == 0
    out = capsys.readouterr().out
    assert "2 at a time;" in out and "fit on" not in out


def test_gpu_request_without_gpu_is_an_error_unless_no_gpu(write_manifest, tmp_path):
    document = manifest(maxTrials=1, template={"resources": {"gpu": 0.5}})
    script = "import os; print('loss=1'); print('share', os.environ.get('KUBETUNE_GPU_SHARE', 'none'))"
    document["spec"]["trialTemplate"]["spec"]["containers"][0].update(command=[sys.executable, "-c", script], args=[])
    experiment = load_experiment(document)
    with pytest.raises(RunnerError, match="--no-gpu"):
        local_runner(experiment, tmp_path / "out", tmp_path, gpus=[]).prepare()
    file = write_manifest(document)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-m", "kubetune.cli", "run", str(file), "--out", str(tmp_path / "o")],
                            env=env, capture_output=True, text=True)
    assert result.returncode == 2 and "--no-gpu" in result.stderr
    assert run_cli(file, tmp_path / "o2", "--no-gpu") == 0
    (trial,) = rows(tmp_path / "o2")
    assert "share none" in (tmp_path / "o2" / "trials" / trial["id"] / "attempt-1.stdout.log").read_text()


def test_command_not_found_is_a_failed_trial(write_manifest, tmp_path):
    document = manifest(maxTrials=1)
    document["spec"]["trialTemplate"]["spec"]["containers"][0]["command"] = ["no-such-program-kubetune"]
    out = tmp_path / "out"
    assert run_cli(write_manifest(document), out) == 1
    (trial,) = rows(out)
    assert trial["reason"] == "StartError" and "no-such-program-kubetune" in trial["message"]


def test_ctrl_c_stops_trials_and_keeps_finished_results(write_manifest, tmp_path):
    track = tmp_path / "running"
    track.mkdir()
    # trials 0-2 end at once; from trial 3 on they run until stopped, so Ctrl-C finds exactly two running
    document = manifest(maxTrials=40, parallelism=2, args=["--x=${params.x}", f"--track={track}", "--hold-from=3"])
    file = write_manifest(document)
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "kubetune.cli", "run", str(file), "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not ((out / "trials.jsonl").exists() and len(rows(out)) == 3 and len(list(track.iterdir())) == 2):
        assert time.monotonic() < deadline and process.poll() is None, "trials 3 and 4 never ran"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    trials = rows(out)
    finished = [t for t in trials if t["state"] == "Succeeded"]
    killed = [t for t in trials if t["state"] == "Killed"]
    assert len(finished) == 3 and len(killed) == 2 and len(trials) == 5
    assert all(t["reason"] == "Interrupted" for t in killed)
    for marker in track.iterdir():  # left behind by the trials that were stopped
        assert process_ended(int(marker.read_text())), f"{marker.name}'s process outlived the runner"
        marker.unlink()
    assert "--resume" in output

    document["spec"]["trialTemplate"]["spec"]["containers"][0]["args"].remove("--hold-from=3")
    file.write_text(yaml.safe_dump(document, sort_keys=False))
    assert run_cli(file, out, "--resume", "--max-trials", str(len(trials) + 1)) == 0
    latest = {t["id"]: t for t in rows(out)}
    assert all(latest[t["id"]]["state"] == "Succeeded" for t in killed), "interrupted trials ran again"
    assert all(latest[t["id"]] == t for t in finished), "finished trials were not repeated"
    assert len(latest) == len(trials) + 1
