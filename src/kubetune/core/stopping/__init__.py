"""Early stopping: per-trial stop decisions from the intermediate values trials report while they run.

A trial's reports are kept as a bounded :class:`~.progress.Progress` (persisted with the trial, so a restarted
runner or operator decides the same); a rule (:mod:`.median`, :mod:`.asha`, chosen by name from
:mod:`.registry`) is a pure function of the trials' progress that says whether one trial should stop now.
:func:`observe` records a report and says whether the rule judges the trial at it: at every report for the
median rule, when the trial reaches a new rung for ASHA (a trial that passed a rung is never stopped later
for that rung).
"""

from __future__ import annotations

from collections.abc import Mapping

from kubetune.core.stopping.progress import Progress, rung_key
from kubetune.core.stopping.registry import RULES, StoppingRule, build_rule, parse_settings

__all__ = ["RULES", "Progress", "StoppingRule", "build_rule", "judge", "observe", "parse_settings"]


def observe(progress: Progress, step: float, value: float, maximize: bool, rule: StoppingRule) -> bool:
    """Records one report in ``progress``; True when ``rule`` should judge the trial now."""
    if not progress.add(step, value, maximize):
        return False
    rungs = rule.rungs()
    if not rungs:
        return True
    reached = [key for key in map(rung_key, rungs) if float(key) <= step and key not in progress.rungs]
    for key in reached:
        progress.rungs[key] = value
    return bool(reached)


def judge(name: str, rule: StoppingRule, trial: str, progress: Mapping[str, Progress], completed: set[str],
          maximize: bool) -> bool:
    """Whether running trial ``trial`` stops, given every trial's progress (``completed``: the trials that
    ended with a result, which the median rule compares with)."""
    if RULES[name].compares_with == "completed":
        others = {t: p for t, p in progress.items() if t in completed and t != trial}
    else:
        others = {t: p for t, p in progress.items() if t != trial}
    return rule.should_stop(progress[trial], others, maximize)
