"""Early stopping in the local runner: reports read from real processes as they print them, hopeless trials
stopped (their whole process group) and recorded as EarlyStopped."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from conftest import TRIALS, manifest
from kubetune.cli import main


def rows(out: Path) -> dict[str, dict]:
    latest: dict[str, dict] = {}
    for line in (out / "trials.jsonl").read_text().splitlines():
        row = json.loads(line)
        latest[row["id"]] = row
    return latest


def document(rule: dict, track: Path, **spec) -> dict:
    doc = manifest(**{"maxTrials": 12, "parallelism": 3, "earlyStopping": rule, **spec})
    doc["spec"]["trialTemplate"]["spec"]["containers"][0].update(
        command=[sys.executable, str(TRIALS / "curve.py")],
        args=["--x=${params.x}", "--steps=9", "--sleep=0.15", f"--track={track}"])
    return doc


# The median rule compares with succeeded trials only: one trial at a time, so that some have succeeded
# before the others are judged whatever the machine's pace.
@pytest.mark.parametrize(("rule", "parallelism"), [
    ({"rule": "asha", "settings": {"minResource": 1, "maxResource": 9}}, 3),
    ({"rule": "median", "settings": {"minTrialsRequired": 2, "startStep": 3}}, 1)])
def test_hopeless_trials_are_stopped_and_recorded(write_manifest, tmp_path, rule, parallelism):
    track = tmp_path / "running"
    track.mkdir()
    out = tmp_path / "out"
    doc = document(rule, track, parallelism=parallelism)
    assert main(["run", str(write_manifest(doc)), "--out", str(out), "--quiet"]) == 0
    trials = rows(out)
    assert len(trials) == 12, "early-stopped trials count towards maxTrials"
    stopped = [t for t in trials.values() if t["state"] == "EarlyStopped"]
    finished = [t for t in trials.values() if t["state"] == "Succeeded"]
    assert stopped and finished and len(stopped) + len(finished) == 12
    for trial in stopped:
        assert trial["reason"] == "EarlyStopped" and trial["progress"]["step"] < 9
        assert trial["message"].startswith(f"stopped by the {rule['rule']} rule at step")
        assert trial["value"] == trial["progress"]["value"]
    for trial in finished:
        assert trial["progress"]["step"] == 9 and trial["progress"]["reports"] == 9
    for marker in track.iterdir():  # left by the stopped trials: their processes are gone
        with pytest.raises(ProcessLookupError):
            os.kill(int(marker.read_text()), 0)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["EarlyStopped"] == len(stopped)
    best = min(finished, key=lambda t: t["value"])
    assert summary["best"]["id"] == best["id"], "an early-stopped trial is never the best"


def test_without_a_rule_nothing_is_stopped(write_manifest, tmp_path):
    track = tmp_path / "running"
    track.mkdir()
    doc = document({"rule": "none"}, track)
    doc["spec"]["maxTrials"] = 3
    out = tmp_path / "out"
    assert main(["run", str(write_manifest(doc)), "--out", str(out), "--quiet"]) == 0
    assert {t["state"] for t in rows(out).values()} == {"Succeeded"}
