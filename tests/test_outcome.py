"""What a trial pod's status says about its trial, read as a kubelet writes it, and the same from the slim copy
of the pod the operator keeps (:func:`essentials`)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given

from conftest import FUZZ, JSON_VALUES
from kubetune.core.cluster.outcome import essentials, has_ended, needs_log, outcome
from kubetune.core.spec import Objective

OBJECTIVE = Objective(metric="loss", direction="minimize")
SUMMARY = json.dumps({"kubetune": {"metrics": {"loss": {"count": 2, "latest": 0.5, "min": 0.25, "max": 1.0}}}})


def pod(phase: str, terminated: dict | None = None, **status) -> dict:
    """A pod as a kubelet leaves it, with the parts the outcome does not depend on (managed fields, the whole
    spec, container images) filled in."""
    state = {"terminated": terminated} if terminated is not None else {"running": {"startedAt": "2026-11-30T00:00:00Z"}}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "demo-3", "namespace": "team", "uid": "u-1", "labels": {"kubetune.io/trial": "demo-3"},
                     "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}] * 3,
                     "annotations": {"note": "x" * 200}},
        "spec": {"containers": [{"name": "trial", "image": "python:3.12", "env": [{"name": "A", "value": "1"}]},
                                {"name": "sidecar", "image": "busybox"}], "nodeName": "node-1"},
        "status": {"phase": phase, "hostIP": "127.0.0.1", "podIP": "10.0.0.2", **status,
                   "containerStatuses": [{"name": "trial", "image": "python:3.12", "imageID": "sha256:0",
                                          "ready": False, "restartCount": 0, "state": state}]},
    }


CASES = {
    "running": (pod("Running"), "Running", None),
    "summary": (pod("Succeeded", {"exitCode": 0, "reason": "Completed", "message": SUMMARY}), "Succeeded", None),
    "exit code": (pod("Failed", {"exitCode": 3, "reason": "Error", "message": "Traceback\nValueError: boom"}),
                  "Failed", "ExitCode"),
    "oom": (pod("Failed", {"exitCode": 137, "reason": "OOMKilled"}), "Failed", "ExitCode"),
    "evicted": (pod("Failed", {"exitCode": 137, "reason": "ContainerStatusUnknown"}, reason="Evicted",
                    message="The node was low on resource: memory."), "Failed", "Evicted"),
    "deadline": (pod("Failed", {"exitCode": 137, "reason": "Error"}, reason="DeadlineExceeded",
                     message="Pod was active on the node longer than the specified deadline"), "Failed", "Timeout"),
    "node lost": (pod("Failed", conditions=[{"type": "DisruptionTarget", "status": "True",
                                             "reason": "DeletionByPodGC", "message": "PodGC: node no longer exists"}]),
                  "Failed", "DeletionByPodGC"),
    "no metrics": (pod("Succeeded", {"exitCode": 0, "reason": "Completed"}), "MetricsUnavailable",
                   "MetricsUnavailable"),
}


@pytest.mark.parametrize("case", CASES)
def test_the_outcome_of_a_pod_and_of_its_essentials_agree(case):
    full, state, reason = CASES[case]
    result = outcome(full, OBJECTIVE)
    assert (result.state, result.reason) == (state, reason)
    slim = essentials(full)
    assert outcome(slim, OBJECTIVE) == result
    assert has_ended(slim) == has_ended(full) and needs_log(slim) == needs_log(full)
    assert len(json.dumps(slim)) < len(json.dumps(full)) / 2


def test_what_the_messages_say():
    assert outcome(CASES["summary"][0], OBJECTIVE).value == 0.5
    failed = outcome(CASES["exit code"][0], OBJECTIVE)
    assert failed.message == "exited with status 3 (Error): Traceback | ValueError: boom"
    assert outcome(CASES["oom"][0], OBJECTIVE).message == "exited with status 137 (OOMKilled)"
    assert outcome(CASES["evicted"][0], OBJECTIVE).message == "Evicted: The node was low on resource: memory."
    assert outcome(CASES["deadline"][0], OBJECTIVE).message == "ran longer than timeoutSeconds"
    assert outcome(CASES["node lost"][0], OBJECTIVE).message == "DeletionByPodGC: PodGC: node no longer exists"


def test_a_pod_that_printed_its_metrics_needs_its_log():
    printed = pod("Succeeded", {"exitCode": 0, "reason": "Completed"})
    assert needs_log(printed) and needs_log(essentials(printed))
    assert outcome(printed, OBJECTIVE, log="epoch 1: loss=0.75\nepoch 2: loss=0.5\n").value == 0.5


@FUZZ
@given(summary=JSON_VALUES)
def test_any_termination_message_gives_a_result(summary):
    """Whatever a trial leaves in its termination message: a result, never an error in the operator."""
    message = json.dumps({"kubetune": {"metrics": summary}})
    result = outcome(pod("Succeeded", {"exitCode": 0, "reason": "Completed", "message": message}), OBJECTIVE, "")
    assert str(result.state) in ("Succeeded", "MetricsUnavailable")
    assert result.value is None or (type(result.value) is float and math.isfinite(result.value))


def test_an_objective_no_float_holds_is_unavailable():
    huge = {"loss": {"count": 1, "latest": 10**400, "min": 10**400, "max": 10**400}}
    message = json.dumps({"kubetune": {"metrics": huge}})
    result = outcome(pod("Succeeded", {"exitCode": 0, "reason": "Completed", "message": message}), OBJECTIVE)
    assert str(result.state) == "MetricsUnavailable" and "not finite" in result.message
