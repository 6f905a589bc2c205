"""An Experiment's conditions, as Kubernetes users expect them: one of each type, always present, each with its
status, reason, message and ``lastTransitionTime`` (kept while the status stays the same), so that
``kubectl wait --for=condition=Succeeded`` (or ``Failed``, ``Running``, ``Suspended``) has something to wait on.

=========  ======================================================================================
Running    True while the experiment runs trials; False when it is suspended, has ended, or is held
           (a problem the operator keeps meeting, such as a missing permission: ``held``)
Suspended  True while ``spec.suspend`` keeps new trials from starting
Succeeded  True once it ended well (the target reached, maxTrials, the space exhausted)
Failed     True once it ended badly (an invalid spec, too many failed trials, no trial succeeded)
=========  ======================================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kubetune.core.cluster.resources import Condition
from kubetune.core.plan import ExperimentPhase

CONDITION_TYPES = ("Running", "Suspended", "Succeeded", "Failed")
# The phase in which each condition is True.
TRUE_IN = {"Running": ExperimentPhase.RUNNING, "Suspended": ExperimentPhase.SUSPENDED,
           "Succeeded": ExperimentPhase.SUCCEEDED, "Failed": ExperimentPhase.FAILED}


def conditions(phase: ExperimentPhase, reason: str, message: str, previous: Iterable[Mapping[str, Any]], now: str,
               held: bool = False) -> list[Condition]:
    """The four conditions for an experiment in ``phase`` for ``reason``; ``previous`` are the conditions it had
    (their transition times are kept where the status did not change); ``now`` is an ISO time."""
    before = {c.get("type"): c for c in previous if isinstance(c, Mapping)}
    found = []
    for kind in CONDITION_TYPES:
        status = "True" if phase is TRUE_IN[kind] and not (held and kind == "Running") else "False"
        earlier = before.get(kind) or {}
        since = earlier.get("lastTransitionTime") if earlier.get("status") == status else None
        found.append(Condition(type=kind, status=status, reason=reason, message=message,
                               last_transition_time=since or now))
    return found
