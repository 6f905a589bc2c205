"""Katib's ``parameters`` (``parameterType`` and ``feasibleSpace``) as kubetune parameters.

``double`` and ``int`` keep ``min`` and ``max``; a ``step`` makes them the ``discrete`` list of values Katib
would visit (``min``, ``min + step``, ... up to ``max``, computed on the decimal strings, so ``0.001`` to
``0.01`` by ``0.001`` is exactly ten values); ``distribution`` becomes ``scale`` (``logUniform``: log). A range
with ``min`` equal to ``max`` has one value, which kubetune writes into the trial template as a constant.
``discrete`` values are numbers, ``categorical`` values stay strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from kubetune.core.katib.notes import Context, Refused, decimal, items, known, mapping, number, text
from kubetune.core.parameters import PARAMETER_NAME

# A step that would list more values than this leaves the range continuous.
MAX_STEP_VALUES = 10_000
# distribution -> (scale, what kubetune cannot keep of it)
DISTRIBUTIONS: dict[str, tuple[str, str | None]] = {
    "": ("linear", None),
    "uniform": ("linear", None),
    "logUniform": ("log", None),
    "normal": ("linear", "a normal distribution centred on the range"),
    "logNormal": ("log", "a log-normal distribution centred on the range"),
}


def convert_parameters(ctx: Context) -> None:
    path = "spec.parameters"
    converted = []
    for index, item in enumerate(items(ctx.katib.get("parameters"), path)):
        where = f"{path}[{index}]"
        try:
            parameter = _parameter(ctx, mapping(item, where), where)
        except Refused as refused:
            ctx.notes.append(refused.note)
            continue
        if parameter is not None:
            converted.append(parameter)
    if not converted and not any(n.refusal for n in ctx.notes):
        ctx.refuse(path, "no parameter is left to search (kubetune needs at least one)")
    ctx.spec["parameters"] = converted


def _parameter(ctx: Context, katib: dict[str, Any], path: str) -> dict[str, Any] | None:
    katib_name = text(katib.get("name"), f"{path}.name")
    name = _kubetune_name(ctx, katib_name, path)
    if katib_name in ctx.constants:  # fixed by the algorithm (hyperband's resource)
        return None
    kind = katib.get("parameterType")
    if not known(kind, KINDS):
        raise Refused(f"{path}.parameterType", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    space = mapping(katib.get("feasibleSpace"), f"{path}.feasibleSpace")
    converted = KINDS[kind](ctx, katib_name, space, f"{path}.feasibleSpace")
    if converted is None:
        return None
    return {"name": name, **converted}


def _kubetune_name(ctx: Context, katib_name: str, path: str) -> str:
    """The parameter's name in kubetune: Katib's, unless kubetune does not take it (``--lr``)."""
    name = katib_name
    if not PARAMETER_NAME.match(name):
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", name.lstrip("-"))
        name = name if re.match(r"[A-Za-z_]", name) else f"p_{name}"
        ctx.warn(f"{path}.name", f"{katib_name!r} is not a kubetune parameter name (a letter or '_' first, then "
                 f"letters, digits, '_', '-', '.'): it becomes {name!r}, and the trial template's references follow")
    ctx.names[katib_name] = name
    return name


def _range(ctx: Context, name: str, space: dict[str, Any], path: str, integer: bool) -> dict[str, Any] | None:
    for bound in ("min", "max"):
        if space.get(bound) in (None, ""):
            raise Refused(f"{path}.{bound}", f"a {'int' if integer else 'double'} parameter needs {bound}")
    if space.get("list"):
        ctx.warn(f"{path}.list", "a range takes min and max; the list is left out (use parameterType discrete or "
                 "categorical for a list)")
    low, high = decimal(space["min"], f"{path}.min"), decimal(space["max"], f"{path}.max")
    if integer and (low != low.to_integral_value() or high != high.to_integral_value()):
        raise Refused(path, f"an int parameter's min and max must be whole numbers, got {space['min']} and "
                      f"{space['max']}")
    if low > high:
        raise Refused(path, f"max ({space['max']}) must not be below min ({space['min']})")
    scale = _scale(ctx, space, path)
    if low == high:
        value: int | float = int(low) if integer else number(space["min"], f"{path}.min")
        ctx.constants[name] = value
        ctx.warn(path, f"{name} has one value ({value}); kubetune ranges need max above min, so it is written "
                 "into the trial template as that constant instead of being a parameter")
        return None
    step = space.get("step")
    if step not in (None, "") and not (integer and decimal(step, f"{path}.step") == 1):
        return _stepped(ctx, low, high, decimal(step, f"{path}.step"), integer, scale, path)
    bounds = {"min": int(low), "max": int(high)} if integer else {"min": float(low), "max": float(high)}
    return {"type": "int" if integer else "double", **bounds, **({"scale": "log"} if scale == "log" else {})}


def _stepped(ctx: Context, low: Decimal, high: Decimal, step: Decimal, integer: bool, scale: str,
             path: str) -> dict[str, Any]:
    if step <= 0:
        raise Refused(f"{path}.step", f"must be above 0, got {step}")
    count = int((high - low) / step) + 1
    if count > MAX_STEP_VALUES:
        ctx.warn(f"{path}.step", f"would list {count} values; the range is searched continuously instead")
        bounds = {"min": int(low), "max": int(high)} if integer else {"min": float(low), "max": float(high)}
        return {"type": "int" if integer else "double", **bounds}
    values = [low + k * step for k in range(count)]
    if scale == "log":
        ctx.warn(f"{path}.distribution", "a stepped range is a list of values, which kubetune searches in order, "
                 "without a log scale")
    return {"type": "discrete", "values": [int(v) if integer else float(v) for v in values]}


def _scale(ctx: Context, space: dict[str, Any], path: str) -> str:
    distribution = space.get("distribution") or ""
    if not known(distribution, DISTRIBUTIONS):
        raise Refused(f"{path}.distribution", f"must be one of {', '.join(d for d in DISTRIBUTIONS if d)}, got "
                      f"{distribution!r}")
    scale, lost = DISTRIBUTIONS[distribution]
    if lost:
        on_log = " on a log scale" if scale == "log" else ""
        ctx.warn(f"{path}.distribution", f"kubetune searches a range uniformly{on_log} (scale: {scale}); {lost} is not "
                 "kept: narrow min and max to where the values are likely")
    return scale


def _list(space: dict[str, Any], path: str) -> list[Any]:
    values = items(space.get("list"), f"{path}.list")
    if not values:
        raise Refused(f"{path}.list", "needs at least one value")
    return values


def _discrete(ctx: Context, name: str, space: dict[str, Any], path: str) -> dict[str, Any]:
    values = [number(v, f"{path}.list[{i}]") for i, v in enumerate(_list(space, path))]
    return {"type": "discrete", "values": values}


def _categorical(ctx: Context, name: str, space: dict[str, Any], path: str) -> dict[str, Any]:
    values = [text(v, f"{path}.list[{i}]") for i, v in enumerate(_list(space, path))]
    return {"type": "categorical", "values": values}


KINDS: dict[str, Callable[[Context, str, dict[str, Any], str], dict[str, Any] | None]] = {
    "double": lambda ctx, name, space, path: _range(ctx, name, space, path, integer=False),
    "int": lambda ctx, name, space, path: _range(ctx, name, space, path, integer=True),
    "discrete": _discrete,
    "categorical": _categorical,
}
