"""An experiment's Trials and Pods as the operator knows them: as last listed, then kept current by the pods'
watch events and the operator's own writes, with what a decision needs (counts by state, the best trial,
the trials in flight, and which of those a pass must look at) kept up to date as trials and pods change. A
pass then costs what changed since the last one, not what exists: with thousands of trials, counting them
all for every ended trial kept a core busy.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from kubetune.core.cluster.outcome import has_ended, waiting
from kubetune.core.cluster.pods import ATTEMPT_LABEL, TRIAL_LABEL, keeps_pods, pod_name
from kubetune.core.lifecycle import TrialState
from kubetune.core.plan import Tally

PHASE_ORDER = {"Pending": 0, "Running": 1, "Succeeded": 2, "Failed": 2}
PodsByTrial = dict[str, dict[str, dict]]  # trial name -> pod name -> pod


class ExperimentView:
    """``trials`` are Trial objects by name, ``pods`` the experiment's pods (slimmed) by trial; every change
    of a trial's status goes through :meth:`set_status` so that the tally stays true."""

    def __init__(self, trials: Iterable[dict], pods: Iterable[dict], direction: Literal["minimize", "maximize"],
                 listed_at: float):
        self.trials: dict[str, dict] = {}
        self.pods: PodsByTrial = {}
        self.listed_at = listed_at
        self.tally = Tally(direction)
        self.active: dict[str, None] = {}  # the trials in flight, by number (an ordered set)
        # of the trials in flight (ordered sets, each kept by _classify as a trial or its pods change):
        self.settleable: dict[str, None] = {}  # started, and the latest pod ended or is missing: a pass follows them
        self.starting: dict[str, None] = {}  # marked Pending while the latest pod runs: to be marked Running
        self.running: dict[str, None] = {}  # marked Running, or the latest pod runs (the pod knows first)
        self.unschedulable: dict[str, None] = {}  # the latest pod waits for the scheduler to place it
        self.unexplained: dict[str, None] = {}  # Pending, and its status does not say why its pod waits as it does
        self.best: str | None = None  # the first trial that reached the best value
        self.version = 0  # counts what the view has learnt of pods since it was made
        self._learnt: dict[str, int] = {}  # pod name -> the version at which the view last learnt of it
        for trial in sorted(trials, key=number):
            self.add(trial)
        for pod in pods:
            self.observe("ADDED", pod)

    # -- trials ---------------------------------------------------------------------------------------------
    def add(self, trial: dict) -> None:
        self.trials[trial["metadata"]["name"]] = trial
        self._moved(trial, None)
        self._classify(trial["metadata"]["name"])

    def set_status(self, trial: dict, status: dict) -> None:
        before = phase(trial)
        trial["status"] = status
        self._moved(trial, before)
        self._classify(trial["metadata"]["name"])

    def _moved(self, trial: dict, before: TrialState | None) -> None:
        name, after = trial["metadata"]["name"], phase(trial)
        if before == after:
            return
        best = self.tally.best
        self.tally.moved(name, before, after, (trial.get("status") or {}).get("value"))
        if self.tally.best != best:
            self.best = name
        if after.is_active:
            self.active[name] = None
        else:
            self.active.pop(name, None)

    def in_flight(self) -> list[dict]:
        return [self.trials[name] for name in self.active]

    def first_unschedulable(self) -> tuple[str, str] | None:
        """Why the first trial whose pod the scheduler cannot place waits (its reason and message)."""
        for name in self.unschedulable:
            pod = self.latest_pod(self.trials[name])[1]
            if pod is not None and (why := waiting(pod)) is not None:
                return why
        return None

    def _classify(self, name: str) -> None:
        """Puts the trial in (or takes it out of) ``settleable``, ``starting``, ``running``, ``unschedulable`` and
        ``unexplained``, from its status and its latest pod: called whenever either changes."""
        trial = self.trials.get(name)
        settle = start = running = unschedulable = unexplained = False
        if trial is not None and name in self.active:
            state = phase(trial)
            pod = self.latest_pod(trial)[1]
            pod_phase = None if pod is None else (pod.get("status") or {}).get("phase", "Pending")
            settle = state is not TrialState.QUEUED and (pod is None or has_ended(pod))
            start = state is TrialState.PENDING and pod_phase == "Running"
            running = state is TrialState.RUNNING or pod_phase == "Running"
            why = None if pod is None or has_ended(pod) else waiting(pod)
            unschedulable = why is not None
            waits = state is TrialState.PENDING and pod_phase == "Pending" and not settle
            unexplained = waits and _shown(trial) != (why or (None, None))
        for members, member in ((self.settleable, settle), (self.starting, start), (self.running, running),
                                (self.unschedulable, unschedulable), (self.unexplained, unexplained)):
            if member:
                members.setdefault(name)
            else:
                members.pop(name, None)

    # -- pods -----------------------------------------------------------------------------------------------
    def observe(self, event_type: str | None, pod: dict) -> None:
        """A pod as a watch event (or the operator's own create) shows it."""
        meta = pod.get("metadata", {})
        trial, name = meta.get("labels", {}).get(TRIAL_LABEL), meta.get("name")
        if not trial or not name:
            return
        self._learn(name)
        own = self.pods.setdefault(trial, {})
        if event_type == "DELETED":
            own.pop(name, None)
        else:
            known = own.get(name)
            # Events of one pod arrive in order, but a listing may be older than an event already applied: a
            # pod's phase only moves forward, so an older state never replaces a newer one.
            if known is None or pod_order(pod) >= pod_order(known):
                own[name] = pod
        self._classify(trial)

    def created(self, trial: str, pod: dict) -> None:
        """A pod the operator created: known as rendered until the watch shows it."""
        self._learn(pod["metadata"]["name"])
        self.pods.setdefault(trial, {}).setdefault(pod["metadata"]["name"], pod)
        self._classify(trial)

    def _learn(self, pod: str) -> None:
        self.version += 1
        self._learnt[pod] = self.version

    def unfinished_unheard_of(self, since: int) -> list[tuple[str, str]]:
        """(trial, pod) of the pods the view holds as not ended and has heard nothing of since version
        ``since``."""
        return [(trial, name) for trial, own in self.pods.items() for name, pod in own.items()
                if not has_ended(pod) and self._learnt.get(name, 0) <= since]

    def refresh_unfinished(self, listed: Iterable[dict], looked_up: dict[tuple[str, str], dict | None], since: int,
                           listed_at: float) -> None:
        """Takes a listing of the experiment's unfinished pods that began when the view was at version
        ``since``, and a look at each pod the view held as unfinished that the listing lacked (None: it is
        gone). They are the truth for every pod the view has not heard of since: a pod the watch never
        showed, one that ended or went while nothing said so. A pod heard of since keeps what was heard (the
        newer state, or its going); an ended pod stays as it is (it can only go, and its trial is settled)."""
        changed: set[str] = set()
        for pod in listed:
            name, trial = pod["metadata"]["name"], pod["metadata"].get("labels", {}).get(TRIAL_LABEL)
            if trial and self._learnt.get(name, 0) <= since:
                own = self.pods.setdefault(trial, {})
                if name not in own or pod_order(pod) >= pod_order(own[name]):
                    own[name] = pod
                    changed.add(trial)
        for (trial, name), seen in looked_up.items():
            if self._learnt.get(name, 0) <= since:
                own = self.pods.setdefault(trial, {})
                if seen is None:
                    own.pop(name, None)
                else:
                    own[name] = seen
                changed.add(trial)
        self._learnt = {name: version for name, version in self._learnt.items() if version > since}
        self.listed_at = listed_at
        for trial in changed:
            self._classify(trial)

    def latest_pod(self, trial: dict) -> tuple[int, dict | None]:
        """The trial's number of attempts so far, and the pod of the latest (None when it is missing)."""
        own = self.pods.get(trial["metadata"]["name"], {})
        attempts = max((trial.get("status") or {}).get("attempts", 0), _pod_attempts(own))
        return attempts, own.get(pod_name(trial["metadata"]["name"], attempts)) if attempts else None

    def outlived(self) -> list[str]:
        """The pods still going whose trial has ended: an operator that stopped a trial records its end first
        and deletes its pod then, so one killed in between leaves the pod to its successor."""
        return [name for trial, own in self.pods.items()
                if trial in self.trials and not phase(self.trials[trial]).is_active
                for name, pod in own.items() if not has_ended(pod)]

    def unretained(self, retain: str) -> list[str]:
        """The pods of ended trials that ``trialTemplate.retain`` does not keep: an operator that recorded a
        trial's end and was killed before it deleted them leaves them to its successor."""
        return [name for trial, own in self.pods.items()
                if trial in self.trials and phase(self.trials[trial]).is_finished
                and not keeps_pods(retain, phase(self.trials[trial])) for name in own]


TRIAL_METADATA = ("name", "namespace", "uid", "labels")


def trial_essentials(trial: dict) -> dict:
    """What the operator keeps of a Trial: its names, labels, spec and status (not its managed fields)."""
    meta = trial.get("metadata") or {}
    return {"apiVersion": trial.get("apiVersion"), "kind": trial.get("kind"),
            "metadata": {key: meta[key] for key in TRIAL_METADATA if key in meta},
            "spec": trial.get("spec") or {}, **({"status": trial["status"]} if trial.get("status") else {})}


def phase(trial: dict) -> TrialState:
    """The trial's state as its status says (a Trial is created with its first pod, so it starts Pending)."""
    return TrialState((trial.get("status") or {}).get("phase", "Pending"))


def _shown(trial: dict) -> tuple[str | None, str | None]:
    """The reason and message the trial's status shows."""
    status = trial.get("status") or {}
    return status.get("reason"), status.get("message")


def number(trial: dict) -> int:
    return int(trial["spec"]["number"])


def pod_order(pod: dict) -> int:
    return 2 if has_ended(pod) else PHASE_ORDER.get((pod.get("status") or {}).get("phase", "Pending"), 0)


def _pod_attempts(pods: dict[str, dict]) -> int:
    return max((int(p["metadata"].get("labels", {}).get(ATTEMPT_LABEL, 1)) for p in pods.values()), default=0)
