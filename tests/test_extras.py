"""The base install and the ``operator`` extra: the trial SDK, the optimizer and ``kubetune run``/``validate``
work without kopf, kubernetes, prometheus-client and aiohttp, and ``kubetune operator`` says which extra it
needs. Each check runs in a fresh interpreter whose imports of the extra's packages fail, as in a base install."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from kubetune.operator import OPERATOR_EXTRA, require_operator_extra

ROOT = Path(__file__).parent.parent
SRC = ROOT / "src"
OPERATOR_MODULES = sorted(OPERATOR_EXTRA)
NUMERICS = ["numpy", "scipy", "sklearn"]

# Makes every import of the blocked top-level modules fail, as if they were not installed, and records it.
BLOCKER = """
import importlib.abc, json, sys
BLOCKED = set({blocked!r})
attempted = []

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            attempted.append(name)
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
for name in [m for m in sys.modules if m.partition(".")[0] in BLOCKED]:
    del sys.modules[name]
"""


def run_without(blocked: list[str], code: str) -> dict:
    """Runs ``code`` (which may set ``result``) with ``blocked`` uninstallable; returns what it reports."""
    script = BLOCKER.format(blocked=blocked) + textwrap.dedent(code) + """
print(json.dumps({"attempted": attempted, "result": globals().get("result"),
                  "loaded": sorted({m.partition(".")[0] for m in sys.modules})}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_trial_reporting_metrics_loads_no_numerics_and_no_cluster_client():
    report = run_without(OPERATOR_MODULES + NUMERICS, """
        import kubetune
        kubetune.report(step=1, accuracy=0.5)
    """)
    assert report["attempted"] == []
    assert not set(report["loaded"]) & {*OPERATOR_MODULES, *NUMERICS, "pydantic", "yaml", "rich"}


def test_the_optimizer_and_the_local_cli_need_only_the_base_install():
    report = run_without(OPERATOR_MODULES + ["sklearn"], f"""
        import kubetune
        optimizer = kubetune.Optimizer([{{"name": "x", "type": "double", "min": 0, "max": 1}}], algorithm="gp",
                                       seed=0)
        for _ in range(4):
            (suggestion,) = optimizer.ask()
            optimizer.tell(suggestion.id, (suggestion.params["x"] - 0.3) ** 2)
        from kubetune.cli import main
        result = main(["validate", {str(ROOT / "examples" / "quickstart.yaml")!r}])
    """)
    assert report["result"] == 0
    assert report["attempted"] == []
    assert "numpy" in report["loaded"]  # the check ran the engine


def test_without_the_operator_extra_the_operator_names_the_extra_to_install():
    report = run_without(["kopf"], """
        from kubetune.operator import MissingOperatorExtra, require_operator_extra
        try:
            require_operator_extra()
        except MissingOperatorExtra as exc:
            result = [str(exc), exc.missing]
    """)
    assert report["result"] == ["kubetune operator needs the operator extra: pip install 'kubetune[operator]'",
                                ["kopf"]]


def test_with_the_operator_extra_the_operator_may_start():
    require_operator_extra()  # the test environment installs it



def test_kubetune_operator_without_the_extra_prints_one_line_and_exits_2():
    report = run_without(["kopf", "kubernetes"], """
        import contextlib, io
        from kubetune.cli import main
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors):
            try:
                status = main(["operator", "--namespace", "default"])
            except SystemExit as exit:
                status = exit.code
        result = [status, errors.getvalue()]
    """)
    status, printed = report["result"]
    assert status == 2
    assert printed.strip().splitlines() == [
        "error: kubetune operator needs the operator extra: pip install 'kubetune[operator]'"]


def test_kubetune_run_loads_ray_only_for_the_ray_backend(tmp_path):
    quickstart = str(ROOT / "examples" / "quickstart.yaml")
    report = run_without(OPERATOR_MODULES + ["ray"], f"""
        from kubetune.cli import main
        result = [main(["run", {quickstart!r}, "--out", {str(tmp_path / "local")!r}, "--max-trials", "1", "--quiet"]),
                  main(["run", {quickstart!r}, "--out", {str(tmp_path / "ray")!r}, "--backend", "ray"])]
    """)
    assert report["result"] == [0, 2], "without Ray: the process backend runs, --backend ray is bad input"
    assert report["attempted"] == ["ray"]


def test_tpe_without_the_optuna_extra_is_one_line_and_exit_2_and_the_cli_never_loads_optuna(tmp_path):
    import yaml

    experiment = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    experiment["spec"]["algorithm"] = {"name": "tpe"}
    manifest = tmp_path / "tpe.yaml"
    manifest.write_text(yaml.safe_dump(experiment))
    report = run_without(["optuna", "cmaes"], f"""
        import contextlib, io
        from kubetune.cli import main
        errors = io.StringIO()
        with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
            codes = [main(["validate", {str(ROOT / "examples" / "quickstart.yaml")!r}]),
                     main(["validate", {str(manifest)!r}])]
            try:
                main(["--help"])
            except SystemExit:
                pass
        result = [codes, errors.getvalue()]
    """)
    codes, printed = report["result"]
    assert codes == [0, 2]
    assert printed.strip().splitlines() == [
        f"error: {manifest}: invalid experiment: spec.algorithm.name: algorithm tpe needs optuna, which is not "
        "installed: pip install 'kubetune[optuna]'"]
    assert "optuna" not in report["loaded"]
