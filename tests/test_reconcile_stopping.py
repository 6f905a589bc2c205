"""Early stopping by the operator's reconciler, against the in-memory cluster: trials push reports while they
run, the operator stops the ones ASHA condemns (and only those), and a new operator mid-run decides the same."""

from __future__ import annotations

import asyncio

from fake_cluster import FakeCluster, ReportingKubelet
from test_reconcile import experiment_document

from kubetune.core.cluster.gpu_sharing import GpuSharing
from kubetune.core.cluster.pods import TRIAL_LABEL
from kubetune.core.stopping import Progress, build_rule, judge, observe
from kubetune.operator.events import EventRecorder
from kubetune.operator.reconcile import Reconciler, Reporting

ASHA = {"rule": "asha", "settings": {"minResource": 1, "maxResource": 9, "reductionFactor": 3}}


class Pushes:
    """Pushes reports to whichever reconciler is the operator now, as the endpoint does (only to a trial it
    knows, running at that attempt), and remembers those it accepted, in order."""

    def __init__(self) -> None:
        self.reconciler: Reconciler | None = None
        self.accepted: list[tuple[str, dict[str, float]]] = []

    def __call__(self, namespace: str, trial: str, attempt: int, values: dict[str, float]) -> None:
        assert self.reconciler is not None
        standing = self.reconciler.standing(namespace, trial)
        if standing is None or not standing.ready or standing.ended or standing.attempt != attempt:
            return
        self.reconciler.accept(namespace, standing.experiment, trial, attempt, values)
        self.accepted.append((trial, values))


def expected_stops(accepted: list[tuple[str, dict[str, float]]]) -> set[str]:
    """The trials ASHA stops, given the reports in the order they arrived (the core's rule, replayed)."""
    rule = build_rule("asha", ASHA["settings"])
    progress: dict[str, Progress] = {}
    stopped: set[str] = set()
    for trial, values in accepted:
        if trial in stopped:
            continue
        if observe(progress.setdefault(trial, Progress()), values["step"], values["loss"], False, rule) and judge(
                "asha", rule, trial, progress, set(), False):
            stopped.add(trial)
    return stopped


def new_reconciler(cluster: FakeCluster, pushes: Pushes) -> Reconciler:
    reconciler = Reconciler(cluster, GpuSharing(), reporting=Reporting("http://ops:8090/v1/reports", b"k" * 32),
                            events=EventRecorder(cluster, instance="operator-0"))
    pushes.reconciler = reconciler
    return reconciler


def phases(cluster: FakeCluster) -> dict[str, str]:
    return {t["metadata"]["name"]: t["status"]["phase"] for t in cluster.of_kind("trials")}


class OperatorKilled(Exception):
    """The operator process died in the middle of a pass."""


class DyingAtFirstStop(FakeCluster):
    """A cluster whose operator dies at the first pod it deletes: ``before`` the deletion reaches the cluster
    or ``after`` it did."""

    def __init__(self, moment: str) -> None:
        super().__init__()
        self.moment: str | None = moment

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        moment, self.moment = self.moment, None
        if moment == "before":
            raise OperatorKilled
        await super().delete(kind, namespace, name)
        if moment == "after":
            raise OperatorKilled


def run_experiment(restart_after: int | None = None, cluster: FakeCluster | None = None
                   ) -> tuple[FakeCluster, Pushes, dict]:
    cluster = cluster or FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=12, parallelism=4, earlyStopping=ASHA))
    pushes = Pushes()
    kubelet = ReportingKubelet(cluster, pushes)
    reconciler = new_reconciler(cluster, pushes)
    for passes in range(400):
        if passes == restart_after:
            reconciler = new_reconciler(cluster, pushes)  # a new operator process: nothing in memory
        try:
            result = asyncio.run(reconciler.reconcile(cluster.experiment("demo")))
        except OperatorKilled:
            reconciler = new_reconciler(cluster, pushes)
            continue
        assert len(cluster.active_pods()) <= 4
        if result.done:
            return cluster, pushes, result.status
        kubelet.step()
    raise AssertionError("the experiment did not end")


def test_asha_stops_exactly_the_trials_the_rule_condemns_and_their_slots_refill():
    cluster, pushes, status = run_experiment()
    stopped = {name for name, phase in phases(cluster).items() if phase == "EarlyStopped"}
    assert stopped and stopped == expected_stops(pushes.accepted)
    said = [e["message"] for e in cluster.of_kind("events") if e["reason"] == "TrialStoppedEarly"]
    assert {message.split()[1] for message in said} == stopped and all("by the asha rule" in m for m in said)
    assert status["phase"] == "Succeeded" and len(cluster.of_kind("trials")) == 12
    for trial in cluster.of_kind("trials"):
        if trial["metadata"]["name"] in stopped:
            s = trial["status"]
            assert s["reason"] == "EarlyStopped" and "asha" in s["message"] and s["progress"]["rungs"]
            assert s["value"] == s["progress"]["value"]
            assert not [p for p in cluster.of_kind("pods") if p["metadata"]["name"] == trial["metadata"]["name"]]
        else:  # its whole learning curve, though only rungs were written while it ran
            assert trial["status"]["phase"] == "Succeeded" and trial["status"]["progress"]["reports"] == 9


def test_pods_get_the_endpoint_and_a_token_of_their_own():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=2, parallelism=2, earlyStopping=ASHA))
    asyncio.run(new_reconciler(cluster, Pushes()).reconcile(cluster.experiment("demo")))
    tokens = set()
    for pod in cluster.of_kind("pods"):
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["KUBETUNE_REPORT_URL"] == "http://ops:8090/v1/reports"
        tokens.add(env["KUBETUNE_REPORT_TOKEN"])
    assert len(tokens) == 2


def test_without_a_rule_pods_get_no_endpoint():
    cluster = FakeCluster()
    cluster.add_experiment(experiment_document(maxTrials=2, parallelism=2))
    asyncio.run(new_reconciler(cluster, Pushes()).reconcile(cluster.experiment("demo")))
    for pod in cluster.of_kind("pods"):
        assert "KUBETUNE_REPORT_URL" not in {e["name"] for e in pod["spec"]["containers"][0]["env"]}


def test_progress_is_written_in_batches_not_per_report():
    cluster, pushes, _ = run_experiment()
    # per trial: at most a write per rung (two rungs), one per 16 reports, the Running mark and the result
    assert cluster.writes["status trials"] <= 12 * 4
    assert len(pushes.accepted) > cluster.writes["status trials"]


def test_a_new_operator_mid_run_makes_the_same_decisions():
    uninterrupted = phases(run_experiment()[0])
    for restart in (5, 9, 14):  # before, between and after the first rungs are reached
        cluster, pushes, status = run_experiment(restart_after=restart)
        stopped = {name for name, phase in phases(cluster).items() if phase == "EarlyStopped"}
        assert stopped == expected_stops(pushes.accepted), restart
        assert phases(cluster) == uninterrupted, restart
        assert status["phase"] == "Succeeded"


def test_an_operator_killed_while_stopping_a_trial_loses_no_decision():
    """A stopped trial's end is recorded before its pod is deleted: killed after the deletion, the operator
    has already recorded the stop; killed before it, its successor finds the ended trial's pod and deletes
    it. Either way the trial ends EarlyStopped, not as a failed attempt whose pod went missing."""
    uninterrupted = phases(run_experiment()[0])
    for moment in ("before", "after"):
        cluster = DyingAtFirstStop(moment)
        cluster, pushes, status = run_experiment(cluster=cluster)
        assert cluster.moment is None, moment  # it did die
        assert phases(cluster) == uninterrupted, moment
        stopped = {name for name, phase in phases(cluster).items() if phase == "EarlyStopped"}
        assert stopped == expected_stops(pushes.accepted), moment
        assert not {p["metadata"]["labels"][TRIAL_LABEL] for p in cluster.of_kind("pods")} & stopped, moment
        assert status["phase"] == "Succeeded"


def test_the_median_rule_stops_trials_worse_than_the_succeeded_ones_never_before_start_step():
    cluster = FakeCluster()
    median = {"rule": "median", "settings": {"minTrialsRequired": 2, "startStep": 3}}
    cluster.add_experiment(experiment_document(maxTrials=14, parallelism=4, earlyStopping=median))
    pushes = Pushes()
    kubelet = ReportingKubelet(cluster, pushes)
    reconciler = new_reconciler(cluster, pushes)
    for _ in range(400):
        if asyncio.run(reconciler.reconcile(cluster.experiment("demo"))).done:
            break
        kubelet.step()
    trials = {t["metadata"]["name"]: t["status"] for t in cluster.of_kind("trials")}
    stopped = {name: s for name, s in trials.items() if s["phase"] == "EarlyStopped"}
    succeeded = [s for s in trials.values() if s["phase"] == "Succeeded"]
    assert stopped and len(succeeded) >= 2
    for status in stopped.values():
        assert "median" in status["message"] and status["progress"]["step"] >= 3
        # worse than the median of every succeeded trial's running average at that step (those it was judged
        # against are among them)
        assert status["progress"]["best"] > min(Progress.from_dict(s["progress"]).mean_at(status["progress"]["step"])
                                                for s in succeeded)
