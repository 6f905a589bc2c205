"""Shared fixtures: a manifest builder, the test trial script, (from :mod:`operator_cluster`) the real
control plane and a namespace on it per test, and (from :mod:`ray_cluster`) a real two-node Ray cluster."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

TRIALS = Path(__file__).parent / "trials"

# Fuzzing of bad input: a few seconds by default; KUBETUNE_FUZZ_EXAMPLES=5000 for a longer hunt.
FUZZ = settings(max_examples=int(os.environ.get("KUBETUNE_FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
# Any value a JSON document can hold, with integers no float holds among them.
JSON_LEAVES = (st.none() | st.booleans() | st.text(max_size=6) | st.floats() | st.integers(-(2**70), 2**70)
               | st.sampled_from([10**400, -(10**400), 2**1024]))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
# Text that has broken commands before, for the fuzzing of every command: rich markup, NUL, lone surrogates
# (which a JSON or YAML escape can spell), names too long for a file system, bidirectional overrides.
HOSTILE_TEXT = st.one_of(
    st.sampled_from(["[/]", "[bold]x[/bold]", "[red", "[/red]", "[link=file:///etc]x", "\x00", "a\x00b", "\ud800",
                     "x\udfff", "\udc80", "n" * 300, "\u00e9" * 200, "../" * 90, "\u202eevil", "%s%n", "{0}", "\n\r",
                     "\t", "\\"]),
    st.lists(st.sampled_from(["[/]", "[b]", "\x00", "\ud800", "x", "\u00e9", "/", " "]), min_size=1,
             max_size=6).map("".join),
)
# JSON arrays nested far beyond any recursion limit.
DEEP_JSON = st.integers(1_000, 20_000).map(lambda depth: "[" * depth + "]" * depth)

BASE: dict[str, Any] = {
    "apiVersion": "kubetune.io/v1alpha1",
    "kind": "Experiment",
    "metadata": {"name": "demo"},
    "spec": {
        "objective": {"metric": "loss", "direction": "minimize", "additionalMetrics": ["concurrent"]},
        "parameters": [{"name": "x", "type": "double", "min": -5, "max": 10}],
        "algorithm": {"name": "random"},
        "seed": 1,
        "parallelism": 2,
        "maxTrials": 6,
        "maxFailedTrials": 3,
        "trialTemplate": {
            "spec": {
                "containers": [
                    {
                        "name": "trial",
                        "image": "python:3.12-slim",
                        "command": [sys.executable, str(TRIALS / "objective.py")],
                        "args": ["--x=${params.x}"],
                    }
                ]
            }
        },
    },
}


def manifest(**spec_changes: Any) -> dict[str, Any]:
    """The base manifest with top-level spec fields replaced; ``args`` replaces the container args."""
    document = copy.deepcopy(BASE)
    args = spec_changes.pop("args", None)
    if args is not None:
        document["spec"]["trialTemplate"]["spec"]["containers"][0]["args"] = args
    template = spec_changes.pop("template", None)
    if template:
        document["spec"]["trialTemplate"].update(template)
    document["spec"].update(spec_changes)
    return document


@pytest.fixture
def write_manifest(tmp_path: Path):
    def write(document: dict[str, Any], name: str = "experiment.yaml") -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    return write


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keeps each phase's report on the test, so a fixture's teardown can tell that the test failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


# the control-plane fixtures; imported last, since operator_cluster builds its manifests with manifest() above
from operator_cluster import bare_cluster, control_plane, namespace  # noqa: E402, F401, I001
from ray_cluster import ray_cluster  # noqa: E402, F401, I001
