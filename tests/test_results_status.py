"""``kubetune status`` and ``kubetune export`` of a run folder made by a real ``kubetune run``, the kubectl
plugin's arguments, bad input (one line, exit 2), and fuzzed run folders (never a traceback)."""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DEEP_JSON, FUZZ, HOSTILE_TEXT, JSON_VALUES, manifest
from kubetune.cli import EXIT_BAD_INPUT, kubectl_main, main
from kubetune.core.lifecycle import iso


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A finished run of 6 trials with a float and a categorical parameter, each trial's first attempt failing."""
    tmp = tmp_path_factory.mktemp("run")
    (tmp / "state").mkdir()
    document = manifest(maxTrials=6, parallelism=2, template={"retries": 1},
                        args=["--x=${params.x}", "--fail-attempts=1", f"--state={tmp / 'state'}"])
    document["spec"]["parameters"].append({"name": "opt", "type": "categorical", "values": ["adam", "sgd"]})
    (tmp / "exp.yaml").write_text(yaml.safe_dump(document))
    assert main(["run", str(tmp / "exp.yaml"), "--out", str(tmp / "run"), "--quiet"]) == 0
    return tmp / "run"


def rows(folder: Path) -> list[dict]:
    latest: dict[str, dict] = {}
    for line in (folder / "trials.jsonl").read_text().splitlines():
        row = json.loads(line)
        latest[row["id"]] = row
    return sorted(latest.values(), key=lambda r: r["number"])


def test_status_of_a_finished_run_shows_phase_counts_and_best(run_folder, capsys):
    assert main(["status", str(run_folder)]) == 0
    out = capsys.readouterr().out
    summary = json.loads((run_folder / "summary.json").read_text())
    best = summary["best"]
    assert f"demo ({run_folder}): {summary['phase']}" in out
    assert f"Trials: {summary['trials']}" in out
    for state, n in summary["counts"].items():
        assert state in out and str(n) in out
    assert f"Best: {best['id']} loss={best['value']:.4g} (minimize)" in out
    assert f"opt={best['params']['opt']}" in out
    assert "Running" not in out.split("Best:")[1]


def test_status_lists_running_trials_with_how_long_they_have_run(run_folder, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder)
    (folder / "summary.json").unlink()  # the run has not ended
    note = folder / "trials" / "demo-6"
    note.mkdir()
    (note / "trial.json").write_text(json.dumps({"id": "demo-6", "number": 6, "params": {"x": 1.5, "opt": "sgd"},
                                                 "attempt": 2}))
    (note / "attempt-2.stdout.log").write_text("")
    assert main(["status", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "(run): Running" in out.replace(str(tmp_path) + "/", "")
    assert "Running: 1" in out
    line = next(line for line in out.splitlines() if "demo-6" in line)
    assert "Running" in line and "x=1.5, opt=sgd" in line and "0m0" in line and " 2 " in line


def test_the_running_trials_run_longest_first_and_only_the_first_few_are_listed():
    from kubetune.results.status import Running, Snapshot, render

    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    running = [Running(f"t-{i}", "Running", iso(now - timedelta(seconds=10 * i + 5)), {"x": i}) for i in range(3)]
    snapshot = Snapshot("t", "here", "Running", "loss", "minimize", 50, {"Running": 30, "Succeeded": 20},
                        ("t-9", 0.5, {"x": 9}), running[::-1], 30)
    console_out = io.StringIO()
    from rich.console import Console

    Console(file=console_out, width=120).print(render(snapshot, now))
    out = console_out.getvalue()
    assert "Running: 30 (the 3 longest shown)" in out
    assert "0m25s" in out and "0m15s" in out and "0m05s" in out
    assert "Best: t-9 loss=0.5 (minimize)  x=9" in out


@pytest.mark.parametrize("format", ["csv", "jsonl"])
def test_export_writes_one_row_per_trial_with_params_and_metrics_as_columns(format, run_folder, tmp_path, capsys):
    assert main(["export", str(run_folder), "--format", format]) == 0
    text = capsys.readouterr().out
    exported = list(csv.DictReader(io.StringIO(text))) if format == "csv" else [
        json.loads(line) for line in text.splitlines()]
    expected = rows(run_folder)
    assert [r["id"] for r in exported] == [r["id"] for r in expected]
    assert list(exported[0]) == ["id", "number", "state", "value", "param.x", "param.opt", "metric.loss",
                                 "metric.concurrent", "started", "finished", "duration_s", "attempts", "reason"]
    for got, row in zip(exported, expected, strict=True):
        assert got["state"] == row["state"]
        assert float(got["param.x"]) == row["params"]["x"] and got["param.opt"] == row["params"]["opt"]
        assert got["started"] == row["started"] and got["finished"] == row["finished"]
        assert float(got["duration_s"]) >= 0 and int(got["attempts"]) == row["attempt"] == 2
        assert float(got["value"]) == row["value"] == float(got["metric.loss"])
        assert got["reason"] in ("", None)


def test_export_to_a_file(run_folder, tmp_path, capsys):
    out = tmp_path / "trials.csv"
    assert main(["export", str(run_folder), "-o", str(out)]) == 0
    assert capsys.readouterr().err.strip() == f"wrote {len(rows(run_folder))} trials to {out}"
    assert len(out.read_text().splitlines()) == len(rows(run_folder)) + 1


@pytest.mark.parametrize("argv, message", [
    (["status", "{tmp}/nowhere"], "{tmp}/nowhere: not a folder (a run folder is what kubetune run --out wrote)"),
    (["export", "{tmp}"], "{tmp}: no experiment.yaml, so not a kubetune run folder"),
    (["status"], "give a run folder (SOURCE) or --experiment NAME"),
    (["status", "{tmp}", "--experiment", "x"], "give a run folder (SOURCE) or --experiment NAME, not both"),
    (["status", "--experiment", "x", "--kubeconfig", "{tmp}/missing"],
     "no kubeconfig at {tmp}/missing (pass --kubeconfig FILE, or set KUBECONFIG)"),
    (["export", "--experiment", "x", "--kubeconfig", "{tmp}/garbled"], "kubeconfig {tmp}/garbled cannot be used: "),
    (["export", "{run}", "-o", "{tmp}"], "-o {tmp}: Is a directory"),
])
def test_bad_input_is_one_line_and_exit_2(argv, message, run_folder, tmp_path, capsys):
    (tmp_path / "garbled").write_text("apiVersion: v1\nclusters: [\n")
    argv = [a.format(tmp=tmp_path, run=run_folder) for a in argv]
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: " + message.format(tmp=tmp_path)), err


def test_the_kubectl_plugin_has_its_own_help_with_only_its_commands(capsys):
    with pytest.raises(SystemExit) as exited:
        kubectl_main(["--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0 and out.startswith("usage: kubectl kubetune")
    commands = {line.split()[0] for line in out.split("COMMAND\n", 1)[1].split("\n\n")[0].splitlines()
                if line.startswith("    ") and not line.startswith("      ")}
    assert commands == {"status", "export", "report"}
    assert not any(name in out for name in ("operator", "crds", "validate", "SOURCE"))
    pyproject = (Path(__file__).parent.parent / "pyproject.toml").read_text()
    assert 'kubectl-kubetune = "kubetune.cli:kubectl_main"' in pyproject


@pytest.mark.parametrize("verb", ["status", "export", "report"])
def test_the_kubectl_plugin_asks_for_the_experiments_name(verb, capsys):
    with pytest.raises(SystemExit) as exited:
        kubectl_main([verb, "-n", "team"])
    err = capsys.readouterr().err
    assert exited.value.code == EXIT_BAD_INPUT and f"kubectl kubetune {verb}" in err
    assert "the following arguments are required: NAME" in err and "run folder" not in err


@pytest.mark.parametrize("argv", [["status", "demo"], ["export", "demo", "--format", "jsonl"],
                                  ["report", "-n", "team", "demo", "-o", "r.html"]])
def test_a_bare_name_is_an_experiment_on_the_cluster_for_the_plugin_and_kubetune(argv, tmp_path, monkeypatch,
                                                                                capsys):
    monkeypatch.chdir(tmp_path)  # no folder named demo here
    missing = ["--kubeconfig", str(tmp_path / "none")]
    for command in (kubectl_main, main):
        assert command([*argv, *missing]) == EXIT_BAD_INPUT
        assert capsys.readouterr().err.startswith(f"error: no kubeconfig at {tmp_path / 'none'}")
    (tmp_path / "demo").mkdir()  # a folder of that name is a run folder, as it always was
    assert main([*argv, *missing]) == EXIT_BAD_INPUT
    assert "no experiment.yaml, so not a kubetune run folder" in capsys.readouterr().err


def test_the_kubectl_plugin_reads_the_cluster_not_a_folder(tmp_path, capsys):
    assert kubectl_main(["status", "demo", "--kubeconfig", str(tmp_path / "none")]) == EXIT_BAD_INPUT
    assert capsys.readouterr().err.startswith(f"error: no kubeconfig at {tmp_path / 'none'}")


# -- fuzzing ----------------------------------------------------------------------------------------------------
ROW_KEYS = st.sampled_from(["id", "number", "params", "state", "value", "metrics", "attempt", "history", "reason",
                            "started", "finished", "progress", "message", "exit_code", "devices", "retry"])
ROW = st.dictionaries(ROW_KEYS, JSON_VALUES | st.sampled_from(["Succeeded", "Running", "Failed",
                                                              "2026-01-01T00:00:00Z"]), max_size=10)
# a plausible row whose strings are hostile: markup, NUL, lone surrogates (JSON escapes them), long names
HOSTILE_ROW = st.fixed_dictionaries(
    {"id": HOSTILE_TEXT, "number": st.integers(0, 4), "params": st.dictionaries(HOSTILE_TEXT, HOSTILE_TEXT, max_size=2),
     "state": st.sampled_from(["Succeeded", "Failed", "Running"]) | HOSTILE_TEXT},
    optional={"value": st.floats(), "message": HOSTILE_TEXT, "reason": HOSTILE_TEXT})
PLAUSIBLE_ROW = st.fixed_dictionaries(
    {"id": st.integers(0, 4).map(lambda n: f"demo-{n}"), "number": st.integers(-1, 4) | JSON_VALUES,
     "params": st.fixed_dictionaries({}, optional={"x": st.floats() | JSON_VALUES, "y": st.integers()}),
     "state": st.sampled_from(["Succeeded", "Failed", "Running", "Pending", "Queued", "Killed", "EarlyStopped",
                               "MetricsUnavailable", "Bogus"])},
    optional={"value": st.floats() | JSON_VALUES, "attempt": st.integers(-1, 3) | JSON_VALUES,
              "retry": st.booleans(), "progress": JSON_VALUES, "metrics": JSON_VALUES})
LINES = st.lists(st.one_of(ROW.map(json.dumps), PLAUSIBLE_ROW.map(json.dumps),
                           st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
                           ROW.map(lambda r: json.dumps(r)[: len(json.dumps(r)) // 2]), DEEP_JSON, HOSTILE_TEXT,
                           HOSTILE_ROW.map(json.dumps)), max_size=6)


# A file of the run folder that is something else: a folder, or a device that never ends.
ODDITIES = [None, *((name, kind) for name in ("experiment.yaml", "trials.jsonl", "summary.json",
                                               "trials/demo-1/trial.json") for kind in ("folder", "/dev/zero"))]


def fuzzed_folder(base: Path, lines: list[str], manifest_text: str | None, summary: str, trial_note: str,
                  oddity: tuple[str, str] | None = None) -> Path:
    folder = base / "fuzzed"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "trials" / "demo-1").mkdir(parents=True)
    if manifest_text is not None:
        (folder / "experiment.yaml").write_text(manifest_text, errors="replace")
    (folder / "trials.jsonl").write_text("\n".join(lines), errors="replace")
    (folder / "summary.json").write_text(summary, errors="replace")
    (folder / "trials" / "demo-1" / "trial.json").write_text(trial_note, errors="replace")
    if oddity is not None:
        name, kind = oddity
        (folder / name).unlink(missing_ok=True)
        if kind == "folder":
            (folder / name).mkdir()
        else:
            (folder / name).symlink_to(kind)
    return folder


MANIFESTS = st.one_of(st.none(), st.just(yaml.safe_dump(manifest())), st.text(max_size=30), DEEP_JSON,
                      HOSTILE_TEXT.map(lambda name: yaml.safe_dump({"metadata": {"name": name},
                                                                    "spec": manifest()["spec"]})),
                      JSON_VALUES.map(lambda value: yaml.safe_dump({"spec": value, "metadata": value})),
                      JSON_VALUES.map(yaml.safe_dump))


@settings(FUZZ, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(lines=LINES, manifest_text=MANIFESTS, summary=st.one_of(JSON_VALUES.map(json.dumps), st.text(max_size=10)),
       trial_note=st.one_of(ROW.map(json.dumps), st.text(max_size=10)),
       command=st.sampled_from([["status"], ["export", "--format", "csv"], ["export", "--format", "jsonl"],
                                ["report"]]), oddity=st.sampled_from(ODDITIES))
def test_fuzzed_run_folders_never_give_a_traceback(lines, manifest_text, summary, trial_note, command, oddity,
                                                   tmp_path, capsys):
    folder = fuzzed_folder(tmp_path, lines, manifest_text, summary, trial_note, oddity)
    capsys.readouterr()  # what an earlier example printed, had it failed
    status = main([command[0], str(folder), *command[1:]])
    captured = capsys.readouterr()
    assert status in (0, EXIT_BAD_INPUT)
    if status == EXIT_BAD_INPUT:
        assert len(captured.err.strip().splitlines()) == 1 and captured.err.startswith("error: ")


def test_numbers_no_float_holds_in_a_row_are_no_value_or_an_unreadable_row(tmp_path, capsys):
    huge = 10**400
    rows = [{"id": "demo-0", "number": 0, "params": {"x": 1}, "state": "Succeeded", "value": huge},
            {"id": "demo-1", "number": 1, "params": {"x": 2}, "state": "Succeeded", "value": 0.5},
            {"id": "demo-2", "number": 2, "params": {"x": 3}, "state": "Succeeded", "value": 0.1,
             "progress": {"reports": 1, "curve": [[huge, 1, 1]]}}]
    folder = fuzzed_folder(tmp_path, [json.dumps(row) for row in rows], yaml.safe_dump(manifest()), "{}", "{}")
    assert main(["status", str(folder)]) == 0
    captured = capsys.readouterr()
    assert "Best: demo-1 loss=0.5" in captured.out and "Traceback" not in captured.err
    assert captured.err.startswith("warning: ") and "left out an unreadable row (line 3: OverflowError" in captured.err


@pytest.mark.parametrize("saved_manifest", ["spec: 1", "spec: {parameters: 3}", "spec: {parameters: [1, {name: x}]}"])
def test_a_report_of_a_folder_with_a_damaged_manifest_is_still_written(saved_manifest, tmp_path, capsys):
    rows = [{"id": "demo-0", "number": 0, "params": {"x": 1}, "state": "Succeeded", "value": 10**400},
            {"id": "demo-1", "number": 1, "params": {"x": 10**400}, "state": "Succeeded", "value": 0.5}]
    folder = fuzzed_folder(tmp_path, [json.dumps(row) for row in rows], saved_manifest, "{}", "{}")
    assert main(["report", str(folder)]) == 0, capsys.readouterr().err
    assert (folder / "report.html").stat().st_size > 0


def test_status_and_export_of_a_run_folder_need_only_the_base_install(run_folder):
    from test_extras import OPERATOR_MODULES, run_without

    report = run_without(OPERATOR_MODULES, f"""
        import contextlib, io
        from kubetune.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            result = [main(["status", {str(run_folder)!r}]), main(["export", {str(run_folder)!r}])]
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):
            result.append(main(["status", "--experiment", "demo"]))
        result.append(errors.getvalue().strip())
    """)
    assert report["result"][:3] == [0, 0, 2]
    assert report["result"][3] == ("error: reading an experiment on a cluster needs the kubernetes client: "
                                   "pip install 'kubetune[operator]'")
    assert not set(report["loaded"]) & set(OPERATOR_MODULES)


def test_watch_redraws_until_ctrl_c_and_exits_0(run_folder, monkeypatch, capsys):
    import time

    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        if len(sleeps) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", sleep)
    assert main(["status", str(run_folder), "--watch"]) == 0
    assert sleeps == [2.0, 2.0, 2.0]
    assert "Best: " in capsys.readouterr().out
