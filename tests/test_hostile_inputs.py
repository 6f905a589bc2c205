"""Inputs that have ended commands in a traceback, as classes, for every command: endless input (a device that
never ends), rich markup in anything printed, NUL characters, lone surrogates, names too long for a file
system, nesting beyond any recursion limit, spaces too wide for an algorithm. Whatever comes in, a command
answers with its exit status (0, 1 or 2) and, on 2, one ``error:`` line; never a traceback."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FUZZ, HOSTILE_TEXT, manifest
from kubetune.cli import kubectl_main, main

LONG = "n" * 300  # longer than a file name may be (255 bytes)


def command(argv: list[str], plugin: bool = False) -> tuple[int, str, str]:
    """A command in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = (kubectl_main if plugin else main)(argv)
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def answered(code: int, out: str, err: str) -> None:
    assert code in (0, 1, 2), (code, out, err)
    assert "Traceback" not in out + err, out + err
    if code == 2:  # one line, or argparse's usage and its line
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 or "error:" in err, err


def quick(tmp_path: Path, **spec) -> dict:
    """A manifest of one quick trial."""
    document = manifest(maxTrials=1, parallelism=1, **spec)
    document["spec"]["trialTemplate"]["spec"]["containers"][0].update(
        command=[sys.executable, "-c", "import json, os; print(json.dumps({'loss': 1.0}))"], args=[])
    return document


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    file = tmp_path / "experiment.yaml"
    file.write_text(yaml.safe_dump(quick(tmp_path)))
    out = tmp_path / "run"
    assert main(["run", str(file), "--out", str(out), "--quiet"]) == 0
    return out


# -- endless input ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["validate", "/dev/zero"],
    ["run", "/dev/zero"],
    ["status", "/dev/zero"],
    ["export", "/dev/zero"],
    ["report", "/dev/zero"],
])
def test_a_device_that_never_ends_is_refused(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = command(argv)
    assert code == 2 and err.startswith("error: "), (out, err)
    answered(code, out, err)


def test_a_runtime_env_that_never_ends_is_refused(tmp_path):
    file = tmp_path / "experiment.yaml"
    file.write_text(yaml.safe_dump(quick(tmp_path)))
    code, out, err = command(["run", str(file), "--out", str(tmp_path / "out"), "--backend", "ray",
                              "--runtime-env", "/dev/zero"])
    assert code == 2 and "--runtime-env /dev/zero: larger than" in err, err


@pytest.mark.parametrize("name", ["trials.jsonl", "summary.json", "experiment.yaml"])
@pytest.mark.parametrize("verb", ["status", "export", "report"])
def test_a_run_folder_file_that_is_a_device_or_a_folder_is_not_read(name, verb, run_folder, tmp_path):
    for kind in ("/dev/zero", "folder"):
        (run_folder / name).unlink(missing_ok=True)
        if (run_folder / name).is_dir():
            (run_folder / name).rmdir()
        if kind == "folder":
            (run_folder / name).mkdir()
        else:
            (run_folder / name).symlink_to(kind)
        code, out, err = command([verb, str(run_folder), *(["-o", str(tmp_path / "r.html")] if verb == "report"
                                                             else [])])
        answered(code, out, err)
        if name == "experiment.yaml":
            assert code == 2 and "not a regular file" in err, err


def test_resuming_from_a_run_folder_whose_rows_never_end_is_refused(run_folder, tmp_path):
    (run_folder / "trials.jsonl").unlink()
    (run_folder / "trials.jsonl").symlink_to("/dev/zero")
    file = tmp_path / "experiment.yaml"
    code, out, err = command(["run", str(file), "--out", str(run_folder), "--resume", "--quiet"])
    assert code == 2 and "not a regular file" in err, err


# -- markup, NUL, surrogates, long names -------------------------------------------------------------------------
def test_markup_in_names_values_paths_and_messages_prints_as_written(tmp_path):
    document = quick(tmp_path, parameters=[{"name": "x", "type": "categorical", "values": ["[/]", "[bold]b"]}])
    document["spec"]["trialTemplate"]["spec"]["containers"][0]["command"] = [
        sys.executable, "-c", "import sys; print('[/] [red]boom', file=sys.stderr); sys.exit(3)"]
    folder = tmp_path / "[red]"
    folder.mkdir()
    file = folder / "[bold]experiment.yaml"
    file.write_text(yaml.safe_dump(document))
    out_dir = tmp_path / "[red]out[/]"
    code, out, err = command(["run", str(file), "--out", str(out_dir)])
    answered(code, out, err)
    assert code == 1 and "[/] [red]boom" in out and f"Results: {out_dir}" in out
    code, out, err = command(["validate", str(file)])
    assert code == 0 and "[bold]b" in out and str(file) in out, out + err
    for argv in (["status", str(out_dir)], ["export", str(out_dir)],
                 ["report", str(out_dir), "-o", str(tmp_path / "[b]report.html")]):
        code, out, err = command(argv)
        assert code == 0, (argv, out, err)
        answered(code, out, err)


@pytest.mark.parametrize("where", ["command", "args", "env", "params", "metadata"])
@pytest.mark.parametrize("text", ["a\x00b", "\ud800", "x\udfff"])
def test_nul_and_lone_surrogates_are_refused_where_they_are(where, text, tmp_path):
    document = quick(tmp_path)
    container = document["spec"]["trialTemplate"]["spec"]["containers"][0]
    if where == "command":
        container["command"][1] = text
    elif where == "args":
        container["args"] = [text]
    elif where == "env":
        container["env"] = [{"name": "A", "value": text}]
    elif where == "params":
        document["spec"]["parameters"] = [{"name": "c", "type": "categorical", "values": ["ok", text]}]
    else:
        document["metadata"]["labels"] = {text: "x"}
    file = tmp_path / "experiment.yaml"
    file.write_text(yaml.safe_dump(document))  # PyYAML writes both as escapes ("\0", "\ud800")
    for verb in ("validate", "run"):
        code, out, err = command([verb, str(file), *(["--out", str(tmp_path / "out")] if verb == "run" else [])])
        assert code == 2, (out, err)
        assert ("NUL character" if "\x00" in text else "lone surrogate") in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [
    ["validate", "a\x00b.yaml"],
    ["run", "a\x00b.yaml"],
    ["status", "a\x00b"],
    ["export", "a\x00b"],
    ["report", "a\x00b"],
    ["validate", LONG + ".yaml"],
    ["status", LONG],
    ["crds", "--out", f"{LONG}/{LONG}"],
])
def test_paths_no_file_system_takes_are_one_line(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = command(argv)
    assert code == 2, (out, err)
    answered(code, out, err)


@pytest.mark.parametrize("option", ["-o", "--out"])
def test_outputs_no_file_system_takes_are_one_line(option, run_folder, tmp_path):
    file = tmp_path / "experiment.yaml"
    file.write_text(yaml.safe_dump(quick(tmp_path)))
    cases = [["run", str(file), "--out", str(tmp_path / LONG)], ["run", str(file), "--out", "a\x00b"],
             ["export", str(run_folder), option if option == "-o" else "-o", str(tmp_path / LONG)],
             ["report", str(run_folder), "-o", str(tmp_path / f"{LONG}.html")],
             ["report", str(run_folder), "-o", "a\x00b"]]
    for argv in cases:
        code, out, err = command(argv)
        assert code == 2, (argv, out, err)
        answered(code, out, err)


def test_a_metrics_file_no_file_system_takes_fails_the_trial_not_the_run(tmp_path):
    document = quick(tmp_path)
    document["spec"]["trialTemplate"]["metricsCollector"] = {"kind": "file", "path": f"{LONG}/${{trial.id}}.jsonl"}
    file = tmp_path / "experiment.yaml"
    file.write_text(yaml.safe_dump(document))
    code, out, err = command(["run", str(file), "--out", str(tmp_path / "out")])
    assert code == 1, (out, err)
    answered(code, out, err)
    (row,) = [json.loads(line) for line in (tmp_path / "out" / "trials.jsonl").read_text().splitlines()]
    assert row["reason"] == "StartError" and "File name too long" in row["message"]


# -- sizes and nesting -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["gp", "sobol"])
def test_a_space_wider_than_sobol_is_refused_for_the_algorithms_that_use_it(algorithm, tmp_path):
    values = [f"v{i}" for i in range(21_300)]
    document = quick(tmp_path, parameters=[{"name": "c", "type": "categorical", "values": values}],
                     algorithm={"name": algorithm})
    file = tmp_path / "experiment.yaml"
    file.write_text(yaml.safe_dump(document))
    code, out, err = command(["validate", str(file)])
    assert code == 2 and "21300 columns wide" in err and f"{algorithm} searches at most 21201" in err, err
    document["spec"]["algorithm"] = {"name": "random"}
    file.write_text(yaml.safe_dump(document))
    assert command(["validate", str(file)])[0] == 0


def test_nesting_beyond_any_recursion_limit_is_refused(tmp_path):
    file = tmp_path / "experiment.yaml"
    file.write_text("apiVersion: kubetune.io/v1alpha1\nkind: Experiment\nspec: " + "[" * 50_000 + "]" * 50_000)
    code, out, err = command(["validate", str(file)])
    assert code == 2 and "nested too deeply" in err, err


# -- any command line --------------------------------------------------------------------------------------------
VERBS = [["validate"], ["status"], ["export"], ["export", "--format", "jsonl"], ["report"], ["crds"], ["run"]]


@settings(FUZZ, max_examples=max(10, FUZZ.max_examples // 3),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(verb=st.sampled_from(VERBS), target=st.sampled_from(["manifest", "folder", "hostile"]),
       options=st.lists(st.tuples(st.sampled_from(["-o", "--out", "-n", "--experiment", "--kubeconfig",
                                                   "--context", "--max-trials", "--seed", "--format"]),
                                  HOSTILE_TEXT), max_size=2),
       stray=st.lists(HOSTILE_TEXT, max_size=1), plugin=st.booleans())
def test_every_command_answers_any_hostile_command_line(verb, target, options, stray, plugin, run_folder, tmp_path):
    file = tmp_path / "experiment.yaml"
    file.write_text(yaml.safe_dump(quick(tmp_path)))
    where = {"manifest": str(file), "folder": str(run_folder), "hostile": "[/]\x00\ud800"}[target]
    argv = [*verb, where, *(token for pair in options for token in pair), *stray]
    if plugin:
        argv = [a for a in argv if a not in ("run", "validate", "crds")] or ["status"]
    code, out, err = command(argv, plugin=plugin)
    answered(code, out, err)
