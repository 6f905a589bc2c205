"""Bad input to the ``kubetune`` command: one clear message naming what is wrong, exit status 2, no
traceback and nothing run."""

from __future__ import annotations

import pytest
import yaml

from conftest import manifest
from kubetune.cli import main


def _parameter(**fields):
    return manifest(parameters=[fields], args=[])


def _refused(argv, capsys) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return captured.err


@pytest.mark.parametrize("command", ["run", "validate"])
def test_a_manifest_that_is_not_utf8_is_refused(command, tmp_path, capsys):
    file = tmp_path / "latin1.yaml"
    file.write_bytes(yaml.safe_dump(manifest()).encode() + "# caf\u00e9\n".encode("latin-1"))
    err = _refused([command, str(file)], capsys)
    assert "not UTF-8" in err and "0xe9" in err


def test_out_pointing_at_a_file_is_refused(write_manifest, tmp_path, capsys):
    file = write_manifest(manifest())
    taken = tmp_path / "results.txt"
    taken.write_text("keep me")
    err = _refused(["run", str(file), "--out", str(taken)], capsys)
    assert "--out" in err and "is a file, not a folder" in err
    assert taken.read_text() == "keep me"


def test_out_below_a_file_is_refused(write_manifest, tmp_path, capsys):
    file = write_manifest(manifest())
    (tmp_path / "results.txt").write_text("")
    err = _refused(["run", str(file), "--out", str(tmp_path / "results.txt" / "run")], capsys)
    assert "which is a file" in err


@pytest.mark.parametrize("command", ["run", "validate"])
@pytest.mark.parametrize("bound", [1e20, -1e20, 2**63])
def test_an_int_bound_beyond_64_bits_is_refused(command, bound, write_manifest, tmp_path, capsys):
    low, high = (bound, bound + 1) if bound < 0 else (0, bound)
    file = write_manifest(_parameter(name="n", type="int", min=low, max=high))
    err = _refused([command, str(file)] + (["--out", str(tmp_path / "out")] if command == "run" else []), capsys)
    assert "spec.parameters[0]" in err and "64-bit" in err
    assert not (tmp_path / "out").exists()


def test_a_double_range_wider_than_a_float_is_refused(write_manifest, capsys):
    file = write_manifest(_parameter(name="x", type="double", min=-1e308, max=1e308))
    assert "too wide" in _refused(["validate", str(file)], capsys)


@pytest.mark.parametrize(("option", "value", "field"), [
    ("--seed", "-1", "spec.seed"),
    ("--seed", "99999999999999999999999999", "spec.seed"),
])
def test_overrides_are_validated_like_the_fields_they_replace(option, value, field, write_manifest, tmp_path,
                                                               capsys):
    file = write_manifest(manifest())
    err = _refused(["run", str(file), option, value, "--out", str(tmp_path / "out")], capsys)
    assert f"{option} (overrides {field})" in err
    assert not (tmp_path / "out").exists()
