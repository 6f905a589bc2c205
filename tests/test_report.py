"""``kubetune report``: the page of real run folders (a plain run and one with early stopping) opened in
headless Chromium (no JavaScript error, every plot drawn, the table's rows all there), nothing fetched from
the network, the plots' own rules (sampling, importance, lanes), and bad input refused in one line."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmarks.report import make_run_folder
from conftest import TRIALS, manifest
from kubetune.cli import main
from kubetune.results.report import importance, parallel, render_report, table, timeline
from kubetune.results.report.data import build_frame
from kubetune.results.run_folder import read_run_folder

PLOTS = {"plain": ["history-time", "history-number", "parallel", "importance", "slice-x", "timeline"],
         # importance needs 4 Succeeded trials, which ASHA may not leave here
         "stopping": ["history-time", "history-number", "parallel", "slice-x", "timeline", "curves"],
         "empty": [],
         "many": ["history-time", "history-number", "parallel", "importance", "slice-lr", "slice-optimizer",
                  "timeline", "curves"]}


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


needs_chromium = pytest.mark.skipif(
    _chromium() is None, reason="headless Chromium is not installed and could not be (make browser installs "
                                "Debian's chromium with apt-get, which needs root or passwordless sudo)")


def _run(folder: Path, document: dict) -> Path:
    file = folder / "experiment-input.yaml"
    file.write_text(yaml.safe_dump(document, sort_keys=False))
    out = folder / "out"
    assert main(["run", str(file), "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two real run folders: six plain trials two at a time, and twelve with learning curves under ASHA."""
    plain = _run(tmp_path_factory.mktemp("plain"), manifest(maxTrials=6, parallelism=2))
    stopping_doc = manifest(maxTrials=12, parallelism=3,
                            earlyStopping={"rule": "asha", "settings": {"minResource": 1, "maxResource": 9}})
    stopping_doc["spec"]["trialTemplate"]["spec"]["containers"][0].update(
        command=[sys.executable, str(TRIALS / "curve.py")], args=["--x=${params.x}", "--steps=9", "--sleep=0.1"])
    stopping = _run(tmp_path_factory.mktemp("stopping"), stopping_doc)
    many = tmp_path_factory.mktemp("many") / "run"
    make_run_folder(many, 450)  # synthetic (benchmarks/report.py): more rows than a page of the table
    empty = tmp_path_factory.mktemp("empty")  # a run that has not finished a trial yet
    (empty / "experiment.yaml").write_text(yaml.safe_dump(manifest()))
    return {"plain": plain, "stopping": stopping, "many": many, "empty": empty}


def _dump_dom(page: Path) -> tuple[str, str]:
    """The page's DOM after its scripts ran, and Chromium's log (console messages included)."""
    done = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", "--dump-dom", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


@needs_chromium
@pytest.mark.parametrize("kind", ["plain", "stopping", "many", "empty"])
def test_the_page_renders_in_chromium_without_errors(runs, kind, tmp_path):
    page = tmp_path / "report.html"
    assert main(["report", str(runs[kind]), "-o", str(page)]) == 0
    dom, log = _dump_dom(page)
    console = [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    check = re.search(r'<div id="report-check"[^>]*>', dom)
    assert check, "the page's script did not run to its end"
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', check.group(0)))
    assert json.loads(html.unescape(attrs["errors"])) == [] and attrs["ready"] == "true"
    trials = len(read_run_folder(runs[kind]).trials)
    assert attrs["total"] == str(trials)
    shown = min(trials, table.PAGE)
    assert attrs["rows"] == str(shown) == str(len(re.findall(r"<tr data-i=\"\d", dom)))
    assert f"rows 1–{shown} of {trials}" in dom if trials else "no rows" in dom
    plots = dict(re.findall(r'<svg class="plot" data-plot="([^"]+)"[^>]*>(.*?)</svg>', dom, flags=re.S))
    for name in PLOTS[kind]:
        assert name in plots, f"no {name} plot"
        assert re.search(r"<(circle|path|polyline|rect)\b", plots[name]), f"the {name} plot is empty"
    if kind == "empty":
        assert "No trial has reported a value yet." in dom
    if kind in ("stopping", "many"):
        assert 'class="stop"' in plots["curves"], "early-stopped trials end in a cross"
        assert "s-EarlyStopped" in plots["curves"]


def test_nothing_is_fetched_from_the_network(runs, tmp_path):
    for folder in runs.values():
        page = render_report(read_run_folder(folder))
        assert "http://" not in page and "https://" not in page
        for attribute in re.findall(r'\b(?:src|href)\s*=\s*"([^"]*)"', page):
            assert attribute.startswith("#"), attribute
        assert "@import" not in page and "url(" not in page


def test_the_default_output_is_in_the_run_folder(runs, capsys):
    assert main(["report", str(runs["plain"])]) == 0
    assert (runs["plain"] / "report.html").stat().st_size > 1000
    assert "report.html" in capsys.readouterr().out


@pytest.mark.parametrize("how", ["not-a-folder", "no-manifest", "nothing"])
def test_a_source_that_is_not_a_run_folder_is_refused(tmp_path, capsys, how):
    args = {"not-a-folder": [str(tmp_path / "missing")], "no-manifest": [str(tmp_path)], "nothing": []}[how]
    assert main(["report", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("args", [["--experiment", "demo", "--kubeconfig", "/nonexistent/kubeconfig"],
                                  ["SOURCE", "--experiment", "demo"]])
def test_a_cluster_experiment_that_cannot_be_read_is_refused_in_one_line(runs, capsys, args):
    args = [str(runs["plain"]) if a == "SOURCE" else a for a in args]
    assert main(["report", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("where", ["below-a-file", "a-folder"])
def test_an_unwritable_output_is_refused(runs, tmp_path, capsys, where):
    (tmp_path / "file").write_text("")
    out = {"below-a-file": tmp_path / "file" / "report.html", "a-folder": tmp_path}[where]
    assert main(["report", str(runs["plain"]), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: -o") and len(err.strip().splitlines()) == 1, err


def test_many_trials_are_sampled_in_parallel_coordinates_and_the_page_says_so(tmp_path):
    make_run_folder(tmp_path / "run", 1500)
    results = read_run_folder(tmp_path / "run")
    frame = build_frame(results)
    drawn = parallel.sample(frame, frame.scored())
    assert len(drawn) == parallel.MAX_LINES and len(set(drawn.tolist())) == parallel.MAX_LINES
    best = frame.best_first(frame.scored())[: parallel.BEST_LINES]
    assert set(best.tolist()) <= set(drawn.tolist()), "the best trials are always drawn"
    section = parallel.render(frame)
    assert f"{parallel.MAX_LINES} of 1500" in section.note and section.body.count("<polyline") == parallel.MAX_LINES
    assert 'data-plot="slice-lr"' in render_report(results)


def test_importance_finds_the_parameter_that_matters(tmp_path):
    make_run_folder(tmp_path / "run", 600)
    scores = importance.importances(build_frame(read_run_folder(tmp_path / "run")))
    names = [name for name, _, _ in scores]
    assert set(names[:2]) == {"lr", "optimizer"}, scores  # the synthetic loss depends most on these
    assert dict((n, s) for n, s, _ in scores)["batch"] < 0.02, "batch has no effect"


def test_eta_squared_of_a_perfect_and_of_no_effect():
    codes = np.repeat([0, 1, 2], 10)
    assert importance.eta_squared(codes, codes.astype(float)) == pytest.approx(1.0)
    assert importance.eta_squared(codes, np.tile(np.arange(10.0), 3)) == pytest.approx(0.0)


def test_lanes_reuse_the_slot_that_ended():
    starts, ends = np.array([0.0, 0.0, 5.0, 6.0]), np.array([5.0, 10.0, 8.0, 12.0])
    assert timeline.lanes(starts, ends).tolist() == [0, 1, 0, 2]
