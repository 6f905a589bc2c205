"""``kubetune convert``: Katib v1beta1 Experiments in the shapes of Katib's own examples (``tests/katib/``) become
kubetune manifests that ``kubetune validate`` accepts, or are refused with the reason; field by field mappings;
the command's input and output; and fuzzing (no traceback on any input)."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz_inputs import _mutate

from conftest import FUZZ, HOSTILE_TEXT
from kubetune.cli import main
from kubetune.core.errors import ManifestError
from kubetune.core.katib import convert_document, convert_text, render
from kubetune.core.manifest import load_experiment, load_experiment_file

CORPUS = Path(__file__).parent / "katib"
# Every file of the corpus: what becomes of it, and a phrase each of its notes must include (converted files) or
# its refusal must include.
CONVERTED = {
    "random-job.yaml": ["recorded train-acc by max", "Pod made from the Job's pod template"],
    "grid-steps.yaml": ["spec.backoffLimit became retries"],
    "bayesian.yaml": ["does not mix acquisition functions"],
    "tpe.yaml": ["hyperopt's gamma"],
    "multivariate-tpe.yaml": [],
    "cmaes.yaml": ["no longer restarts", "step size", "sidecar.istio.io/inject"],
    "sobol.yaml": [],
    "hyperband.yaml": ["asynchronous successive halving", "epochs = 9"],
    "distributions.yaml": ["a normal distribution", "a log-normal distribution"],
    "median-stop.yaml": ["median rule"],
    "median-stop-json-file.yaml": ["values written as strings", "never a file inside the pod"],
    "file-collector-filter.yaml": ["not custom patterns"],
    "metric-strategies.yaml": ["recorded top1 by max"],
    "push-collector.yaml": ["kubeflow.katib.report_metrics"],
    "resume-never.yaml": ["that cannot be turned off"],
    "resume-longrunning.yaml": ["no suggestion service"],
    "resume-fromvolume.yaml": ["no suggestion state in a volume"],
    "metadata-substitution.yaml": ["a kubetune trial is a Pod"],
    "pytorchjob-single.yaml": ["without the training operator"],
    "with-configmap.yaml": ["copied unchanged", "restartPolicy OnFailure", "ttlSecondsAfterFinished",
                            "needs a command"],
}
REFUSED = {
    "pbt.yaml": "population-based training",
    "enas.yaml": "neural-architecture search",
    "darts.yaml": "neural-architecture search",
    "custom-collector.yaml": "custom collector sidecar",
    "tfevent-collector.yaml": "TensorFlow event files",
    "configmap-template.yaml": "lives in a ConfigMap",
    "pytorchjob-distributed.yaml": "across 2 pods (Master 1, Worker 1)",
    "tfjob-workers.yaml": "across 2 pods (Worker 2)",
    "mpijob.yaml": "MPIJob's launcher",
    "xgboostjob.yaml": "across 3 pods",
    "trainjob.yaml": "training runtime",
    "argo-workflow.yaml": "Argo Workflow",
    "tekton-pipelinerun.yaml": "Tekton PipelineRun",
}


def command(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
    """``kubetune`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    stdin_was = sys.stdin
    if stdin is not None:
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode("utf-8", "surrogatepass")))
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as exit_:
                code = exit_.code
    finally:
        sys.stdin = stdin_was
    return code, out.getvalue(), err.getvalue()


def katib(name: str) -> dict[str, Any]:
    documents = [d for d in yaml.safe_load_all((CORPUS / name).read_text()) if d]
    return next(d for d in documents if d.get("apiVersion") == "kubeflow.org/v1beta1")


def converted(document: dict[str, Any]) -> dict[str, Any]:
    conversion = convert_document(document)
    assert conversion.manifest is not None, [str(n) for n in conversion.notes]
    return conversion.manifest


def notes_of(document: dict[str, Any]) -> str:
    return "\n".join(str(n) for n in convert_document(document).notes)


# -- the corpus -----------------------------------------------------------------------------------------------
def test_the_corpus_is_all_named_here():
    assert {p.name for p in CORPUS.glob("*.yaml")} == set(CONVERTED) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(CONVERTED))
def test_a_convertible_katib_experiment_becomes_a_manifest_that_validates(name, tmp_path):
    out = tmp_path / "converted.yaml"
    code, stdout, stderr = command("convert", str(CORPUS / name), "-o", str(out))
    assert code == 0 and stdout == "", stderr
    assert not [line for line in stderr.splitlines() if not line.startswith("warning: ")], stderr
    for phrase in CONVERTED[name]:
        assert phrase in stderr, (phrase, stderr)
    code, stdout, stderr = command("validate", str(out))
    assert code == 0 and stdout.startswith("valid: "), stderr
    assert load_experiment_file(out).spec.parameters


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_an_experiment_kubetune_cannot_run_is_refused_with_the_reason(name, tmp_path):
    out = tmp_path / "converted.yaml"
    code, stdout, stderr = command("convert", str(CORPUS / name), "-o", str(out))
    assert code == 2 and stdout == "" and not out.exists()
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert errors and REFUSED[name] in "\n".join(errors), stderr
    assert all(": spec." in line or ": apiVersion" in line for line in errors), errors  # each names its field
    assert "Traceback" not in stderr


# -- field by field -------------------------------------------------------------------------------------------
def test_objective_limits_and_the_default_metric_strategy():
    spec = converted(katib("random-job.yaml"))["spec"]
    assert spec["objective"] == {"metric": "val-acc", "direction": "maximize", "target": 0.95,
                                 "additionalMetrics": ["train-acc"], "strategy": "max"}
    assert (spec["parallelism"], spec["maxTrials"], spec["maxFailedTrials"]) == (4, 16, 2)
    assert spec["algorithm"] == {"name": "random"}


def test_explicit_metric_strategies_and_missing_limits():
    document = katib("metric-strategies.yaml")
    assert converted(document)["spec"]["objective"]["strategy"] == "min"
    del document["spec"]["maxFailedTrialCount"]
    assert converted(document)["spec"]["maxFailedTrials"] == 12  # Katib never failed for failed trials
    del document["spec"]["maxTrialCount"], document["spec"]["parallelTrialCount"]
    spec = converted(document)["spec"]
    assert "maxTrials" not in spec and spec["parallelism"] == 3  # Katib's default parallelism
    assert "maxTrialCount: not given" in notes_of(document)


def test_a_step_lists_the_values_katib_would_visit_exactly():
    parameters = converted(katib("grid-steps.yaml"))["spec"]["parameters"]
    assert parameters[0] == {"name": "c", "type": "discrete",
                             "values": [0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5]}
    assert parameters[1] == {"name": "degree", "type": "int", "min": 1, "max": 4}
    stepped = converted(katib("distributions.yaml"))["spec"]["parameters"]
    assert stepped[0]["values"] == [0.02, 0.03, 0.04, 0.05, 0.06]
    assert stepped[4] == {"name": "accumulation", "type": "discrete", "values": [1, 4, 7, 10, 13, 16]}
    assert stepped[2] == {"name": "epochs", "type": "int", "min": 2, "max": 8, "scale": "log"}


def test_algorithm_settings_become_kubetune_settings_and_the_seed():
    spec = converted(katib("bayesian.yaml"))["spec"]
    assert spec["algorithm"] == {"name": "gp", "settings": {"initialTrials": 6, "acquisition": "ei"}}
    assert spec["seed"] == 7
    spec = converted(katib("tpe.yaml"))["spec"]
    assert spec["algorithm"] == {"name": "tpe", "settings": {"multivariate": False, "eiCandidates": 32,
                                                             "priorWeight": 1.5}}
    assert spec["seed"] == 3
    assert converted(katib("multivariate-tpe.yaml"))["spec"]["algorithm"] == {
        "name": "tpe", "settings": {"multivariate": True, "startupTrials": 5, "eiCandidates": 48}}
    assert converted(katib("cmaes.yaml"))["spec"]["algorithm"] == {"name": "cmaes"}


def test_an_unknown_setting_is_named_and_left_out():
    document = katib("sobol.yaml")
    document["spec"]["algorithm"]["algorithmSettings"] = [{"name": "scramble", "value": "false"}]
    assert converted(document)["spec"]["algorithm"] == {"name": "sobol"}
    assert "spec.algorithm.algorithmSettings[0]: 'scramble' is not a setting of Katib's sobol" in notes_of(document)


def test_hyperband_becomes_random_search_with_asha_and_the_budget_fixed():
    spec = converted(katib("hyperband.yaml"))["spec"]
    assert spec["algorithm"] == {"name": "random"}
    assert spec["earlyStopping"] == {"rule": "asha", "resource": "step",
                                     "settings": {"minResource": 1, "maxResource": 9, "reductionFactor": 3}}
    assert [p["name"] for p in spec["parameters"]] == ["lr", "batch"]
    assert "--epochs=9" in spec["trialTemplate"]["spec"]["containers"][0]["command"]


def test_medianstop_becomes_the_median_rule():
    spec = converted(katib("median-stop.yaml"))["spec"]
    assert spec["earlyStopping"] == {"rule": "median", "resource": "step",
                                     "settings": {"minTrialsRequired": 2, "startStep": 3}}


def test_placeholders_the_primary_container_and_the_gpu():
    template = converted(katib("cmaes.yaml"))["spec"]["trialTemplate"]
    container = template["spec"]["containers"][0]
    assert container["args"][-1] == "${params.base-channels}"
    assert template["resources"] == {"gpu": 1} and container["resources"] == {"limits": {"memory": "16Gi"}}
    mounted = converted(katib("with-configmap.yaml"))["spec"]["trialTemplate"]
    assert [c["name"] for c in mounted["spec"]["containers"]] == ["fit", "sidecar"]
    assert mounted["timeoutSeconds"] == 1800 and "restartPolicy" not in mounted["spec"]
    env = converted(katib("metadata-substitution.yaml"))["spec"]["trialTemplate"]["spec"]["containers"][0]["env"]
    assert {e["name"]: e["value"] for e in env} == {"RUN_NAMESPACE": "research", "RUN_KIND": "Pod",
                                                    "TEAM": "vision", "OWNER": "ana"}


def test_a_single_valued_range_is_a_constant_and_an_odd_name_is_renamed():
    document = katib("random-job.yaml")
    document["spec"]["parameters"][1]["feasibleSpace"] = {"min": "24", "max": "24"}
    document["spec"]["parameters"][0]["name"] = "--learning-rate"
    document["spec"]["trialTemplate"]["trialParameters"][0]["reference"] = "--learning-rate"
    spec = converted(document)["spec"]
    assert [p["name"] for p in spec["parameters"]] == ["learning-rate", "opt"]
    assert spec["trialTemplate"]["spec"]["containers"][0]["args"][:2] == ["--lr=${params.learning-rate}",
                                                                          "--layers=24"]
    notes = notes_of(document)
    assert "depth has one value (24)" in notes and "it becomes 'learning-rate'" in notes


def _container(document: dict[str, Any]) -> dict[str, Any]:
    return document["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0]


def _only_constants(document: dict[str, Any]) -> None:
    document["spec"]["parameters"] = [document["spec"]["parameters"][0]]
    document["spec"]["parameters"][0]["feasibleSpace"].update(min="0.1", max="0.1")
    document["spec"]["trialTemplate"]["trialParameters"] = []
    _container(document)["args"] = []


REFUSALS = [
    (lambda d: _container(d)["args"].append("${trialParameters.seed}"), "spec.trialTemplate.trialSpec", "no 'seed'"),
    (lambda d: d["spec"]["trialTemplate"].update(primaryContainerName="main"),
     "spec.trialTemplate.primaryContainerName", "no container of the trial's pod is named 'main'"),
    (lambda d: d["spec"]["objective"].update(type="best"), "spec.objective.type", "minimize or maximize"),
    (lambda d: d["spec"]["parameters"][0]["feasibleSpace"].update(distribution="beta"),
     "spec.parameters[0].feasibleSpace.distribution", "uniform, logUniform"),
    (lambda d: d["spec"]["parameters"][1].update(parameterType="integer"), "spec.parameters[1].parameterType",
     "double, int, discrete, categorical"),
    (lambda d: d["spec"]["algorithm"].update(algorithmName="annealing"), "spec.algorithm.algorithmName",
     "unknown Katib algorithm"),
    (lambda d: d["spec"].update(metricsCollectorSpec={"collector": {"kind": "PrometheusMetric"}}),
     "spec.metricsCollectorSpec.collector.kind", "Prometheus"),
    (_only_constants, "spec.parameters", "no parameter is left"),
    (lambda d: d["spec"]["trialTemplate"]["trialParameters"][0].update(reference="${trialSpec.Uid}"),
     "spec.trialTemplate.trialParameters[0].reference", "neither a parameter"),
]


@pytest.mark.parametrize(("change", "path", "phrase"), REFUSALS)
def test_what_cannot_be_converted_is_refused_naming_the_field(change, path, phrase):
    document = katib("random-job.yaml")
    change(document)
    conversion = convert_document(document)
    assert conversion.refused
    refusals = [n for n in conversion.notes if n.refusal]
    assert any(n.path == path and phrase in n.message for n in refusals), [str(n) for n in refusals]


def test_a_converted_manifest_that_kubetune_refuses_is_refused_with_its_problems():
    document = katib("grid-steps.yaml")
    document["spec"]["parameters"][0]["feasibleSpace"].pop("step")  # a continuous double: grid needs steps
    conversion = convert_document(document)
    assert conversion.refused
    assert any("the converted Experiment is not valid: spec.parameters[0]: grid search needs steps" in str(n)
               for n in conversion.notes)


def test_documents_that_are_not_katib_experiments_pass_through():
    kubetune = yaml.safe_load((Path(__file__).parent.parent / "examples" / "quickstart.yaml").read_text())
    (one, two) = convert_text(yaml.safe_dump_all([kubetune, {"apiVersion": "v1", "kind": "Secret"}]))
    assert one.manifest == kubetune and "a kubetune Experiment: copied unchanged" in str(one.notes[0])
    assert two.manifest == {"apiVersion": "v1", "kind": "Secret"}
    assert render([one, two]).count("---\n") == 1


def test_the_readme_shows_real_output_and_maps_every_algorithm_and_collector(monkeypatch):
    from kubetune.core.katib.algorithms import ALGORITHMS, REFUSED
    from kubetune.core.katib.collectors import COLLECTORS

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("## Coming from Katib"):readme.index("## Benchmarks")]
    shown = section[section.index("$ cat xgb-bo.yaml\n") + len("$ cat xgb-bo.yaml\n"):section.index("```\n\nKatib's")]
    monkeypatch.chdir(Path(__file__).parent.parent)
    code, _, stderr = command("convert", "tests/katib/bayesian.yaml")
    assert code == 0
    assert render(convert_text((CORPUS / "bayesian.yaml").read_text())) == shown
    assert all(line in section for line in stderr.splitlines())
    table = section[section.index("| Katib ("):]
    for name in [*ALGORITHMS, *REFUSED, *COLLECTORS]:
        assert f"`{name}`" in table, name


# -- the command ----------------------------------------------------------------------------------------------
def test_convert_reads_standard_input_and_writes_standard_output():
    code, stdout, stderr = command("convert", "-", stdin=(CORPUS / "sobol.yaml").read_text())
    assert code == 0, stderr
    assert stdout.startswith("# Converted by `kubetune convert` from the Katib (kubeflow.org/v1beta1) Experiment "
                             "mlp-sobol.\n")
    assert load_experiment(yaml.safe_load(stdout)).spec.algorithm.name == "sobol"
    assert stderr.startswith("warning: standard input: spec.trialTemplate.trialSpec.kind: ")


def test_several_documents_convert_one_by_one_and_refusals_are_named(tmp_path):
    stream = "---\n".join((CORPUS / name).read_text() for name in ("tpe.yaml", "enas.yaml", "sobol.yaml"))
    source = tmp_path / "katib.yaml"
    source.write_text(stream)
    out = tmp_path / "kubetune.yaml"
    code, _, stderr = command("convert", str(source), "-o", str(out))
    assert code == 2
    assert f"error: {source} (document 2): spec.algorithm.algorithmName: enas cannot be converted" in stderr
    written = [d["metadata"]["name"] for d in yaml.safe_load_all(out.read_text())]
    assert written == ["bert-tpe", "mlp-sobol"]


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read it: No such file or directory"),
    (b"\xff\xfe", "not UTF-8 text: byte 0xff at offset 0"),
    (b"a: [", "not valid YAML: line 1"),
    (b"", "no document to convert"),
    (b"- 1\n- 2\n", "is not a Kubernetes object"),
])
def test_bad_input_is_one_line_and_exit_2(content, message, tmp_path):
    source = tmp_path / "katib.yaml"
    if content is not None:
        source.write_bytes(content)
    code, stdout, stderr = command("convert", str(source))
    assert code == 2 and stdout == ""
    assert stderr.startswith("error: ") and message in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_an_unwritable_output_is_one_line_and_exit_2(tmp_path):
    code, _, stderr = command("convert", str(CORPUS / "sobol.yaml"), "-o", str(tmp_path / "missing" / "out.yaml"))
    assert code == 2 and stderr.strip().splitlines()[-1].startswith(f"error: -o {tmp_path / 'missing' / 'out.yaml'}")


def test_the_loader_sends_a_katib_experiment_to_convert(tmp_path):
    path = CORPUS / "random-job.yaml"
    code, _, stderr = command("validate", str(path))
    assert code == 2
    assert stderr.strip() == (f"error: {path}: invalid experiment: apiVersion: kubeflow.org/v1beta1 is a Katib "
                              f"Experiment, not a kubetune one: convert it with `kubetune convert {path}`, which "
                              "writes the kubetune Experiment and says what cannot be carried over")
    with pytest.raises(ManifestError, match="kubeflow.org/v1 PyTorchJob is not a kubetune Experiment"):
        load_experiment({"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob"})


def test_convert_in_a_real_process_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "kubetune.cli", "convert", str(CORPUS / "mpijob.yaml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


# -- fuzzing --------------------------------------------------------------------------------------------------
def _check(conversion: Any) -> None:
    assert conversion.notes or conversion.manifest is not None
    for note in conversion.notes:
        assert isinstance(note.message, str) and note.message.strip()
    if conversion.refused:
        assert any(note.refusal for note in conversion.notes)
    elif conversion.manifest.get("apiVersion") == "kubetune.io/v1alpha1" and conversion.name:
        load_experiment(conversion.manifest)  # a conversion that is not refused validates


@FUZZ
@given(st.data(), st.sampled_from(sorted(CONVERTED)))
def test_a_mutated_katib_experiment_is_converted_or_refused_never_a_traceback(data, name):
    _check(convert_document(_mutate(katib(name), data)))


KATIB_KEYS = ["apiVersion", "kind", "spec", "metadata", "name", "parameters", "feasibleSpace", "min", "max", "step",
              "list", "parameterType", "trialTemplate", "trialSpec", "template", "containers", "algorithm",
              "algorithmName", "algorithmSettings", "value", "objective", "type"]
katib_junk = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | HOSTILE_TEXT
    | st.sampled_from(["Job", "int", "double", "${trialParameters.lr}", "${trialSpec.Name}", "File", "JSON", "1e400",
                       "kubeflow.org/v1beta1", "Experiment", "medianstop", "hyperband", "r_l", "-1", "0"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(KATIB_KEYS) | HOSTILE_TEXT, inner, max_size=4),
    max_leaves=12)


@FUZZ
@given(katib_junk)
def test_any_document_is_converted_or_refused_never_a_traceback(document):
    if isinstance(document, dict):
        document = {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment", **document}
    _check(convert_document(document))


@FUZZ
@given(st.binary(max_size=300) | HOSTILE_TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_the_command_answers_any_bytes_with_0_or_2(raw):
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "katib.yaml"
        source.write_bytes(raw)
        code, out, err = command("convert", str(source))
    assert code in (0, 2) and "Traceback" not in out + err, (code, out, err)
    assert code == 0 or err.startswith("error: ")
