"""The tuners the early-stopping benchmark compares, behind one interface the simulated workers drive:
``ask() -> (token, params)``, ``report(token, step, value) -> stop?`` after every epoch but the last, and
``complete(token, value)`` when a trial reaches the last epoch.

- kubetune: :class:`kubetune.core.engine.Optimizer` with the core's rules (``observe`` records a report and
  says when the rule judges, ``judge`` decides), exactly as the runner and the operator call them. A stopped
  trial is told its last value (``tell``) or given up on (``fail``), the two choices
  :data:`kubetune.core.lifecycle.TELL_EARLY_STOPPED` picks between.
- Optuna: ``study.ask()``, ``trial.report(value, step)``, ``trial.should_prune()`` and ``study.tell`` with
  Optuna's RandomSampler and its MedianPruner, SuccessiveHalvingPruner and HyperbandPruner.
- Ray Tune: ``AsyncHyperBandScheduler`` (``ASHAScheduler``) driven directly, the way Tune's controller calls
  it (``on_trial_add``, ``on_trial_result`` after every result, ``on_trial_complete`` when a trial ends),
  with light trial stand-ins; the points come from kubetune's random search with the same seed, so Ray's
  rows differ from kubetune's ASHA rows by the rule alone.

Every rule gets the same resource bounds: rungs from 1 epoch, reduction factor 3, 27 epochs at most.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.learning_curves import MAX_EPOCHS
from kubetune import Optimizer
from kubetune.core.stopping import Progress, build_rule, judge, observe

warnings.filterwarnings("ignore")

MEDIAN_SETTINGS = {"minTrialsRequired": 3, "startStep": 4}  # kubetune's defaults, given to Optuna's too
ASHA_SETTINGS = {"minResource": 1, "maxResource": MAX_EPOCHS, "reductionFactor": 3}


class KubetuneMethod:
    def __init__(self, parameters: list[dict], seed: int, algorithm: str = "random", rule: str | None = None,
                 tell_stopped: bool = True):
        self.optimizer = Optimizer(parameters, direction="minimize", algorithm=algorithm, seed=seed)
        self.name = rule
        self.rule = build_rule(rule, ASHA_SETTINGS if rule == "asha" else MEDIAN_SETTINGS) if rule else None
        self.tell_stopped = tell_stopped
        self.progress: dict[str, Progress] = {}
        self.completed: set[str] = set()

    def ask(self) -> tuple[Any, dict]:
        (suggestion,) = self.optimizer.ask(1)
        self.progress[suggestion.id] = Progress()
        return suggestion.id, suggestion.params

    def report(self, token: Any, step: int, value: float) -> bool:
        if self.rule is None or self.name is None:
            return False
        progress = self.progress[token]
        if not observe(progress, step, value, False, self.rule):
            return False
        if not judge(self.name, self.rule, token, self.progress, self.completed, False):
            return False
        if self.tell_stopped:
            self.optimizer.tell(token, value)
        else:
            self.optimizer.fail(token)
        return True

    def complete(self, token: Any, value: float) -> None:
        if self.rule is not None:
            observe(self.progress[token], MAX_EPOCHS, value, False, self.rule)
        self.completed.add(token)
        self.optimizer.tell(token, value)


class OptunaMethod:
    def __init__(self, parameters: list[dict], seed: int, pruner: str):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        pruners: dict[str, Callable[[], Any]] = {
            "median": lambda: optuna.pruners.MedianPruner(
                n_startup_trials=MEDIAN_SETTINGS["minTrialsRequired"], n_warmup_steps=MEDIAN_SETTINGS["startStep"]),
            "sha": lambda: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
            "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=MAX_EPOCHS,
                                                                reduction_factor=3),
        }
        self.pruned = optuna.trial.TrialState.PRUNED
        self.study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed),
                                         pruner=pruners[pruner](), direction="minimize")
        self.distributions = {}
        for p in parameters:
            if p["type"] == "double":
                self.distributions[p["name"]] = optuna.distributions.FloatDistribution(
                    p["min"], p["max"], log=p.get("scale") == "log")
            else:
                self.distributions[p["name"]] = optuna.distributions.CategoricalDistribution(p["values"])

    def ask(self) -> tuple[Any, dict]:
        trial = self.study.ask(self.distributions)
        return trial, dict(trial.params)

    def report(self, token: Any, step: int, value: float) -> bool:
        token.report(value, step)
        if not token.should_prune():
            return False
        self.study.tell(token, state=self.pruned)
        return True

    def complete(self, token: Any, value: float) -> None:
        token.report(value, MAX_EPOCHS)
        self.study.tell(token, value)


@dataclass(frozen=True)
class _RayTrial:
    """What ``AsyncHyperBandScheduler`` reads of a trial: its id."""

    trial_id: str


class RayAshaMethod:
    def __init__(self, parameters: list[dict], seed: int):
        from ray.tune.schedulers import ASHAScheduler, TrialScheduler

        self.stop = TrialScheduler.STOP
        self.scheduler = ASHAScheduler(time_attr="training_iteration", metric="loss", mode="min", max_t=MAX_EPOCHS,
                                       grace_period=ASHA_SETTINGS["minResource"],
                                       reduction_factor=ASHA_SETTINGS["reductionFactor"])
        self.optimizer = Optimizer(parameters, direction="minimize", algorithm="random", seed=seed)

    def ask(self) -> tuple[Any, dict]:
        (suggestion,) = self.optimizer.ask(1)
        trial = _RayTrial(suggestion.id)
        self.scheduler.on_trial_add(None, trial)  # type: ignore[arg-type]
        return trial, suggestion.params

    def report(self, token: Any, step: int, value: float) -> bool:
        result = {"training_iteration": step, "loss": value}
        if self.scheduler.on_trial_result(None, token, result) != self.stop:  # type: ignore[arg-type]
            return False
        self.scheduler.on_trial_complete(None, token, result)  # type: ignore[arg-type]
        return True

    def complete(self, token: Any, value: float) -> None:
        result = {"training_iteration": MAX_EPOCHS, "loss": value}
        self.scheduler.on_trial_result(None, token, result)  # type: ignore[arg-type]
        self.scheduler.on_trial_complete(None, token, result)  # type: ignore[arg-type]


STOPPING_METHODS: dict[str, Callable[[list[dict], int], Any]] = {
    "kubetune random, no stopping": lambda p, s: KubetuneMethod(p, s),
    "kubetune random + median": lambda p, s: KubetuneMethod(p, s, rule="median"),
    "kubetune random + asha": lambda p, s: KubetuneMethod(p, s, rule="asha", tell_stopped=True),
    "kubetune random + asha, fail stopped": lambda p, s: KubetuneMethod(p, s, rule="asha", tell_stopped=False),
    "kubetune gp + asha": lambda p, s: KubetuneMethod(p, s, algorithm="gp", rule="asha", tell_stopped=True),
    "kubetune gp + asha, fail stopped": lambda p, s: KubetuneMethod(p, s, algorithm="gp", rule="asha",
                                                                    tell_stopped=False),
    "Optuna random + MedianPruner": lambda p, s: OptunaMethod(p, s, "median"),
    "Optuna random + SuccessiveHalvingPruner": lambda p, s: OptunaMethod(p, s, "sha"),
    "Optuna random + HyperbandPruner": lambda p, s: OptunaMethod(p, s, "hyperband"),
    "Ray Tune ASHAScheduler (random points)": RayAshaMethod,
}
