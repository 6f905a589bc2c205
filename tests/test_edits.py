"""What the Event of an edited Experiment says changed."""

from __future__ import annotations

from kubetune.core.cluster.edits import spec_changes


def test_scalars_show_old_and_new_and_structures_their_name():
    before = {"parallelism": 1, "maxTrials": 3, "suspend": False, "trialTemplate": {"spec": {"a": 1}}, "seed": 4}
    after = {"parallelism": 3, "maxTrials": 9, "suspend": True, "trialTemplate": {"spec": {"a": 2}},
             "objective": {"metric": "loss"}, "algorithm": {"name": "gp"}}
    assert spec_changes(before, after) == ["parallelism 1 -> 3", "maxTrials 3 -> 9", "suspend false -> true",
                                           "trialTemplate changed", "objective set", "algorithm set", "seed removed"]


def test_nothing_changed_says_nothing_and_long_values_are_cut():
    assert spec_changes({"a": 1}, {"a": 1}) == []
    assert spec_changes(None, {"name": "x" * 100}) == ["name set to " + "x" * 39 + "\u2026"]
