"""The optimizers the quality benchmarks compare, behind one asynchronous ask/tell interface: ``ask()`` one
point, ``ask_batch(n)`` n points in one call (the operator's pass asks for every freed slot at once), and
``tell`` a finished trial's value.

Every method sees the trials still running when it is asked for the next point, the way each library
offers it: kubetune conditions on its pending trials itself (its ``tpe`` and ``cmaes`` through Optuna's
samplers, as RUNNING trials of the study it keeps); Optuna's samplers see RUNNING trials (TPE with
``constant_liar=True`` lies about them); scikit-optimize has no notion of running trials, so its constant
liar (``cl_min``) is applied by hand: a copy of the optimizer is told the running points with the best
value seen so far and asked for one point, which is exactly what its own ``ask(n_points, "cl_min")`` does
inside one call. Optuna has no batch ask: a batch is n asks in a row, each seeing the earlier ones as RUNNING.

Methods with kubetune settings the installed kubetune may not know (the GP's ``model``) are checked with
:func:`refusal` before a run, so a harness can skip them with one line instead of failing in a worker.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from pydantic import ValidationError

from kubetune import Optimizer

warnings.filterwarnings("ignore")


class KubetuneMethod:
    def __init__(self, parameters: list[dict], seed: int, algorithm: str, settings: dict | None = None):
        self.optimizer = Optimizer(parameters, direction="minimize", algorithm=algorithm, seed=seed,
                                   settings=settings)

    def ask(self) -> tuple[Any, dict]:
        (suggestion,) = self.optimizer.ask(1)
        return suggestion.id, suggestion.params

    def ask_batch(self, n: int) -> list[tuple[Any, dict]]:
        """One ``ask(n)``: fewer than n only once a finite space has nothing new left."""
        return [(suggestion.id, suggestion.params) for suggestion in self.optimizer.ask(n)]

    def tell(self, token: Any, params: dict, value: float) -> None:
        self.optimizer.tell(token, value)


class SkoptMethod:
    def __init__(self, parameters: list[dict], seed: int):
        from skopt.space import Categorical, Integer, Real

        self.names = [p["name"] for p in parameters]
        self.dimensions = []
        for p in parameters:
            if p["type"] == "double":
                prior = "log-uniform" if p.get("scale") == "log" else "uniform"
                self.dimensions.append(Real(p["min"], p["max"], prior=prior))
            elif p["type"] == "int":
                self.dimensions.append(Integer(p["min"], p["max"]))
            else:
                self.dimensions.append(Categorical(p["values"]))
        self.seed = seed
        self.n_initial = max(2, 2 * len(parameters) + 2)
        self.X: list[list] = []
        self.y: list[float] = []
        self.pending: dict[int, list] = {}
        self.counter = 0

    def _optimizer(self, random_state: int):
        from skopt import Optimizer as SkoptOptimizer

        return SkoptOptimizer(self.dimensions, base_estimator="GP", n_initial_points=self.n_initial,
                              random_state=random_state)

    def ask(self) -> tuple[Any, dict]:
        self.counter += 1
        optimizer = self._optimizer(self.seed * 100_003 + self.counter)
        lies = list(self.pending.values())
        points = self.X + lies
        if points:
            lie = min(self.y) if self.y else 0.0
            optimizer.tell(points, self.y + [lie] * len(lies))
        x = optimizer.ask()
        self.pending[self.counter] = x
        return self.counter, dict(zip(self.names, x, strict=True))

    def tell(self, token: Any, params: dict, value: float) -> None:
        self.X.append(self.pending.pop(token))
        self.y.append(value)

    def ask_batch(self, n: int) -> list[tuple[Any, dict]]:
        return [self.ask() for _ in range(n)]


class OptunaMethod:
    def __init__(self, parameters: list[dict], seed: int, sampler: str):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if sampler == "tpe":
            chosen = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
        else:
            import torch

            torch.set_num_threads(1)
            chosen = optuna.samplers.GPSampler(seed=seed)
        self.study = optuna.create_study(sampler=chosen, direction="minimize")
        self.distributions = {}
        # A discrete parameter is asked for as the index of its value among the sorted values: ordered, the way
        # kubetune encodes it (a categorical distribution would lose the order of a grid of numbers).
        self.discrete: dict[str, list] = {}
        for p in parameters:
            if p["type"] == "double":
                self.distributions[p["name"]] = optuna.distributions.FloatDistribution(
                    p["min"], p["max"], log=p.get("scale") == "log")
            elif p["type"] == "int":
                self.distributions[p["name"]] = optuna.distributions.IntDistribution(p["min"], p["max"])
            elif p["type"] == "discrete":
                self.discrete[p["name"]] = sorted(p["values"])
                self.distributions[p["name"]] = optuna.distributions.IntDistribution(0, len(p["values"]) - 1)
            else:
                self.distributions[p["name"]] = optuna.distributions.CategoricalDistribution(p["values"])

    def ask(self) -> tuple[Any, dict]:
        trial = self.study.ask(self.distributions)
        params = dict(trial.params)
        for name, values in self.discrete.items():
            params[name] = values[params[name]]
        return trial, params

    def ask_batch(self, n: int) -> list[tuple[Any, dict]]:
        return [self.ask() for _ in range(n)]

    def tell(self, token: Any, params: dict, value: float) -> None:
        self.study.tell(token, value)


# The GP's model choice (``auto``, the default, switches by scale): methods whose settings the installed
# kubetune refuses are skipped by the harnesses (see ``refusal``).
GP_MODELS = {"kubetune gp (exact)": {"model": "exact"}, "kubetune gp (scalable)": {"model": "scalable"}}

METHODS = {
    "kubetune gp": lambda parameters, seed: KubetuneMethod(parameters, seed, "gp"),
    "kubetune gp (exact)": lambda parameters, seed: KubetuneMethod(parameters, seed, "gp", GP_MODELS[
        "kubetune gp (exact)"]),
    "kubetune gp (scalable)": lambda parameters, seed: KubetuneMethod(parameters, seed, "gp", GP_MODELS[
        "kubetune gp (scalable)"]),
    "random": lambda parameters, seed: KubetuneMethod(parameters, seed, "random"),
    "sobol": lambda parameters, seed: KubetuneMethod(parameters, seed, "sobol"),
    "kubetune tpe": lambda parameters, seed: KubetuneMethod(parameters, seed, "tpe"),
    "kubetune cmaes": lambda parameters, seed: KubetuneMethod(parameters, seed, "cmaes"),
    "scikit-optimize cl_min": SkoptMethod,
    "Optuna TPE (constant liar)": lambda parameters, seed: OptunaMethod(parameters, seed, "tpe"),
    "Optuna GPSampler": lambda parameters, seed: OptunaMethod(parameters, seed, "gp"),
    # ablations behind the defaults (run with --methods): the lie, and the pessimistic prior while trials are pending
    "kubetune gp liar=min": lambda parameters, seed: KubetuneMethod(parameters, seed, "gp", {"liar": "min"}),
    "kubetune gp liar=mean": lambda parameters, seed: KubetuneMethod(parameters, seed, "gp", {"liar": "mean"}),
    "kubetune gp liar=max": lambda parameters, seed: KubetuneMethod(parameters, seed, "gp", {"liar": "max"}),
    "kubetune gp liar=believer": lambda parameters, seed: KubetuneMethod(parameters, seed, "gp",
                                                                         {"liar": "believer"}),
    "kubetune gp pendingPriorShift=0": lambda parameters, seed: KubetuneMethod(parameters, seed, "gp",
                                                                               {"pendingPriorShift": 0}),
    "kubetune tpe multivariate=false": lambda parameters, seed: KubetuneMethod(parameters, seed, "tpe",
                                                                               {"multivariate": False}),
    "kubetune cmaes popsize=8": lambda parameters, seed: KubetuneMethod(parameters, seed, "cmaes", {"popsize": 8}),
    "kubetune cmaes popsize=32": lambda parameters, seed: KubetuneMethod(parameters, seed, "cmaes",
                                                                         {"popsize": 32}),
}


def durations(seed: int, count: int) -> np.ndarray:
    """Simulated trial durations: uniform between 0.5 and 1.5 time units, so completions interleave."""
    return np.random.default_rng(10_000 + seed).uniform(0.5, 1.5, count)


def lognormal_durations(seed: int, count: int, sigma: float = 0.3) -> np.ndarray:
    """Simulated trial durations for the pass pattern: lognormal with median 1 time unit (the same sequence for
    every method at a given seed)."""
    return np.random.default_rng(20_000 + seed).lognormal(0.0, sigma, count)


def refusal(method: str) -> str | None:
    """Why the installed kubetune cannot run ``method`` (settings it refuses), in one line; None when it can."""
    settings = GP_MODELS.get(method)
    if settings is None:
        return None
    try:
        Optimizer([{"name": "x", "type": "double", "min": 0, "max": 1}], algorithm="gp", settings=settings)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return f"skipping {method}: the installed kubetune refuses algorithm.settings {settings} ({problems})"
    return None
