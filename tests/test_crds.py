"""The CRDs: generated from the models, structural, accepted by the Kubernetes schema, up to date."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from conftest import manifest
from kubetune.cli import render_yaml
from kubetune.core.cluster.crd import PRESERVE, all_crds

CRDS = Path(__file__).parent.parent / "crds"
EXAMPLES = Path(__file__).parent.parent / "examples"
TRIAL_CRD = "trials.kubetune.io.yaml"


def test_crds_folder_is_up_to_date():
    for name, crd in all_crds().items():
        assert (CRDS / name).read_text() == render_yaml(crd), f"crds/{name} is stale: run `kubetune crds --out crds`"


@pytest.mark.parametrize("name", sorted(all_crds()))
def test_crd_validates_against_the_kubernetes_schema(name):
    kubernetes_validate.validate(all_crds()[name], kubernetes_validate.latest_version(), strict=True)


def _walk(node, path="openAPIV3Schema"):
    yield path, node
    for key, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{key}")
    if "items" in node:
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


@pytest.mark.parametrize("name", sorted(all_crds()))
def test_schema_is_structural(name):
    schema = all_crds()[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "type" in node or node.get(PRESERVE) or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "title", "default", "$defs"):
            if (name, path, forbidden) != (TRIAL_CRD, "openAPIV3Schema.status", "default"):
                assert forbidden not in node, f"{path} has {forbidden}"
        assert not ("properties" in node and "additionalProperties" in node), path


@pytest.mark.parametrize("name", sorted(all_crds()))
def test_integer_bounds_are_json_integers(name):
    """The API server refuses a schema whose integer minimum or maximum a JSON number cannot hold exactly
    (beyond 2**53), and then every object: "Maximum boundary value must be of type integer"."""
    schema = all_crds()[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        for bound in ("minimum", "maximum"):
            if node.get("type") == "integer" and bound in node:
                assert abs(node[bound]) <= 2**53, f"{path}.{bound} is {node[bound]}"


def test_unknown_fields_are_kept_only_where_needed():
    schema = all_crds()["experiments.kubetune.io.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    preserved = {path for path, node in _walk(schema) if node.get(PRESERVE)}
    assert preserved == {
        "openAPIV3Schema.spec.trialTemplate.spec",  # the embedded PodSpec
        "openAPIV3Schema.spec.algorithm.settings",  # algorithm-specific settings, checked by the operator
        "openAPIV3Schema.spec.earlyStopping.settings",  # rule-specific settings, likewise
        "openAPIV3Schema.spec.parameters[].values[]",  # categorical values: strings, numbers or booleans
        "openAPIV3Schema.status.best.params",  # a parameter assignment of mixed types
    }


def test_quantities_are_int_or_string_as_in_every_crd():
    schema = all_crds()["experiments.kubetune.io.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    resources = schema["properties"]["spec"]["properties"]["trialTemplate"]["properties"]["resources"]["properties"]
    for name in ("cpu", "memory"):
        assert resources[name].get("x-kubernetes-int-or-string") is True and PRESERVE not in resources[name]


def _draft4(node):
    """The OpenAPI subset used by CRDs as a JSON Schema draft 4 validator sees it."""
    node = copy.deepcopy(node)
    if node.pop("nullable", False) and "type" in node:
        node["type"] = [node["type"], "null"]
    for key in ("properties",):
        if key in node:
            node[key] = {k: _draft4(v) for k, v in node[key].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            node[key] = _draft4(node[key])
    return node


def _spec_validator():
    schema = all_crds()["experiments.kubetune.io.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return jsonschema.Draft4Validator(_draft4(schema["properties"]["spec"]))


@pytest.mark.parametrize("example", ["quickstart.yaml", "sklearn-digits/experiment.yaml", "k8s/branin.yaml",
                                     "k8s/fractional-gpu.yaml", "gpu-digits/experiment.yaml",
                                     "ray/experiment.yaml"])
def test_examples_validate_against_the_crd(example):
    document = yaml.safe_load((EXAMPLES / example).read_text())
    _spec_validator().validate(document["spec"])


def test_crd_rejects_what_the_model_rejects():
    validator = _spec_validator()
    bad = manifest(objective={"metric": "loss", "direction": "up"})["spec"]
    assert not validator.is_valid(bad)
    assert not validator.is_valid(manifest(parallelism=0)["spec"])
    assert not validator.is_valid({k: v for k, v in manifest()["spec"].items() if k != "trialTemplate"})
    assert validator.is_valid(manifest()["spec"])


def test_a_trial_without_a_status_is_pending():
    """The one default of the CRDs: the API server gives a Trial that has no status yet (a create cannot set
    one) ``status.phase: Pending``, so a new Trial shows its phase without a status write."""
    schema = all_crds()[TRIAL_CRD]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema["properties"]["status"]["default"] == {"phase": "Pending"}
    assert "Pending" in schema["properties"]["status"]["properties"]["phase"]["enum"]
