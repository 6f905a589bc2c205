"""The operator image's Dockerfile and build context. No Docker engine is available to build it in the tests,
so this checks what the image is made of: stages, base, user, entrypoint, and that the build context holds
everything the package build reads (and nothing else)."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

from kubetune.cli import _parser

ROOT = Path(__file__).parent.parent
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cmake|python3-dev)\b")


def stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), split by FROM."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    found: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            found.append([])
        found[-1].append(line)
    return found


def instruction(stage: list[str], keyword: str) -> list[str]:
    return [line[len(keyword) + 1:].strip() for line in stage if line.upper().startswith(keyword + " ")]


def test_multi_stage_on_a_slim_python_without_compilers_in_the_final_stage():
    build, final = stages()[0], stages()[-1]
    assert len(stages()) >= 2
    assert re.fullmatch(r"python:3\.1[1-9]-slim( AS \w+)?", instruction(final, "FROM")[0])
    assert "--from=build" in " ".join(instruction(final, "COPY"))
    assert not any(COMPILERS.search(line) for line in instruction(final, "RUN"))
    assert any("pip install" in line for line in instruction(build, "RUN"))
    assert not any("pip install" in line for line in instruction(final, "RUN"))


def test_the_image_installs_the_operator_extra_and_the_algorithms_of_the_optuna_extra():
    build = stages()[0]
    (install,) = [line for line in instruction(build, "RUN") if "pip install" in line]
    assert '".[operator,optuna]"' in install.split()
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(requirement.startswith("kopf") for requirement in extras["operator"])
    assert any(requirement.startswith("optuna") for requirement in extras["optuna"])


def test_runs_as_a_non_root_user_matching_the_chart():
    final = stages()[-1]
    (user,) = instruction(final, "USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert f"--uid {uid}" in " ".join(instruction(final, "RUN"))
    deployment = (ROOT / "charts/kubetune/templates/deployment.yaml").read_text()
    assert f"runAsUser: {uid}" in deployment


def test_the_entrypoint_is_the_operator():
    final = stages()[-1]
    (entrypoint,) = instruction(final, "ENTRYPOINT")
    assert entrypoint == '["kubetune", "operator"]'
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["kubetune"] == "kubetune.cli:main"
    (command,) = instruction(final, "CMD")
    _parser().parse_args(["operator", *json.loads(command)])  # the default arguments are accepted


def in_context(path: str) -> bool:
    """Whether .dockerignore lets ``path`` into the build context (its last matching rule wins)."""
    included = True
    for rule in (ROOT / ".dockerignore").read_text().splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        negated = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(parts[-1], pattern.removeprefix("**/"))
               for prefix in prefixes):
            included = negated
    return included


def test_the_build_context_holds_what_the_build_copies_and_leaves_the_rest_out():
    copied = [source for stage in stages() for line in instruction(stage, "COPY") if "--from" not in line
              for source in line.split()[:-1]]
    assert set(copied) == {"pyproject.toml", "README.md", "src"}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["readme"] in copied
    for path in ["pyproject.toml", "README.md", "src/kubetune/cli.py", "src/kubetune/core/spec.py"]:
        assert in_context(path), path
    for path in [".venv/bin/python", ".git/HEAD", ".tools/helm", "tests/test_image.py", "kubetune-runs/x/trials.jsonl",
                 "src/kubetune/__pycache__/cli.cpython-311.pyc", "benchmarks/results/quality.json"]:
        assert not in_context(path), path
