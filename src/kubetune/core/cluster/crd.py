"""CustomResourceDefinitions generated from the pydantic models, so the cluster validates exactly what the
CLI and the operator accept.

pydantic writes JSON Schema; a CRD needs a *structural* OpenAPI v3 schema. :func:`structural` converts:
references are inlined, ``Optional`` becomes ``nullable``, ``Literal`` becomes an ``enum``, ``gt`` becomes
``exclusiveMinimum``, and free-form parts (the embedded PodSpec, algorithm settings, parameter values of
mixed types) keep their unknown fields with ``x-kubernetes-preserve-unknown-fields``, which is used nowhere
else. Titles, defaults (pydantic applies them) and ``additionalProperties: false`` (the API server prunes
unknown fields instead) are dropped, but for one: a Trial's ``status`` defaults to ``{phase: Pending}``, which
the API server fills in wherever a Trial has no status yet (a create cannot set a status subresource), so a new
Trial shows its phase at once without a status write. ``kubetune crds`` writes the result to ``crds/``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from kubetune.core.cluster.resources import ExperimentStatus, TrialSpec, TrialStatus
from kubetune.core.lifecycle import TrialState
from kubetune.core.spec import ExperimentSpec

GROUP = "kubetune.io"
VERSION = "v1alpha1"
PRESERVE = "x-kubernetes-preserve-unknown-fields"
_JSON_TYPES = {"string", "integer", "number", "boolean", "object", "array"}


def structural(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> dict[str, Any]:
    """A structural OpenAPI v3 schema for one pydantic JSON Schema node."""
    defs = schema.get("$defs", {}) if defs is None else defs
    if "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return structural(merged, defs)
    variants = schema.get("anyOf") or schema.get("oneOf")
    if variants:
        return _union(schema, variants, defs)
    out: dict[str, Any] = _describe(schema)
    kind = schema.get("type")
    if "const" in schema or "enum" in schema:
        out.update(type=kind or "string", enum=[schema["const"]] if "const" in schema else list(schema["enum"]))
        return out
    if kind is None or kind not in _JSON_TYPES:
        return {PRESERVE: True, **out}
    out["type"] = kind
    out.update(_TYPED.get(kind, _scalar)(schema, defs))
    return out


def _union(schema: dict[str, Any], variants: list[dict[str, Any]], defs: dict[str, Any]) -> dict[str, Any]:
    """``anyOf``/``oneOf``: one type (nullable when ``null`` is among them), the merged properties of a union
    of objects, int-or-string, or any value."""
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "oneOf")}
    concrete = [v for v in variants if v.get("type") != "null"]
    objects = [_resolved(v, defs) for v in concrete]
    union: dict[str, Any]
    if len(concrete) == 1:
        union = structural({**concrete[0], **rest}, defs)
    elif all(o.get("type") == "object" and o.get("properties") for o in objects):
        union = _merged_objects(objects, rest, defs)  # a discriminated union (the parameter kinds)
    elif {v.get("type") for v in concrete} == {"string", "integer"}:
        union = {"x-kubernetes-int-or-string": True, **_describe(rest)}
    else:  # a union of scalar types (a quantity, a categorical value): any JSON value
        union = {PRESERVE: True, **_describe(rest)}
    if len(concrete) < len(variants):
        union["nullable"] = True
    return union


def _object(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """An object's properties, or the schema of a map's values (any value when they have no type)."""
    properties = schema.get("properties")
    if properties:
        out: dict[str, Any] = {"properties": {name: structural(sub, defs) for name, sub in properties.items()}}
        if schema.get("required"):
            out["required"] = list(schema["required"])
        return out
    extra = schema.get("additionalProperties")
    values = structural(extra, defs) if isinstance(extra, dict) and extra else {}
    return {"additionalProperties": values} if "type" in values else {PRESERVE: True}


def _array(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    out = {"items": structural(schema.get("items", {}), defs)}
    out.update({key: schema[key] for key in ("minItems", "maxItems") if key in schema})
    return out


def _scalar(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A scalar's bounds and format; JSON Schema's numeric exclusive bounds become OpenAPI v3's boolean ones."""
    kept = ("minimum", "maximum", "pattern", "minLength", "maxLength", "format")
    out: dict[str, Any] = {key: schema[key] for key in kept if key in schema}
    for key, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if key in schema:
            out[bound] = schema[key]
            out[key] = True
    return out


_TYPED: dict[str, Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]] = {"object": _object, "array": _array}


def _resolved(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = {**defs[schema["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _merged_objects(objects: list[dict[str, Any]], rest: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """One object schema for a union of object schemas (a structural schema has no ``oneOf`` of different
    properties): every member's properties, enums joined, an integer and a number as a number, other
    disagreements as any value; required what every member requires. The model checks the rest."""
    candidates: dict[str, list[dict[str, Any]]] = {}
    for member in objects:
        for name, sub in member["properties"].items():
            candidates.setdefault(name, []).append(structural(sub, defs))
    required = [name for name in objects[0].get("required", [])
                if all(name in o.get("required", []) for o in objects)]
    description = _describe(rest) or {"description": "One of: " + ", ".join(o.get("title", "") for o in objects)}
    out: dict[str, Any] = {**description, "type": "object",
                           "properties": {name: _joined(schemas) for name, schemas in candidates.items()}}
    if required:
        out["required"] = required
    return out


def _joined(schemas: list[dict[str, Any]]) -> dict[str, Any]:
    first = schemas[0]
    if all(s == first for s in schemas):
        return first
    types = {s.get("type") for s in schemas}
    if len(types) == 1 and all("enum" in s for s in schemas):
        values = [v for s in schemas for v in s["enum"]]
        return {**first, "enum": list(dict.fromkeys(values))}
    if types == {"integer", "number"}:
        return next(s for s in schemas if s["type"] == "number")
    return {PRESERVE: True, **_describe(first)}


def _describe(schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": schema["description"]} if schema.get("description") else {}


def _model_schema(model: type[BaseModel]) -> dict[str, Any]:
    return structural(model.model_json_schema(by_alias=True, mode="validation"))


def _crd(kind: str, plural: str, short: list[str], spec: type[BaseModel], status: type[BaseModel],
         columns: list[dict[str, Any]], description: str, status_default: dict[str, Any] | None = None
         ) -> dict[str, Any]:
    status_schema = _model_schema(status)
    if status_default is not None:
        status_schema["default"] = status_default
    schema = {
        "type": "object",
        "description": description,
        "properties": {"spec": _model_schema(spec), "status": status_schema},
        "required": ["spec"],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower(),
                      "shortNames": short, "categories": ["kubetune"]},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "schema": {"openAPIV3Schema": schema},
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
            }],
        },
    }


def experiment_crd() -> dict[str, Any]:
    columns: list[dict[str, Any]] = [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Reason", "type": "string", "jsonPath": ".status.reason"},
        {"name": "Pending", "type": "integer", "jsonPath": ".status.trials.pending"},
        {"name": "Running", "type": "integer", "jsonPath": ".status.trials.running"},
        {"name": "Succeeded", "type": "integer", "jsonPath": ".status.trials.succeeded"},
        {"name": "Failed", "type": "integer", "jsonPath": ".status.trials.failed"},
        {"name": "Stopped", "type": "integer", "jsonPath": ".status.trials.earlyStopped", "priority": 1},
        {"name": "Best", "type": "number", "jsonPath": ".status.best.value"},
        {"name": "Best Trial", "type": "string", "jsonPath": ".status.best.trial"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
    ]
    return _crd("Experiment", "experiments", ["kexp"], ExperimentSpec, ExperimentStatus, columns,
                "A hyperparameter search: a space, an objective and a trial pod template.")


def trial_crd() -> dict[str, Any]:
    columns: list[dict[str, Any]] = [
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Reason", "type": "string", "jsonPath": ".status.reason"},
        {"name": "Value", "type": "number", "jsonPath": ".status.value"},
        {"name": "Params", "type": "string", "jsonPath": ".spec.params"},
        {"name": "Experiment", "type": "string", "jsonPath": ".spec.experiment"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
        {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1},
    ]
    return _crd("Trial", "trials", ["ktrial"], TrialSpec, TrialStatus, columns,
                "One evaluation of an Experiment's objective at one parameter assignment.",
                status_default={"phase": str(TrialState.PENDING)})


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD."""
    return {"experiments.kubetune.io.yaml": experiment_crd(), "trials.kubetune.io.yaml": trial_crd()}
