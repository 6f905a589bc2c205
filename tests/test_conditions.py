"""The Experiment's conditions: one of each type, True in its phase only, with the decision's reason and
message, and a lastTransitionTime that moves only when the condition's status does."""

from __future__ import annotations

import pytest

from kubetune.core.cluster.conditions import CONDITION_TYPES, conditions
from kubetune.core.plan import ExperimentPhase


def by_type(found) -> dict[str, dict]:
    return {c.type: c.model_dump(by_alias=True) for c in found}


@pytest.mark.parametrize("phase", list(ExperimentPhase))
def test_one_condition_of_each_type_true_in_its_phase_only(phase):
    found = by_type(conditions(phase, "Why", "because", [], "2026-12-06T10:00:00Z"))
    assert list(found) == list(CONDITION_TYPES)
    true = {kind for kind, c in found.items() if c["status"] == "True"}
    assert true == ({str(phase)} if phase is not ExperimentPhase.CREATED else set())
    assert all(c["reason"] == "Why" and c["message"] == "because" for c in found.values())


def test_a_transition_time_moves_only_when_the_status_does():
    first = [c.model_dump(by_alias=True) for c in
             conditions(ExperimentPhase.RUNNING, "TrialsRunning", "4 running", [], "2026-12-06T10:00:00Z")]
    later = by_type(conditions(ExperimentPhase.RUNNING, "TrialsRunning", "3 running", first, "2026-12-06T10:05:00Z"))
    assert all(c["lastTransitionTime"] == "2026-12-06T10:00:00Z" for c in later.values())
    ended = by_type(conditions(ExperimentPhase.SUCCEEDED, "MaxTrialsReached", "done", first, "2026-12-06T11:00:00Z"))
    assert ended["Succeeded"]["lastTransitionTime"] == ended["Running"]["lastTransitionTime"] == "2026-12-06T11:00:00Z"
    assert ended["Failed"]["lastTransitionTime"] == ended["Suspended"]["lastTransitionTime"] == "2026-12-06T10:00:00Z"


def test_a_held_experiment_is_not_running_and_says_why():
    found = by_type(conditions(ExperimentPhase.RUNNING, "Forbidden", "cannot create pods", [], "2026-12-06T10:00:00Z",
                               held=True))
    assert found["Running"]["status"] == "False" and found["Running"]["reason"] == "Forbidden"
    assert {c["status"] for c in found.values()} == {"False"}
