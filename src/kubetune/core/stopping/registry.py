"""The early-stopping rules a manifest may name (``spec.earlyStopping.rule``), each with its settings model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kubetune.core.stopping.asha import AshaRule, AshaSettings
from kubetune.core.stopping.median import MedianRule, MedianSettings
from kubetune.core.stopping.progress import Progress
from kubetune.core.stopping.settings import RuleSettings


class StoppingRule(Protocol):
    def rungs(self) -> list[float]:
        """The resource levels at which the rule records a trial's value (ASHA's rungs; none for median)."""

    def should_stop(self, trial: Progress, others: Mapping[str, Progress], maximize: bool) -> bool:
        """Whether the running trial with ``trial``'s progress should stop now. For the median rule ``others``
        are the completed trials; for ASHA every other trial."""


@dataclass(frozen=True)
class Rule:
    settings: type[RuleSettings]
    build: Callable[[Any], StoppingRule]
    compares_with: str  # "completed" or "all": which other trials the rule looks at


RULES: dict[str, Rule] = {
    "median": Rule(MedianSettings, MedianRule, "completed"),
    "asha": Rule(AshaSettings, AshaRule, "all"),
}


def parse_settings(name: str, settings: Mapping[str, Any] | None) -> RuleSettings:
    """Validates ``earlyStopping.settings``; pydantic's ValidationError for bad settings."""
    return RULES[name].settings.model_validate(dict(settings or {}))


def build_rule(name: str, settings: Mapping[str, Any] | None) -> StoppingRule:
    return RULES[name].build(parse_settings(name, settings))
