"""Bad input to the ``kubetune`` command: one clear message naming what is wrong, exit status 2, no
traceback and nothing run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import kubetune
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


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _gone_cluster(tmp_path: Path, namespace: str | None = None) -> tuple[Path, str]:
    """A kubeconfig whose two contexts name a server nobody listens on; the second names ``namespace``."""
    server = f"https://127.0.0.1:{_closed_port()}"
    kubeconfig = tmp_path / "kubeconfig"
    second = {"cluster": "gone", "user": "me", **({"namespace": namespace} if namespace else {})}
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "me", "user": {"token": "x"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "me"}},
                     {"name": "second", "context": second}],
    }))
    return kubeconfig, server


def _operator(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "KUBECONFIG", "POD_"))}
    return subprocess.run([sys.executable, "-m", "kubetune.cli", "operator", "-A", "--metrics-port", "0",
                           "--liveness", f"http://127.0.0.1:{_closed_port()}/healthz", *args],
                          capture_output=True, text=True, timeout=120, env={**clean, **(env or {})})


def test_the_operator_without_a_reachable_cluster_says_so_in_one_line(tmp_path):
    kubeconfig, server = _gone_cluster(tmp_path)
    result = _operator("--reports-port", "0", env={"KUBECONFIG": str(kubeconfig)})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: cannot reach the Kubernetes API server at {server}: Connection refused (is the cluster running, "
        "and KUBECONFIG the right one?)"]
    # the same kubeconfig named on the command line, and one of its contexts
    result = _operator("--reports-port", "0", "--kubeconfig", str(kubeconfig), "--context", "second")
    assert result.returncode == 2 and f"cannot reach the Kubernetes API server at {server}" in result.stderr


def test_the_operator_keeps_its_report_key_where_it_is_told_never_in_default_unasked(tmp_path):
    kubeconfig, _ = _gone_cluster(tmp_path, namespace="team")
    result = _operator("--kubeconfig", str(kubeconfig))  # the current context names no namespace
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: --report-key-namespace is needed: the namespace where the Secret kubetune-report-key holding the "
        f"report key lives (or pass --reports-port 0); kubeconfig {kubeconfig}, context gone names no namespace"]
    result = _operator("--kubeconfig", str(kubeconfig), "--leader-election", "--reports-port", "0")
    assert result.returncode == 2 and "--lease-namespace is needed" in result.stderr
    # a context that names a namespace gives it; the server is the next thing to fail
    result = _operator("--kubeconfig", str(kubeconfig), "--context", "second")
    assert result.returncode == 2 and "cannot reach the Kubernetes API server" in result.stderr
    result = _operator("--kubeconfig", str(kubeconfig), "--context", "nope")
    assert result.returncode == 2 and "nope" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_the_operator_help_names_every_port_and_where_it_listens(capsys):
    with pytest.raises(SystemExit):
        main(["operator", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for text in ("8080/healthz", "default 9090", "default 8090", "--kubeconfig", "--context", "--listen-address",
                 "127.0.0.1 outside a cluster"):
        assert text in out, text


def test_a_429_that_kopf_retries_is_a_warning_and_one_it_gives_up_on_an_error():
    import logging

    from kubetune.operator.startup import throttling_is_a_warning

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord("kopf._cogs.clients.api", logging.ERROR, __file__, 1, message, None, None)

    retried = record("Request attempt #1/9 failed; will retry: GET /x -> APITooManyRequestsError('storage is "
                     "(re)initializing')")
    escalated = record("Request attempt #9/9 failed; escalating: GET /x -> APITooManyRequestsError('busy')")
    other = record("Request attempt #1/9 failed; will retry: GET /x -> APIServerError('boom')")
    assert all(throttling_is_a_warning(r) for r in (retried, escalated, other))
    assert [r.levelname for r in (retried, escalated, other)] == ["WARNING", "ERROR", "ERROR"]


def test_help_and_version_are_plain_and_load_no_heavy_module():
    code = ("import sys; from kubetune.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = ('numpy', 'scipy', 'pydantic', 'kopf', 'kubernetes', 'rich')\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip().endswith("[]"), result.stdout
    assert "`" not in result.stdout and "exit status: 0 finished" in " ".join(result.stdout.split())
    version = subprocess.run([sys.executable, "-m", "kubetune.cli", "--version"], capture_output=True, text=True)
    assert version.stdout.strip() == f"kubetune {kubetune.__version__}"


def test_validate_says_units_and_counts_and_quotes_commands(write_manifest, capsys):
    document = manifest(args=["--x=${params.x}", "--note=two words", "line one\nline two"],
                        template={"timeoutSeconds": 60, "retries": 1})
    assert main(["validate", str(write_manifest(document))]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "1 retry each, timeout 60 s" in out
    assert "'--note=two words' 'line one line two'" in out
    document["spec"]["trialTemplate"].update(timeoutSeconds=None, retries=2)
    assert main(["validate", str(write_manifest(document))]) == 0
    assert "2 retries each, no timeout" in capsys.readouterr().out


def test_a_default_results_folder_below_a_file_is_refused(write_manifest, tmp_path, monkeypatch, capsys):
    file = write_manifest(manifest())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "kubetune-runs").write_text("")
    err = _refused(["run", str(file)], capsys)
    assert "the results folder kubetune-runs/demo (choose another with --out): is below kubetune-runs" in err


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--liveness", "http://[::1", "expected http://HOST:PORT/PATH"),
    ("--metrics-port", "99999", "expected a port from 0 to 65535"),
    ("--metrics-port", "nine", "expected a port from 0 to 65535"),
    ("--reports-port", "70000", "expected a port from 0 to 65535"),
    ("--reports-url", "kubetune-reports:8090", "expected http://HOST:PORT/PATH"),
])
def test_operator_options_are_checked_before_anything_starts(option, value, message, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["operator", "-A", option, value])
    assert caught.value.code == 2 and message in capsys.readouterr().err
