"""Fuzzing what a user can hand kubetune: random mutations of a valid manifest (wrong types, missing and
unknown fields, huge numbers, odd unicode, bytes), random bytes, and random command lines. Whatever comes
in, the manifest loader either accepts it or raises :class:`ManifestError` naming the field, and the
command answers with exit status 0 or 2 and a message, never a traceback."""

from __future__ import annotations

import contextlib
import copy
import io
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from conftest import FUZZ, HOSTILE_TEXT, manifest
from kubetune.cli import main
from kubetune.core.errors import ManifestError
from kubetune.core.manifest import load_experiment, load_experiment_text

VALID = manifest(
    parameters=[
        {"name": "x", "type": "double", "min": -5, "max": 10},
        {"name": "lr", "type": "double", "min": 1e-4, "max": 1, "scale": "log"},
        {"name": "n", "type": "int", "min": 1, "max": 10**12, "steps": 3},
        {"name": "batch", "type": "discrete", "values": [16, 32, 64]},
        {"name": "kernel", "type": "categorical", "values": ["rbf", "linear", True, 3]},
    ],
    args=["--x=${params.x}", "--lr=${params.lr}", "--id=${trial.id}", "--e=${experiment.name}"],
    objective={"metric": "loss", "direction": "minimize", "target": 0.1, "strategy": "min"},
    template={"timeoutSeconds": 60, "retries": 1, "resources": {"cpu": "500m", "memory": "1Gi", "gpu": 0},
              "metricsCollector": {"kind": "file", "path": "out/${trial.id}.jsonl"}},
)
# Problems about the document as a whole, which no field path can name.
DOCUMENT_PROBLEMS = ("not valid YAML", "the manifest must be a mapping", "expected one Experiment document",
                     "not UTF-8", "unknown field")

odd_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
junk = st.one_of(
    st.none(), st.booleans(), odd_text, HOSTILE_TEXT, st.binary(max_size=8),
    st.integers(-(2**70), 2**70), st.sampled_from([10**30, -(10**30), 2**63, 2**63 - 1, -1, 0, 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["1e20", "-1", "", " ", "\u221e", "NaN", "${params.x}", "${param.x}", "$(params.x)", "${",
                     "${params.", "\u202eevil", "\x00", "\ufeff", "1Gi", "log", "double", "int", "gp", "grid"]),
    st.lists(st.integers(-3, 3) | odd_text, max_size=3),
    st.dictionaries(odd_text, st.integers(), max_size=2),
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _mutate(document: dict, data: st.DataObject) -> Any:
    """One to three random edits of a deep copy: a value replaced with junk, a field removed, an unknown
    field added, a list item repeated."""
    root: Any = {"doc": copy.deepcopy(document)}
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        path = data.draw(st.sampled_from(_paths(root["doc"])), label="path")
        parent: Any = root
        for part in ("doc", *path)[:-1]:
            parent = parent[part]
        key = ("doc", *path)[-1]
        edit = data.draw(st.sampled_from(["replace", "delete", "add", "repeat"]), label="edit")
        target = parent[key]
        if edit == "replace" or key == "doc":
            parent[key] = data.draw(junk, label="value")
        elif edit == "delete":
            del parent[key]
        elif edit == "add" and isinstance(target, dict):
            target[data.draw(odd_text, label="field")] = data.draw(junk, label="value")
        elif edit == "repeat" and isinstance(target, list) and target:
            target.append(copy.deepcopy(target[0]))
    return root.get("doc")


def _check_refusal(error: ManifestError, document: Any) -> None:
    assert error.problems
    for problem in error.problems:
        assert isinstance(problem.message, str) and problem.message.strip()
        if not problem.path:  # the document's own fields are named in the message
            assert not isinstance(document, dict) or problem.message.startswith(DOCUMENT_PROBLEMS), problem
    assert error.describe()


def _validate_command(path: Path, *options: str) -> tuple[int, str, str]:
    """``kubetune validate`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["validate", str(path), *options])
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


@FUZZ
@given(st.data())
def test_a_mutated_manifest_is_accepted_or_refused_naming_the_field(data):
    document = _mutate(VALID, data)
    try:
        experiment = load_experiment(document)
    except ManifestError as error:
        _check_refusal(error, document)
    else:
        assert experiment.spec.parameters


@FUZZ
@given(st.data())
def test_the_validate_command_answers_every_mutated_manifest_with_0_or_2(data):
    document = _mutate(VALID, data)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "experiment.yaml"
        try:
            path.write_text(yaml.safe_dump(document, allow_unicode=data.draw(st.booleans())))
        except (yaml.YAMLError, UnicodeEncodeError):
            return  # not a document YAML can write
        code, out, err = _validate_command(path)
    assert code in (0, 2), (code, out, err)
    assert "Traceback" not in out + err
    if code == 2:
        assert err.startswith("error: ") and "invalid experiment" in err
    else:
        assert out.startswith("valid: ")


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_random_bytes_are_refused_as_a_whole_document(raw):
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return  # the file route below covers bytes that are not UTF-8
    with pytest.raises(ManifestError) as caught:
        load_experiment_text(text)
    _check_refusal(caught.value, None)


@FUZZ
@given(st.data())
def test_bytes_flipped_in_a_manifest_file_are_accepted_or_refused(data):
    raw = bytearray(yaml.safe_dump(VALID).encode())
    for _ in range(data.draw(st.integers(1, 4), label="flips")):
        at = data.draw(st.integers(0, len(raw) - 1), label="at")
        raw[at] = data.draw(st.integers(0, 255), label="byte")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "experiment.yaml"
        path.write_bytes(bytes(raw))
        code, out, err = _validate_command(path)
    assert code in (0, 2) and "Traceback" not in out + err, (code, out, err)
    assert code == 0 or err.startswith("error: ")


NASTY = [None, True, "", " ", "\u221e", b"\xff", math.inf, -math.inf, math.nan, 1e308, -1e308, 5e-324, 2**63,
         -(2**63), 10**400, -1, 0, [], {}, [None], {"": None}, "${param.x}", "1e400"]


def _replaced(document: dict, path: tuple, value: Any) -> Any:
    if not path:
        return value
    changed = copy.deepcopy(document)
    parent = changed
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return changed


def test_every_field_takes_every_nasty_value_without_a_crash(tmp_path):
    """Systematic where the fuzzing above is random: each field of the manifest, each awkward value; the
    first value a field accepts must also get through ``kubetune validate``."""
    crashes = []
    for path in _paths(VALID):
        through_validate = False
        for value in NASTY:
            document = _replaced(VALID, path, value)
            try:
                load_experiment(document)
            except ManifestError as error:
                _check_refusal(error, document)
                continue
            except Exception as exc:  # noqa: BLE001 - what this test is looking for
                crashes.append((path, value, repr(exc)))
                continue
            if through_validate:
                continue
            through_validate = True
            file = tmp_path / "accepted.yaml"
            file.write_text(yaml.safe_dump(document))
            code, out, err = _validate_command(file)
            if code != 0 or "Traceback" in out + err:
                crashes.append((path, value, code, err))
    assert crashes == []


OPTIONS = ["--parallelism", "--max-trials", "--seed", "--bogus", "-n"]
tokens = st.one_of(
    st.sampled_from(["0", "-1", "1", "3", "1e3", "10" * 30, "", " ", "--", "-", "\u0663", "0x10", "1_000"]),
    st.integers(-(2**70), 2**70).map(str), odd_text,
)


@FUZZ
@given(st.lists(st.sampled_from(OPTIONS) | tokens, max_size=5))
def test_random_command_lines_exit_0_or_2(argv):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "experiment.yaml"
        path.write_text(yaml.safe_dump(VALID))
        code, out, err = _validate_command(path, *argv)
    assert code in (0, 2) and "Traceback" not in out + err, (argv, code, out, err)
    if code == 2:
        assert "error" in err


def test_the_fuzzed_manifest_is_valid_to_begin_with(tmp_path):
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(VALID))
    code, out, _ = _validate_command(path)
    assert code == 0 and out.startswith("valid: ")


@pytest.mark.parametrize("raw", [b"\xff\xfe\x00garbage",
                                 yaml.safe_dump({**VALID, "spec": {**VALID["spec"], "seed": 10**30}}).encode()])
def test_bad_manifests_exit_2_without_a_traceback_in_a_real_process(raw, tmp_path):
    path = tmp_path / "experiment.yaml"
    path.write_bytes(raw)
    result = subprocess.run([sys.executable, "-m", "kubetune.cli", "validate", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


COMMANDS = ["run", "validate", "operator", "crds"]
OPERATOR_OPTIONS = ["--namespace", "-n", "-A", "--all-namespaces", "--gpu-sharing", "--kai-queue", "--hami-cores",
                    "--timeslicing-resource", "--mig-profile", "--leader-election", "--lease-name",
                    "--lease-namespace", "--lease-duration", "--identity", "--liveness", "--metrics-port",
                    "--reports-port", "--reports-url", "--report-key-namespace",
                    "--log-level", "--out", "--resume", "--no-gpu", "--quiet", *OPTIONS]
operator_tokens = tokens | st.sampled_from([
    "http://[::1", "http://0.0.0.0:8080/healthz", "http://h:0/", "http://h:99999/", "https://h:1/", "0.5=",
    "=x", "2=nvidia.com/gpu", "0.25=nvidia.com/mig-2g.20gb", "nan=x", "inf=x", "99999", "65535", "mig", "debug",
])


options_with_values = st.lists(st.tuples(st.sampled_from(OPERATOR_OPTIONS), operator_tokens), max_size=4).map(
    lambda pairs: [token for pair in pairs for token in pair])


@FUZZ
@given(st.sampled_from(COMMANDS), options_with_values, st.lists(operator_tokens, max_size=2))
def test_the_argument_parser_accepts_or_exits_2_for_any_command_line(command, options, stray):
    from kubetune.cli import _parser

    argv = [*options, *stray]

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            _parser().parse_args([command, *argv])
        except SystemExit as exit_:
            assert exit_.code == 2 and "error:" in err.getvalue(), (argv, exit_.code, err.getvalue())
