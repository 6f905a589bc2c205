"""Katib's ``algorithm`` and ``earlyStopping`` as kubetune's ``algorithm`` and ``earlyStopping``.

Each Katib algorithm is a row of :data:`ALGORITHMS`: the kubetune algorithm it becomes, fixed settings, and a
table of its Katib settings (``algorithmSettings``), each turned into a kubetune setting or explained.
``hyperband`` becomes random search with ASHA early stopping; the neural-architecture searches and
population-based training are refused with the reason (:data:`REFUSED`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubetune.core.katib.notes import Context, Refused, decimal, items, mapping, number, settings_of, text, whole

# A Katib setting: (context, value, path) -> the kubetune settings it gives (often none, with a note).
Setting = Callable[[Context, str, str], dict[str, Any]]


def _seed(ctx: Context, value: str, path: str) -> dict[str, Any]:
    ctx.spec["seed"] = whole(value, path, minimum=0)
    return {}


def _to(name: str, convert: Callable[[str, str], Any]) -> Setting:
    return lambda ctx, value, path: {name: convert(value, path)}


def _dropped(reason: str) -> Setting:
    def note(ctx: Context, value: str, path: str) -> dict[str, Any]:
        ctx.warn(path, reason)
        return {}

    return note


def _initial_trials(ctx: Context, value: str, path: str) -> dict[str, Any]:
    count = whole(value, path, minimum=0)
    if count < 2:
        ctx.warn(path, f"kubetune's gp starts from at least 2 Sobol trials; {count} becomes 2")
    return {"initialTrials": max(count, 2)}


# scikit-optimize's acquisition functions -> kubetune's, and what is lost on the way.
ACQUISITIONS: dict[str, tuple[str, str | None]] = {
    "EI": ("ei", None), "PI": ("pi", None), "LCB": ("ucb", None),
    "gp_hedge": ("ei", "kubetune does not mix acquisition functions (gp_hedge); it uses expected improvement"),
    "EIps": ("ei", "per-second expected improvement needs trial durations kubetune does not model; it uses ei"),
    "PIps": ("pi", "per-second probability of improvement needs trial durations kubetune does not model; it uses pi"),
}


def _acquisition(ctx: Context, value: str, path: str) -> dict[str, Any]:
    if value not in ACQUISITIONS:
        raise Refused(path, f"must be one of {', '.join(ACQUISITIONS)}, got {value!r}")
    acquisition, lost = ACQUISITIONS[value]
    if lost:
        ctx.warn(path, lost)
    return {"acquisition": acquisition}


def _estimator(ctx: Context, value: str, path: str) -> dict[str, Any]:
    if value != "GP":
        ctx.warn(path, f"kubetune's gp models the objective with a Gaussian process; scikit-optimize's {value} model "
                 "has no counterpart (tpe is the other model-based search)")
    return {}


RANDOM_STATE: dict[str, Setting] = {"random_state": _seed}


@dataclass(frozen=True)
class Mapping:
    """How one Katib algorithm becomes a kubetune algorithm."""

    name: str
    settings: dict[str, Setting] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    extra: Callable[[Context, dict[str, tuple[str, str]], str], None] | None = None  # whole-algorithm work


def _hyperband(ctx: Context, settings: dict[str, tuple[str, str]], path: str) -> None:
    """Hyperband's brackets as asynchronous successive halving: random search, ASHA early stopping, and the
    resource parameter fixed at the largest budget."""
    for required in ("r_l", "resource_name"):
        if required not in settings:
            raise Refused(f"{path}.algorithmSettings", f"hyperband needs the setting {required}")
    largest = float(decimal(settings["r_l"][0], settings["r_l"][1]))
    eta = float(decimal(settings["eta"][0], settings["eta"][1])) if "eta" in settings else 3.0
    if largest <= 0 or eta <= 1:
        raise Refused(f"{path}.algorithmSettings", f"hyperband needs r_l above 0 and eta above 1, got r_l {largest} "
                      f"and eta {eta}")
    resource = settings["resource_name"][0]
    parameters = {p["name"]: p for p in items(ctx.katib.get("parameters"), "spec.parameters")
                  if isinstance(p, dict) and isinstance(p.get("name"), str)}
    if resource not in parameters:
        raise Refused(settings["resource_name"][1], f"resource_name {resource!r} must name a parameter")
    brackets = int(math.floor(math.log(largest) / math.log(eta) + 1e-9))
    smallest = largest / eta**brackets
    is_int = parameters[resource].get("parameterType") == "int"
    ctx.constants[resource] = int(largest) if is_int else largest
    rungs = {"minResource": _plain(smallest), "maxResource": _plain(largest), "reductionFactor": _plain(eta)}
    stop = {"rule": "asha", "resource": "step", "settings": rungs}
    ctx.spec["earlyStopping"] = stop
    ctx.warn(f"{path}.algorithmName", f"hyperband runs as asynchronous successive halving (ASHA, Li et al. 2020): "
             f"random search with earlyStopping asha (minResource {_plain(smallest)}, maxResource {_plain(largest)}, "
             f"reductionFactor {_plain(eta)}). Every trial gets {resource} = {ctx.constants[resource]} and is "
             "stopped at a rung when its objective is not in the best 1/reductionFactor there, so it must report "
             "the objective as it trains with its progress as step (kubetune.report(step=epoch, ...) or a line "
             "'step=3 accuracy=0.91'); Katib instead ran the best configurations again with a larger budget")


def _plain(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


# Katib's bookkeeping settings of a running hyperband experiment (read back from its status).
HYPERBAND_STATE = ("s_max", "b_l", "r", "n", "current_s", "current_i", "evaluating_trials")

ALGORITHMS: dict[str, Mapping] = {
    "random": Mapping("random", RANDOM_STATE),
    "grid": Mapping("grid", RANDOM_STATE),
    "sobol": Mapping("sobol", RANDOM_STATE),
    "bayesianoptimization": Mapping("gp", {
        **RANDOM_STATE,
        "base_estimator": _estimator,
        "n_initial_points": _initial_trials,
        "acq_func": _acquisition,
        "acq_optimizer": _dropped("kubetune's gp maximizes the acquisition over a Sobol pool and perturbations of "
                                  "the best points, polished with L-BFGS-B; it has no such choice"),
    }),
    "tpe": Mapping("tpe", {  # Katib's tpe is hyperopt's: one parameter at a time
        **RANDOM_STATE,
        "n_EI_candidates": _to("eiCandidates", lambda value, path: whole(value, path, minimum=1)),
        "prior_weight": _to("priorWeight", lambda value, path: float(decimal(value, path))),
        "gamma": _dropped("hyperopt's gamma (its split of good and bad trials) has no Optuna counterpart; kubetune "
                          "uses Optuna's split (the best 10%, at most 25 trials)"),
    }, fixed={"multivariate": False}),
    "multivariate-tpe": Mapping("tpe", {
        **RANDOM_STATE,
        **{name: _to("startupTrials", lambda value, path: whole(value, path, minimum=0))
           for name in ("n_startup_trials", "startup_trials")},
        **{name: _to("eiCandidates", lambda value, path: whole(value, path, minimum=1))
           for name in ("n_ei_candidates", "ei_candidates")},
    }, fixed={"multivariate": True}),
    "cmaes": Mapping("cmaes", {
        **RANDOM_STATE,
        "restart_strategy": _dropped("Optuna's CMA-ES no longer restarts with a growing population (IPOP/BIPOP "
                                     "moved to OptunaHub); kubetune runs one CMA-ES"),
        "sigma": _dropped("kubetune starts CMA-ES with Optuna's step size, a sixth of each parameter's range"),
    }),
    "hyperband": Mapping("random", {
        "r_l": lambda *_: {}, "eta": lambda *_: {}, "resource_name": lambda *_: {},
        **{name: lambda *_: {} for name in HYPERBAND_STATE},
    }, extra=_hyperband),
}
REFUSED: dict[str, str] = {
    "enas": "ENAS is a neural-architecture search: a controller trains and shares weights across trials, which "
            "kubetune's independent trials cannot do",
    "darts": "DARTS is a neural-architecture search run as one differentiable training job, not a search over "
             "trials; run that job directly",
    "pbt": "population-based training needs trials that resume from one another's checkpoints; kubetune's trials "
           "are independent: use gp, tpe or random with earlyStopping asha",
}


def convert_algorithm(ctx: Context) -> None:
    path = "spec.algorithm"
    algorithm = mapping(ctx.katib.get("algorithm"), path)
    name = text(algorithm.get("algorithmName", ""), f"{path}.algorithmName")
    if name in REFUSED:
        raise Refused(f"{path}.algorithmName", f"{name} cannot be converted: {REFUSED[name]}", final=True)
    if name not in ALGORITHMS:
        known = ", ".join([*ALGORITHMS, *REFUSED])
        raise Refused(f"{path}.algorithmName", f"unknown Katib algorithm {name!r} (Katib's are {known})", final=True)
    row = ALGORITHMS[name]
    settings = settings_of(algorithm.get("algorithmSettings"), f"{path}.algorithmSettings")
    converted: dict[str, Any] = dict(row.fixed)
    for setting, (value, where) in settings.items():
        if setting not in row.settings:
            ctx.warn(where, f"{setting!r} is not a setting of Katib's {name}; left out")
            continue
        try:
            converted.update(row.settings[setting](ctx, value, where))
        except Refused as refused:
            ctx.notes.append(refused.note)
    if row.extra is not None:
        row.extra(ctx, settings, path)
    ctx.spec["algorithm"] = {"name": row.name, **({"settings": converted} if converted else {})}


# -- early stopping -------------------------------------------------------------------------------------------
MEDIAN_SETTINGS = {"min_trials_required": "minTrialsRequired", "start_step": "startStep"}


def convert_early_stopping(ctx: Context) -> None:
    path = "spec.earlyStopping"
    stopping = mapping(ctx.katib.get("earlyStopping"), path)
    if not stopping:
        return
    name = stopping.get("algorithmName")
    if name != "medianstop":
        raise Refused(f"{path}.algorithmName", f"Katib's early-stopping algorithm is medianstop, got {name!r}")
    if "earlyStopping" in ctx.spec:
        ctx.warn(path, "hyperband already stops trials early (asha); medianstop is left out")
        return
    converted: dict[str, Any] = {}
    for setting, (value, where) in settings_of(stopping.get("algorithmSettings"), f"{path}.algorithmSettings").items():
        if setting not in MEDIAN_SETTINGS:
            ctx.warn(where, f"{setting!r} is not a setting of medianstop; left out")
            continue
        converted[MEDIAN_SETTINGS[setting]] = number(value, where)
    ctx.spec["earlyStopping"] = {"rule": "median", "resource": "step", **({"settings": converted} if converted else {})}
    ctx.warn(f"{path}.algorithmName", "medianstop becomes the median rule with Katib's semantics, but kubetune "
             "reads a trial's progress from a field reported with the objective rather than counting reports: "
             "print the step on the same line as the value ('step=3 accuracy=0.91') or call "
             "kubetune.report(step=3, accuracy=0.91)")
