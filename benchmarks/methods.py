"""The optimizers the quality benchmark compares, behind one asynchronous ask-one/tell interface.

Every method sees the trials still running when it is asked for the next point, the way each library
offers it: kubetune conditions on its pending trials itself (its ``tpe`` and ``cmaes`` through Optuna's
samplers, as RUNNING trials of the study it keeps); Optuna's samplers see RUNNING trials (TPE with
``constant_liar=True`` lies about them); scikit-optimize has no notion of running trials, so its constant
liar (``cl_min``) is applied by hand: a copy of the optimizer is told the running points with the best
value seen so far and asked for one point, which is exactly what its own ``ask(n_points, "cl_min")`` does
inside one call.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from kubetune import Optimizer

warnings.filterwarnings("ignore")


class KubetuneMethod:
    def __init__(self, parameters: list[dict], seed: int, algorithm: str, settings: dict | None = None):
        self.optimizer = Optimizer(parameters, direction="minimize", algorithm=algorithm, seed=seed,
                                   settings=settings)

    def ask(self) -> tuple[Any, dict]:
        (suggestion,) = self.optimizer.ask(1)
        return suggestion.id, suggestion.params

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
        for p in parameters:
            if p["type"] == "double":
                self.distributions[p["name"]] = optuna.distributions.FloatDistribution(
                    p["min"], p["max"], log=p.get("scale") == "log")
            elif p["type"] == "int":
                self.distributions[p["name"]] = optuna.distributions.IntDistribution(p["min"], p["max"])
            else:
                self.distributions[p["name"]] = optuna.distributions.CategoricalDistribution(p["values"])

    def ask(self) -> tuple[Any, dict]:
        trial = self.study.ask(self.distributions)
        return trial, dict(trial.params)

    def tell(self, token: Any, params: dict, value: float) -> None:
        self.study.tell(token, value)


METHODS = {
    "kubetune gp": lambda parameters, seed: KubetuneMethod(parameters, seed, "gp"),
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
