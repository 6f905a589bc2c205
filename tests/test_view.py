"""The operator's view of an experiment: counts kept as trials move, and a pod listing taken in the background
folded in without undoing what the watch showed meanwhile."""

from __future__ import annotations

from kubetune.core.lifecycle import TrialState
from kubetune.core.plan import Tally, Trial
from kubetune.operator.view import ExperimentView


def trial(number: int, phase: str | None = None, value: float | None = None) -> dict:
    status = {"phase": phase, **({"value": value} if value is not None else {})} if phase else {}
    return {"metadata": {"name": f"demo-{number}"}, "spec": {"number": number, "params": {"x": number}},
            **({"status": status} if status else {})}


def pod(number: int, phase: str = "Running") -> dict:
    name = f"demo-{number}"
    return {"metadata": {"name": name, "labels": {"kubetune.io/trial": name}},
            "spec": {"containers": [{"name": "trial"}]}, "status": {"phase": phase}}


def test_counts_best_and_trials_in_flight_follow_every_status_change():
    view = ExperimentView([trial(0, "Succeeded", 3.0), trial(1, "Running"), trial(2)], [], "minimize", 0.0)
    assert [t["metadata"]["name"] for t in view.in_flight()] == ["demo-1", "demo-2"]
    view.set_status(view.trials["demo-1"], {"phase": "Succeeded", "value": 1.0})
    view.add(trial(3, "Pending"))
    view.set_status(view.trials["demo-2"], {"phase": "Failed"})
    view.set_status(view.trials["demo-3"], {"phase": "Succeeded", "value": 1.0})  # a tie: the first keeps it
    assert view.best == "demo-1" and view.tally.best == 1.0
    assert view.in_flight() == []
    views = [Trial(name, TrialState(t["status"]["phase"]), t["status"].get("value")) for name, t in view.trials.items()]
    assert view.tally.counts == {**Tally.of(views, "minimize").counts, "Pending": 0, "Running": 0}


def test_a_background_listing_adds_what_the_watch_missed_and_keeps_what_it_showed_since():
    view = ExperimentView([trial(i, "Running") for i in range(7)], [pod(i) for i in range(4)] + [pod(6, "Succeeded")],
                          "minimize", 0.0)
    since = view.version  # the listing of unfinished pods begins: demo-0 and demo-1 have ended or gone unseen
    view.observe("MODIFIED", pod(2, "Succeeded"))  # the watch meanwhile: demo-2 ended,
    view.observe("DELETED", pod(3))  # demo-3 went,
    view.created("demo-5", pod(5, "Pending"))  # and the operator created demo-5
    listed = [pod(2, "Running"), pod(3, "Running"), pod(4)]  # demo-4: a pod the watch never showed
    assert sorted(view.unfinished_unheard_of(since)) == [("demo-0", "demo-0"), ("demo-1", "demo-1")]
    looked_up = {("demo-0", "demo-0"): pod(0, "Succeeded"), ("demo-1", "demo-1"): None}  # ended; gone
    view.refresh_unfinished(listed, looked_up, since, listed_at=60.0)
    phases = {name: p["status"]["phase"] for own in view.pods.values() for name, p in own.items()}
    assert phases == {"demo-0": "Succeeded", "demo-2": "Succeeded", "demo-4": "Running", "demo-5": "Pending",
                      "demo-6": "Succeeded"}  # demo-6 had ended: no listing of unfinished pods can show it
    assert view.listed_at == 60.0
    assert sorted(view.settleable) == ["demo-0", "demo-1", "demo-2", "demo-3", "demo-6"]
    # what was learnt before this listing is forgotten: the next listing is the truth for it
    assert sorted(view.unfinished_unheard_of(view.version)) == [("demo-4", "demo-4"), ("demo-5", "demo-5")]


def test_the_trials_a_pass_must_look_at_follow_their_status_and_their_pods():
    """settleable (the latest pod ended or is missing), starting (Pending while the pod runs) and running (by
    its mark or its pod) are kept as trials and pods change, so a pass never scans every trial in flight."""
    view = ExperimentView([trial(0, "Pending"), trial(1, "Running"), trial(2, "Queued"), trial(3, "Succeeded", 1.0)],
                          [pod(0, "Pending"), pod(1)], "minimize", 0.0)
    names = lambda members: sorted(members)  # noqa: E731
    assert (names(view.settleable), names(view.starting), names(view.running)) == ([], [], ["demo-1"])
    view.observe("MODIFIED", pod(0))  # its pod runs before the trial is marked Running
    assert (names(view.starting), names(view.running)) == (["demo-0"], ["demo-0", "demo-1"])
    view.set_status(view.trials["demo-0"], {"phase": "Running", "attempts": 1})
    assert (names(view.starting), names(view.running)) == ([], ["demo-0", "demo-1"])
    view.observe("MODIFIED", pod(1, "Failed"))  # ended: to be settled
    view.observe("DELETED", pod(0))  # gone: to be settled too
    assert names(view.settleable) == ["demo-0", "demo-1"] and names(view.running) == ["demo-0", "demo-1"]
    # a retry: the trial's next attempt has a pod of its own, not yet running
    retry = {"metadata": {"name": "demo-1-r2", "labels": {"kubetune.io/trial": "demo-1", "kubetune.io/attempt": "2"}},
             "status": {"phase": "Pending"}}
    view.set_status(view.trials["demo-1"], {"phase": "Pending", "attempts": 2})
    assert "demo-1" in view.settleable  # the view knows of no pod of attempt 2 yet
    view.created("demo-1", retry)
    assert "demo-1" not in view.settleable and "demo-1" not in view.running
    view.set_status(view.trials["demo-0"], {"phase": "Failed", "attempts": 1})
    assert names(view.settleable) == [] and names(view.running) == []
    view.refresh_unfinished([], {("demo-1", "demo-1-r2"): None}, view.version, listed_at=60.0)  # it went unseen
    assert names(view.settleable) == ["demo-1"]
