"""The manifest model: the contract manifest loads, and every malformed manifest is rejected with a
message that names the field."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import manifest
from kubetune.cli import main
from kubetune.core.errors import ManifestError
from kubetune.core.manifest import load_experiment, load_experiment_text, local_run_problems

CONTRACT = """
apiVersion: kubetune.io/v1alpha1
kind: Experiment
metadata:
  name: wine-svc
spec:
  objective:
    metric: accuracy
    direction: maximize
    target: 0.99
    additionalMetrics: [loss]
    strategy: latest
  parameters:
    - {name: C, type: double, min: 0.001, max: 1000, scale: log}
    - {name: kernel, type: categorical, values: [rbf, linear, poly]}
    - {name: degree, type: int, min: 1, max: 5}
    - {name: batch, type: discrete, values: [16, 32, 64]}
  algorithm:
    name: random
    settings: {}
  seed: 0
  parallelism: 4
  maxTrials: 40
  maxFailedTrials: 3
  trialTemplate:
    timeoutSeconds: 600
    retries: 0
    resources: {cpu: 1, memory: 1Gi, gpu: 0.25}
    metricsCollector: {kind: stdout}
    spec:
      containers:
        - name: trial
          image: python:3.12-slim
          command: [python, train.py]
          args: ["--C=${params.C}", "--kernel=${params.kernel}"]
"""


def test_contract_manifest_loads():
    experiment = load_experiment_text(CONTRACT)
    spec = experiment.spec
    assert experiment.name == "wine-svc"
    assert spec.objective.target == 0.99 and spec.objective.additional_metrics == ["loss"]
    assert [p.type for p in spec.parameters] == ["double", "categorical", "int", "discrete"]
    assert spec.parallelism == 4 and spec.max_trials == 40 and spec.max_failed_trials == 3
    assert spec.trial_template.resources.gpu == 0.25
    assert spec.trial_template.timeout_seconds == 600


def test_dump_uses_manifest_field_names():
    dumped = load_experiment_text(CONTRACT).model_dump(by_alias=True, exclude_none=True)
    assert set(dumped["spec"]) >= {"maxTrials", "maxFailedTrials", "trialTemplate", "parallelism"}
    assert "additionalMetrics" in dumped["spec"]["objective"]
    assert load_experiment(dumped).model_dump() == load_experiment_text(CONTRACT).model_dump()


def _parameter(**fields):
    return manifest(parameters=[fields], args=[])


BAD = {
    "max below min": (
        _parameter(name="C", type="double", min=1000, max=0.001),
        "spec.parameters[0]", "max (0.001) must be greater than min (1000)",
    ),
    "duplicate names": (
        manifest(parameters=[{"name": "x", "type": "double", "min": 0, "max": 1}] * 2),
        "spec.parameters", "'x' is used more than once",
    ),
    "empty categorical": (
        _parameter(name="k", type="categorical", values=[]), "spec.parameters[0]", "non-empty list of values",
    ),
    "log with min 0": (
        _parameter(name="lr", type="double", min=0, max=1, scale="log"), "spec.parameters[0]",
        "log scale needs min > 0",
    ),
    "empty metric": (
        manifest(objective={"metric": " ", "direction": "minimize"}), "spec.objective.metric", "must not be empty",
    ),
    "parallelism 0": (manifest(parallelism=0), "spec.parallelism", "greater than or equal to 1"),
    "maxTrials 0": (manifest(maxTrials=0), "spec.maxTrials", "greater than or equal to 1"),
    "undefined reference": (
        manifest(args=["--x=${params.x}", "--y=${params.y}"]),
        "spec.trialTemplate.spec.containers[0].args[1]", "${params.y}, but no parameter 'y' is defined",
    ),
    "unknown field": (manifest(paralelism=3), "spec", "unknown field 'paralelism'"),
    "unknown nested field": (
        manifest(objective={"metric": "loss", "direction": "minimize", "goal": 1}), "spec.objective",
        "unknown field 'goal'",
    ),
    "bad direction": (manifest(objective={"metric": "loss", "direction": "up"}), "spec.objective.direction",
                      "'maximize' or 'minimize'"),
    "int with fractional bound": (
        _parameter(name="n", type="int", min=1.5, max=4), "spec.parameters[0]", "must be a whole number",
    ),
    "double without max": (_parameter(name="x", type="double", min=1), "spec.parameters[0]", "needs max"),
    "fractional gpu above one": (
        manifest(template={"resources": {"gpu": 1.5}}), "spec.trialTemplate.resources.gpu", "whole number of GPUs",
    ),
    "file collector without path": (
        manifest(template={"metricsCollector": {"kind": "file"}}), "spec.trialTemplate.metricsCollector",
        "needs a path",
    ),
    "unknown algorithm": (manifest(algorithm={"name": "hyperband"}), "spec.algorithm.name", "'random'"),
    "bad algorithm setting": (
        manifest(algorithm={"name": "sobol", "settings": {"scrambled": True}}), "spec.algorithm.settings",
        "unknown field 'scrambled'",
    ),
    "grid without steps": (manifest(algorithm={"name": "grid"}), "spec.parameters[0]", "grid search needs steps"),
    "no containers": (
        manifest(template={"spec": {"containers": []}}), "spec.trialTemplate.spec", "non-empty containers list",
    ),
    "bad name": (dict(manifest(), metadata={"name": "Wine_SVC"}), "metadata.name", "lowercase"),
    "wrong kind": (dict(manifest(), kind="Trial"), "kind", "'Experiment'"),
    "missing objective": (
        {**manifest(), "spec": {k: v for k, v in manifest()["spec"].items() if k != "objective"}},
        "spec.objective", "required field is missing",
    ),
    "discrete with strings": (
        _parameter(name="b", type="discrete", values=["a", 2]), "spec.parameters[0]", "use type categorical",
    ),
    "negative retries": (manifest(template={"retries": -1}), "spec.trialTemplate.retries", "greater than or equal"),
    "bad memory quantity": (
        manifest(template={"resources": {"memory": "lots"}}), "spec.trialTemplate.resources.memory",
        "not a Kubernetes quantity",
    ),
    "environment names collide (a-b, a_b)": (
        manifest(parameters=[{"name": "a-b", "type": "double", "min": 0, "max": 1},
                             {"name": "a_b", "type": "double", "min": 0, "max": 1}], args=[]),
        "spec.parameters", "'a-b' and 'a_b' would both be passed to the trial as the environment variable "
        "KUBETUNE_PARAM_A_B",
    ),
    "environment names collide (lr, LR)": (
        manifest(parameters=[{"name": "lr", "type": "double", "min": 0, "max": 1},
                             {"name": "LR", "type": "double", "min": 0, "max": 1}], args=[]),
        "spec.parameters", "'lr' and 'LR' would both be passed",
    ),
    "placeholder with a singular scope": (
        manifest(args=["--x=${param.x}"]), "spec.trialTemplate.spec.containers[0].args[0]",
        "'${param.x}' is not a placeholder kubetune knows; did you mean ${params.x}? placeholders are "
        "${params.NAME}, ${trial.id} and ${experiment.name}",
    ),
    "placeholder in round brackets": (
        manifest(args=["--x=$(params.x)"]), "spec.trialTemplate.spec.containers[0].args[0]",
        "did you mean ${params.x}?",
    ),
    "placeholder of another tool": (
        manifest(args=["--x=${params.x}", "--y=${trialParameters.unknown}"]),
        "spec.trialTemplate.spec.containers[0].args[1]", "'${trialParameters.unknown}' is not a placeholder",
    ),
    "unclosed placeholder": (
        manifest(args=["--x=${params.x"]), "spec.trialTemplate.spec.containers[0].args[0]",
        "did you mean ${params.x}?",
    ),
    "placeholder in the environment": (
        manifest(template={"spec": {"containers": [{"name": "t", "command": ["t"],
                                                    "env": [{"name": "X", "value": "${params.X}"}]}]}}),
        "spec.trialTemplate.spec.containers[0].env[0].value", "no parameter 'X' is defined",
    ),
    "placeholder in the metrics file": (
        manifest(template={"metricsCollector": {"kind": "file", "path": "out/${trial.name}.json"}}),
        "spec.trialTemplate.metricsCollector.path", "trial placeholders are ${trial.id}",
    ),
    "categorical value beyond 64 bits": (
        _parameter(name="k", type="categorical", values=[1, 10**400]), "spec.parameters[0]", "beyond 64-bit integers",
    ),
    "categorical value not a number": (
        _parameter(name="k", type="categorical", values=["a", float("nan")]), "spec.parameters[0]", "not finite",
    ),
    "infinite gpu": (
        manifest(template={"resources": {"gpu": float("inf")}}), "spec.trialTemplate.resources.gpu",
        "finite number",
    ),
    "grid steps beyond any grid": (
        _parameter(name="x", type="double", min=0, max=1, steps=10**9), "spec.parameters[0].steps",
        "less than or equal to 100000",
    ),
    "parallelism beyond a JSON integer": (manifest(parallelism=2**53), "spec.parallelism", "less than or equal to"),
    "unknown trial placeholder": (
        manifest(args=["--x=${params.x}", "--out=${trial.dir}"]), "spec.trialTemplate.spec.containers[0].args[1]",
        "${trial.id}",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_manifest_is_rejected_naming_the_field(case):
    document, path, message = BAD[case]
    with pytest.raises(ManifestError) as caught:
        load_experiment(copy.deepcopy(document))
    problems = [str(p) for p in caught.value.problems]
    assert any(p.startswith(f"{path}:") and message in p for p in problems), problems


@pytest.mark.parametrize("case", sorted(BAD))
def test_cli_exits_2_on_malformed_manifest(case, write_manifest, capsys):
    document, path, message = BAD[case]
    file = write_manifest(document)
    assert main(["run", str(file), "--out", str(file.parent / "out")]) == 2
    err = capsys.readouterr().err
    assert path in err and "invalid experiment" in err
    assert not (file.parent / "out").exists(), "nothing runs on bad input"


def test_every_problem_is_reported_at_once():
    document = manifest(parallelism=0, maxTrials=0)
    with pytest.raises(ManifestError) as caught:
        load_experiment(document)
    assert {p.path for p in caught.value.problems} == {"spec.parallelism", "spec.maxTrials"}


def test_yaml_syntax_error_names_the_line():
    with pytest.raises(ManifestError, match=r"not valid YAML: line \d+, column \d+"):
        load_experiment_text("apiVersion: x\nkind: Experiment\nspec: [unclosed\n")


def test_multi_document_file_takes_the_experiment():
    text = "kind: ConfigMap\n---\n" + CONTRACT
    assert load_experiment_text(text).name == "wine-svc"


_names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@given(st.lists(_names, min_size=1, max_size=5, unique=True), st.data())
def test_any_well_formed_space_round_trips_through_the_model(names, data):
    parameters = []
    for name in names:
        kind = data.draw(st.sampled_from(["double", "int", "discrete", "categorical"]))
        if kind in ("double", "int"):
            lo = data.draw(st.integers(-100, 100))
            hi = lo + data.draw(st.integers(1, 100))
            parameters.append({"name": name, "type": kind, "min": lo, "max": hi})
        else:
            values = data.draw(st.lists(st.integers(-50, 50), min_size=1, max_size=5, unique=True))
            parameters.append({"name": name, "type": kind, "values": values})
    document = manifest(parameters=parameters, args=[f"--{n}=${{params.{n}}}" for n in names])
    experiment = load_experiment(document)
    assert [p.name for p in experiment.spec.parameters] == names
    assert load_experiment(experiment.model_dump(by_alias=True, exclude_none=True)) == experiment


@pytest.mark.parametrize("text", ["${HOME}/data", "$(POD_NAME)", "$(python -c 'print(1.5)')", "cost: $5.00",
                                  "${params.x}-${trial.id}-${experiment.name}", "a $ {b.c}"])
def test_shell_and_kubernetes_references_are_left_alone(text):
    load_experiment(manifest(args=[text]))


def test_local_run_rule_names_the_command_and_the_cluster_accepts_it():
    for command in ([], None):
        container = {"name": "trial", "image": "trainer:1", "args": ["--x=${params.x}"]}
        if command is not None:
            container["command"] = command
        spec = load_experiment(manifest(template={"spec": {"containers": [container]}})).spec
        assert [str(p) for p in local_run_problems(spec)] == [
            "spec.trialTemplate.spec.containers[0].command: locally the first container needs a command to run "
            "(the image's entrypoint is not known without a cluster)"]
    assert local_run_problems(load_experiment(manifest()).spec) == []


def test_validate_warns_about_what_run_refuses(write_manifest, capsys):
    container = {"name": "trial", "image": "trainer:1", "command": [], "args": ["--x=${params.x}"]}
    file = write_manifest(manifest(template={"spec": {"containers": [container]}}))
    assert main(["validate", str(file)]) == 0
    captured = capsys.readouterr()
    assert "warning: spec.trialTemplate.spec.containers[0].command: locally the first container needs a command" \
        in captured.err
    assert "in a cluster: the image's entrypoint --x=" in captured.out
    assert main(["run", str(file), "--out", str(file.parent / "out")]) == 2
    assert "spec.trialTemplate.spec.containers[0].command: locally" in capsys.readouterr().err


@pytest.mark.parametrize(("change", "path", "message"), [
    (lambda c: c.update(comand=["python"]), "spec.trialTemplate.spec.containers[0]", "unknown field 'comand'"),
    (lambda c: c.pop("name"), "spec.trialTemplate.spec.containers[0]", "required field 'name' is missing"),
    (lambda c: c.update(ports=[{"containerPort": "http"}]), "spec.trialTemplate.spec.containers[0].ports[0]"
     ".containerPort", "'http' is not of type 'integer'"),
])
def test_the_pod_template_is_checked_against_the_kubernetes_pod_spec(change, path, message):
    document = manifest()
    change(document["spec"]["trialTemplate"]["spec"]["containers"][0])
    with pytest.raises(ManifestError) as refused:
        load_experiment(document)
    (problem,) = refused.value.problems
    assert problem.path == path and problem.message.startswith(message) and "PodSpec" in problem.message


def test_validate_says_what_the_template_was_checked_against_and_what_only_a_cluster_refuses(write_manifest,
                                                                                             capsys):
    document = manifest()
    del document["spec"]["trialTemplate"]["spec"]["containers"][0]["image"]
    assert main(["validate", str(write_manifest(document))]) == 0
    captured = capsys.readouterr()
    assert "Pod template: checked against the Kubernetes 1." in captured.out
    assert ("warning: spec.trialTemplate.spec.containers[0].image: a cluster refuses a container without an image"
            in captured.err)
