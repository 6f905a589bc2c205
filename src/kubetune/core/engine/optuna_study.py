"""Strategies built on an Optuna sampler (``tpe``, ``cmaes``), driven through Optuna's ask/tell interface
rather than written again.

The strategy keeps an in-memory Optuna study that mirrors the optimizer's trials. Each ``propose(n)`` first
brings the study up to date with the :class:`History` (a completed trial is told its loss, a pending one is
a RUNNING trial, a failed one is told FAIL; trials the study has never seen, as after a restart, are added
with their state), then asks the sampler for ``n`` trials one at a time. Each asked trial stays RUNNING, so
the next ask of the batch, and every later one, sees it as pending: that is how the sampler's own handling of
running trials (TPE's constant liar, CMA-ES generations) applies. Nothing lives only here: a rebuilt
optimizer (``Optimizer(..., trials=records)``) rebuilds the study from the trials.

Parameters map to Optuna distributions one kind at a time (:data:`CODECS`): doubles and ints keep their range
and log scale, discrete values become the index of the value among the sorted values (an ordered int), and
categorical values the index among the values (Optuna's categorical). An int range wider than a float holds
exactly is searched on kubetune's own unit-cube column instead.

Optuna is imported on first use (it is the ``optuna`` extra), its samplers are seeded from the optimizer's
generator, and its per-trial INFO log lines are turned off: kubetune reports trials itself.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from kubetune.core.engine.base import History
from kubetune.core.parameters import CategoricalParameter, DiscreteParameter, DoubleParameter, IntParameter
from kubetune.core.space import Params, Space

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.samplers import BaseSampler
    from optuna.study import Study

OPTUNA_EXTRA = "pip install 'kubetune[optuna]'"
# Asks beyond ``n`` that one propose may spend on assignments already taken, before it returns fewer.
EXTRA_ASKS = 8
# Int ranges up to this width, with bounds a float holds exactly, are Optuna int distributions.
EXACT_FLOAT_INT = 2**53


def missing_packages(packages: Iterable[str]) -> list[str]:
    """Those of ``packages`` that are not installed (found without importing them)."""
    return [name for name in packages if not _installed(name)]


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # a finder that refuses the name, or a broken package
        return False


def load_optuna() -> ModuleType:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def quietly(make: Callable[[], Any]) -> Any:
    """``make()`` without the experimental-feature and future warnings Optuna gives for the options used."""
    optuna = load_optuna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return make()


# -- parameters <-> Optuna distributions ---------------------------------------------------------------------
class _Range:
    """double and int: the same range and scale; an int too wide for a float is a unit-cube column."""

    def distribution(self, parameter: Any) -> BaseDistribution:
        from optuna.distributions import FloatDistribution, IntDistribution

        log = parameter.scale == "log"
        if isinstance(parameter, DoubleParameter):
            return FloatDistribution(float(parameter.min), float(parameter.max), log=log)
        if _exact_int_range(parameter):
            return IntDistribution(int(parameter.min), int(parameter.max), log=log)
        return FloatDistribution(0.0, 1.0)

    def to_optuna(self, parameter: Any, value: Any) -> Any:
        if isinstance(parameter, IntParameter) and not _exact_int_range(parameter):
            return float(np.clip(parameter.encode(value)[0], 0.0, 1.0))
        return value

    def from_optuna(self, parameter: Any, value: Any) -> Any:
        if isinstance(parameter, IntParameter) and not _exact_int_range(parameter):
            return parameter.decode(np.array([[float(value)]]))[0]
        if isinstance(parameter, IntParameter):
            return min(max(int(value), parameter.min), parameter.max)
        return min(max(float(value), float(parameter.min)), float(parameter.max))


class _Index:
    """discrete and categorical: the index of the value (ordered for discrete, unordered for categorical)."""

    def distribution(self, parameter: Any) -> BaseDistribution:
        from optuna.distributions import CategoricalDistribution, IntDistribution

        count = len(parameter.values)
        if isinstance(parameter, DiscreteParameter):
            return IntDistribution(0, count - 1)
        return CategoricalDistribution(tuple(range(count)))

    def to_optuna(self, parameter: Any, value: Any) -> Any:
        return parameter.index_of(value)

    def from_optuna(self, parameter: Any, value: Any) -> Any:
        return parameter.choices()[int(value)]


CODECS: dict[type, _Range | _Index] = {
    DoubleParameter: _Range(), IntParameter: _Range(), DiscreteParameter: _Index(), CategoricalParameter: _Index(),
}


def _exact_int_range(parameter: IntParameter) -> bool:
    return max(abs(parameter.min), abs(parameter.max), parameter.max - parameter.min) < EXACT_FLOAT_INT


@dataclass
class _Known:
    """A trial of the study: its Optuna number and whether it is still RUNNING there."""

    number: int
    running: bool


# ``make_sampler(seed, completed)``: the sampler, seeded; ``completed`` are the trials completed before the
# strategy's first proposal as (Optuna params, loss), which is more than nothing only after a restart.
SamplerFactory = Callable[[int, dict[str, "BaseDistribution"], list[tuple[dict[str, Any], float]]], "BaseSampler"]


class OptunaStrategy:
    """A :class:`~kubetune.core.engine.base.Strategy` that asks an Optuna sampler."""

    reads_observations = True

    def __init__(self, space: Space, make_sampler: SamplerFactory):
        self.space = space
        self._parameters = [d.parameter for d in space.dimensions]
        self._make_sampler = make_sampler
        self._study: Study | None = None
        self._known: dict[tuple, _Known] = {}
        self._count = 0  # trials in the study: Optuna numbers them in order
        self._distributions: dict[str, BaseDistribution] = {}

    def propose(self, n: int, history: History, rng: np.random.Generator) -> list[Params]:
        study = self._study or self._open(history, rng)
        self._sync(study, history)
        chosen: list[Params] = []
        keys: set[tuple] = set()
        for _ in range(n + EXTRA_ASKS):
            if len(chosen) == n:
                break
            trial = quietly(lambda: study.ask(self._distributions))
            self._count = trial.number + 1
            params = self._from_optuna(trial.params)
            key = self.space.key(params)
            if key in keys or history.is_taken(params):
                self._fail(study, trial.number)  # a repeat is never run, and the sampler knows it
                continue
            keys.add(key)
            self._known[key] = _Known(trial.number, running=True)
            chosen.append(params)
        return chosen

    # -- the study ---------------------------------------------------------------------------------------------
    def _open(self, history: History, rng: np.random.Generator) -> Study:
        optuna = load_optuna()
        self._distributions = {p.name: CODECS[type(p)].distribution(p) for p in self._parameters}
        # Seeded from the optimizer's generator; the number of trials so far is mixed in, so that a rebuilt
        # optimizer does not replay the draws the trials before it already used.
        seed = int(np.random.SeedSequence([int(rng.integers(2**32)), len(history.taken_keys)]).generate_state(1)[0])
        completed = [(self._to_optuna(p), float(loss))
                     for p, loss in zip(self.space.decode_many(history.completed_x), history.losses, strict=True)]
        sampler = quietly(lambda: self._make_sampler(seed, dict(self._distributions), completed))
        self._study = quietly(lambda: optuna.create_study(sampler=sampler, direction="minimize",
                                                          study_name="kubetune"))
        return self._study

    def _sync(self, study: Study, history: History) -> None:
        """Brings the study up to date with the optimizer's trials."""
        from optuna.trial import TrialState

        completed_x, losses = history.completed_x, history.losses
        for row, key in enumerate(history.completed_keys):
            known = self._known.get(key)
            if known is None:
                self._add(study, key, self.space.decode(completed_x[row]), TrialState.COMPLETE, float(losses[row]))
            elif known.running:
                self._tell(study, known.number, float(losses[row]))
                known.running = False
        pending = set(history.pending_keys)
        pending_x = history.pending_x
        for row, key in enumerate(history.pending_keys):
            if key not in self._known:
                self._add(study, key, self.space.decode(pending_x[row]), TrialState.RUNNING)
        for key, known in self._known.items():
            if known.running and key not in pending:  # failed, or never made into a trial
                self._fail(study, known.number)
                known.running = False

    def _add(self, study: Study, key: tuple, params: Params, state: Any, loss: float | None = None) -> None:
        from optuna.trial import create_trial

        trial = create_trial(state=state, params=self._to_optuna(params), distributions=self._distributions,
                             value=loss)
        quietly(lambda: study.add_trial(trial))
        self._known[key] = _Known(self._count, running=loss is None)
        self._count += 1

    def _tell(self, study: Study, number: int, loss: float) -> None:
        quietly(lambda: study.tell(number, loss))

    def _fail(self, study: Study, number: int) -> None:
        from optuna.trial import TrialState

        quietly(lambda: study.tell(number, state=TrialState.FAIL))

    # -- conversions -------------------------------------------------------------------------------------------
    def _to_optuna(self, params: Params) -> dict[str, Any]:
        return {p.name: CODECS[type(p)].to_optuna(p, params[p.name]) for p in self._parameters}

    def _from_optuna(self, values: dict[str, Any]) -> Params:
        return {p.name: CODECS[type(p)].from_optuna(p, values[p.name]) for p in self._parameters}

