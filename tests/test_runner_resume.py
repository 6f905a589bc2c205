"""The runner never loses or repeats work: exact resumes for every algorithm, trials that die with the
runner (kill -9, a closed terminal), a changed manifest refused, one row per attempt, a summary of the whole
run."""

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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_results_status import LINES, MANIFESTS, PLAUSIBLE_ROW, ROW, fuzzed_folder

from conftest import FUZZ, JSON_VALUES, manifest
from kubetune.cli import main
from kubetune.core.engine import Optimizer
from kubetune.core.manifest import load_experiment
from kubetune.runners.run_folder import meaning_changes

PARAMETERS = [{"name": "x", "type": "double", "min": -5, "max": 10}, {"name": "k", "type": "int", "min": 0, "max": 3}]


def rows(out: Path) -> list[dict]:
    latest: dict[str, dict] = {}
    for line in (out / "trials.jsonl").read_text().splitlines():
        row = json.loads(line)
        latest[row["id"]] = row
    return list(latest.values())


def run_cli(file: Path, out: Path, *extra: str) -> int:
    return main(["run", str(file), "--out", str(out), "--quiet", *extra])


@pytest.mark.parametrize("algorithm", ["random", "sobol", "gp", "grid"])
def test_a_resumed_optimizer_goes_on_as_an_uninterrupted_one_would_without_repeating(algorithm):
    def build(trials=()):
        return Optimizer(PARAMETERS, algorithm=algorithm, seed=3, trials=trials,
                         settings={"steps": 4} if algorithm == "grid" else None)

    whole = build()
    first = whole.ask(6)
    for s in first:
        whole.tell(s.id, float(s.params["x"]) ** 2)
    rest = whole.ask(6)
    resumed = build([{"id": s.id, "params": s.params, "state": "completed", "value": float(s.params["x"]) ** 2}
                     for s in first])
    again = resumed.ask(6)
    assert len(again) == 6 and not resumed.exhausted
    keys = {json.dumps(s.params, sort_keys=True) for s in first}
    assert not keys & {json.dumps(s.params, sort_keys=True) for s in again}, "no point of the first sitting again"
    if algorithm in ("random", "sobol", "grid"):
        assert [s.params for s in again] == [s.params for s in rest], "the same points as without the interruption"


@pytest.mark.parametrize("algorithm", ["random", "sobol"])
def test_interrupted_and_resumed_runs_end_with_exactly_max_trials(write_manifest, tmp_path, algorithm):
    file = write_manifest(manifest(maxTrials=24, parallelism=3, algorithm={"name": algorithm},
                                   args=["--x=${params.x}", "--sleep=0.2"]))
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "kubetune.cli", "run", str(file), "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_rows(out, 6)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    assert run_cli(file, out, "--resume") == 0
    trials = rows(out)
    assert len(trials) == 24 and all(t["state"] == "Succeeded" for t in trials)
    assert len({t["params"]["x"] for t in trials}) == 24
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reason"] == "MaxTrialsReached" and summary["trials"] == 24
    assert len(summary["sittings"]) == 2
    assert summary["wallSeconds"] == pytest.approx(sum(s["wallSeconds"] for s in summary["sittings"]), abs=0.01)


def test_resume_extends_a_finished_run_and_keeps_its_summary(write_manifest, tmp_path):
    file = write_manifest(manifest(maxTrials=4, algorithm={"name": "sobol"}))
    out = tmp_path / "out"
    assert run_cli(file, out) == 0
    summary = (out / "summary.json").read_text()
    assert run_cli(file, out, "--resume") == 0
    assert (out / "summary.json").read_text() == summary, "a resume with nothing to do rewrites nothing"
    assert run_cli(file, out, "--resume", "--max-trials", "7") == 0
    assert len(rows(out)) == 7
    extended = json.loads((out / "summary.json").read_text())
    assert extended["trials"] == 7 and len(extended["sittings"]) == 2
    assert extended["started"] == json.loads(summary)["started"]


@pytest.mark.parametrize("how", ["SIGKILL", "SIGHUP"])
def test_trials_die_with_the_runner_and_a_resume_reuses_no_id(write_manifest, tmp_path, how):
    track = tmp_path / "running"
    track.mkdir()
    file = write_manifest(manifest(maxTrials=8, parallelism=2,
                                   args=["--x=${params.x}", "--sleep=30", f"--track={track}"]))
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "kubetune.cli", "run", str(file), "--out", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while len(list(track.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    pids = [int(marker.read_text()) for marker in track.iterdir()]
    assert len(pids) == 2
    started = {p.parent.name: json.loads(p.read_text()) for p in (out / "trials").glob("*/trial.json")}
    process.send_signal(getattr(signal, how))
    process.wait(timeout=30)
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids), f"trial processes outlived the runner ({how})"

    for marker in track.iterdir():
        marker.unlink()
    fast = manifest(maxTrials=8, parallelism=2, args=["--x=${params.x}", f"--track={track}"])
    file.write_text(yaml.safe_dump(fast))
    assert run_cli(file, out, "--resume") == 0
    trials = {t["id"]: t for t in rows(out)}
    assert len(trials) == 8
    for trial, note in started.items():  # the cut-short trials ran again, with their own parameters
        assert trials[trial]["params"] == note["params"] and trials[trial]["state"] == "Succeeded"
        assert trials[trial]["attempt"] == note["attempt"] + 1, "a new attempt, so no log is overwritten"
        assert (out / "trials" / trial / f"attempt-{note['attempt']}.stdout.log").exists()


def test_a_resume_with_a_changed_manifest_is_refused_and_changes_nothing(write_manifest, tmp_path, capsys):
    file = write_manifest(manifest(maxTrials=2))
    out = tmp_path / "out"
    assert run_cli(file, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    changes = [
        ({"parameters": [{"name": "x", "type": "double", "min": -5, "max": 20}]}, "spec.parameters['x']"),
        ({"parameters": [{"name": "y", "type": "double", "min": -5, "max": 10}], "args": ["--x=${params.y}"]},
         "'x' was removed"),
        ({"objective": {"metric": "loss", "direction": "maximize"}}, "spec.objective.direction"),
    ]
    for change, named in changes:
        changed = manifest(maxTrials=4, **change)
        file.write_text(yaml.safe_dump(changed))
        assert run_cli(file, out, "--resume") == 2
        assert named in capsys.readouterr().err.replace("\n", "")
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_meaning_changes_ignores_what_does_not_change_past_results():
    base = load_experiment(manifest())
    other = load_experiment(manifest(parallelism=7, maxTrials=99, seed=5, algorithm={"name": "gp"}))
    assert meaning_changes(base, other) == []


def test_metrics_printed_to_stderr_count(write_manifest, tmp_path):
    script = "import sys; print('loss=0.5', file=sys.stderr)"
    document = manifest(maxTrials=1)
    document["spec"]["trialTemplate"]["spec"]["containers"][0].update(command=[sys.executable, "-c", script], args=[])
    out = tmp_path / "out"
    assert run_cli(write_manifest(document), out) == 0
    (trial,) = rows(out)
    assert trial["state"] == "Succeeded" and trial["value"] == 0.5


def test_an_unreported_metric_names_where_it_was_looked_for(write_manifest, tmp_path):
    script = "print('nothing here')"
    document = manifest(maxTrials=1, maxFailedTrials=1)
    document["spec"]["trialTemplate"]["spec"]["containers"][0].update(command=[sys.executable, "-c", script], args=[])
    out = tmp_path / "out"
    assert run_cli(write_manifest(document), out) == 1
    (trial,) = rows(out)
    assert trial["state"] == "MetricsUnavailable"
    assert trial["message"] == "the trial exited 0 without reporting loss in its stdout or its stderr"


def _wait_for_rows(out: Path, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (out / "trials.jsonl").exists() and len(rows(out)) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} trials ended within a minute")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- fuzzed run folders -----------------------------------------------------------------------------------------
RESUME_LINES = st.lists(PLAUSIBLE_ROW.map(json.dumps) | LINES.map("\n".join), max_size=6)


@settings(FUZZ, max_examples=FUZZ.max_examples // 2,  # each example runs the runner
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # capsys: read per example
@given(lines=RESUME_LINES, saved_manifest=MANIFESTS,
       summary=st.one_of(JSON_VALUES.map(json.dumps), st.text(max_size=10)),
       trial_note=st.one_of(PLAUSIBLE_ROW.map(json.dumps), ROW.map(json.dumps), st.text(max_size=10)))
def test_a_resume_of_any_run_folder_goes_on_or_says_why_and_keeps_every_row(lines, saved_manifest, summary,
                                                                            trial_note, tmp_path_factory, capsys):
    base = tmp_path_factory.mktemp("resume")
    folder = fuzzed_folder(base, lines, saved_manifest, summary, trial_note)
    before = (folder / "trials.jsonl").read_text()
    file = base / "experiment.yaml"
    file.write_text(yaml.safe_dump(manifest(maxTrials=3, parallelism=2)))
    status = run_cli(file, folder, "--resume")
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, captured.err
    assert status in (0, 1, 2), captured.err
    if status == 2:  # one line says why, after the warnings about what was left out
        *warnings, error = captured.err.strip().splitlines()
        assert error.startswith("error: ") and all(w.startswith("warning: ") for w in warnings), captured.err
    assert (folder / "trials.jsonl").read_text().startswith(before)  # nothing that was there is lost


def test_a_resume_of_trials_this_manifest_cannot_go_on_from_is_refused_and_changes_nothing(write_manifest, tmp_path,
                                                                                         capsys):
    out = tmp_path / "run"
    out.mkdir()
    rows = [{"id": "demo-0", "number": 0, "params": {"x": 1.0}, "state": "Succeeded", "value": 1.0},
            {"id": "demo-1", "number": 1, "params": {"x": 99.0}, "state": "Succeeded", "value": 0.5}]
    (out / "trials.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    before = (out / "trials.jsonl").read_text()
    assert run_cli(write_manifest(manifest()), out, "--resume") == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: --resume: {out} holds trials this manifest cannot go on from: trial demo-1: its "
                            "parameters do not fit spec.parameters (99.0 is outside [-5, 10] for parameter 'x')")
    assert (out / "trials.jsonl").read_text() == before
