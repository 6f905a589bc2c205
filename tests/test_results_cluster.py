"""``kubetune status`` and ``kubetune export`` of an Experiment on the real control plane, run by the operator
with the test kubelet (four quick trials, two that keep running), read through a kubeconfig given explicitly
or by KUBECONFIG, and the one-line refusals: a missing experiment, a user RBAC does not let read it, a server
that is not there."""

from __future__ import annotations

import csv
import io
import re

import pytest
from cluster import Behaviour
from operator_cluster import by_name, experiment, run_operator, wait_for

from kubetune.cli import EXIT_BAD_INPUT, kubectl_main, main


def behaviour(pod):
    number = int(pod["metadata"]["labels"]["kubetune.io/trial"].rsplit("-", 1)[1])
    return Behaviour(seconds=0.2 if number < 4 else 300)


def trials_viewer(namespace, tmp_path):
    """A ServiceAccount that may read Experiments and Trials in the namespace, and nothing else."""
    namespace.kubectl("create", "serviceaccount", "viewer")
    namespace.kubectl("create", "role", "viewer", "--verb=get,list", "--resource=experiments.kubetune.io",
                      "--resource=trials.kubetune.io")
    namespace.kubectl("create", "rolebinding", "viewer", "--role=viewer", f"--serviceaccount={namespace.name}:viewer")
    path = namespace.cluster.service_account_kubeconfig(tmp_path / "viewer", namespace.name, "viewer")
    path.write_text(path.read_text().replace("namespace: default", f"namespace: {namespace.name}"))
    return path


def test_status_and_export_of_a_cluster_experiment(namespace, tmp_path, monkeypatch, capsys):
    admin = str(namespace.cluster.admin_kubeconfig)
    with namespace.kubelet(behaviour=behaviour), run_operator(namespace):
        namespace.apply(experiment(maxTrials=6, parallelism=2))
        status = wait_for(lambda: (s := namespace.status("demo")).get("trials", {}).get("succeeded") == 4
                          and s["trials"].get("running") == 2 and s, what="4 trials done and 2 running")
        trials = by_name(namespace.trials())

        assert main(["status", "--experiment", "demo", "-n", namespace.name, "--kubeconfig", admin]) == 0
        out = capsys.readouterr().out
        assert f"demo ({namespace.name}/demo): Running" in out
        assert "Trials: 6" in out and "Succeeded" in out
        best = status["best"]
        assert f"Best: {best['trial']} loss={best['value']:.4g} (minimize)  x={best['params']['x']:.4g}" in out
        assert "Running: 2" in out
        for name in ("demo-4", "demo-5"):
            line = next(line for line in out.splitlines() if line.strip("│ ").startswith(name))
            assert "Running" in line and f"x={trials[name]['spec']['params']['x']:.4g}" in line
            assert re.search(r" \d+m\d\ds ", line), line

        # a user RBAC lets read Experiments and Trials but not pods: the running trials come from the Trials
        viewer = trials_viewer(namespace, tmp_path)
        assert main(["status", "-e", "demo", "--kubeconfig", str(viewer)]) == 0  # the context's namespace
        out_viewer = capsys.readouterr().out
        assert "Running: 2" in out_viewer and f"Best: {best['trial']}" in out_viewer
        assert re.search(r"demo-4 .* Running .* \d+m\d\ds .* x=", out_viewer), out_viewer

        monkeypatch.setenv("KUBECONFIG", admin)  # the kubectl plugin, as kubectl runs it
        page = tmp_path / "demo.html"
        assert kubectl_main(["report", "demo", "-n", namespace.name, "-o", str(page)]) == 0
        html = page.read_text()
        assert "<svg" in html and "demo-5" in html and "https://" not in html
        capsys.readouterr()
        assert kubectl_main(["export", "demo", "-n", namespace.name]) == 0
    exported = by_name([{**row, "metadata": {"name": row["id"]}}
                        for row in csv.DictReader(io.StringIO(capsys.readouterr().out))])
    assert sorted(exported) == [f"demo-{i}" for i in range(6)]
    for name, trial in trials.items():
        row = exported[name]
        assert float(row["param.x"]) == pytest.approx(trial["spec"]["params"]["x"])
        if int(trial["spec"]["number"]) < 4:
            assert row["state"] == "Succeeded" and float(row["value"]) == pytest.approx(trial["status"]["value"])
            assert float(row["duration_s"]) >= 0 and row["attempts"] == "1"
        else:
            assert row["state"] in ("Pending", "Running") and row["value"] == "" and row["duration_s"] == ""


@pytest.mark.parametrize("what", ["missing", "forbidden", "unreachable"])
def test_a_cluster_experiment_that_cannot_be_read_is_one_line_and_exit_2(what, namespace, tmp_path, capsys):
    kubeconfig = namespace.cluster.admin_kubeconfig
    expected = f"error: experiment nothere not found in namespace {namespace.name}"
    if what == "forbidden":  # a ServiceAccount that RBAC gives nothing
        kubeconfig = namespace.cluster.service_account_kubeconfig(tmp_path / "nobody", namespace.name, "default")
        expected = (f"error: not allowed to read experiment nothere in namespace {namespace.name}: experiments."
                    f'kubetune.io "nothere" is forbidden: User "system:serviceaccount:{namespace.name}:default"')
    elif what == "unreachable":
        kubeconfig = tmp_path / "gone"
        kubeconfig.write_text(namespace.cluster.admin_kubeconfig.read_text().replace(
            namespace.cluster.url, "https://127.0.0.1:9"))
        expected = "error: cannot reach the Kubernetes API server at https://127.0.0.1:9: Connection refused"
    for command in (["status"], ["export"]):
        assert main([*command, "-e", "nothere", "-n", namespace.name, "--kubeconfig", str(kubeconfig)]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and err.startswith(expected), err
    assert EXIT_BAD_INPUT == 2


def test_an_experiment_no_operator_has_seen_yet(namespace, capsys):
    namespace.apply(experiment(name="fresh"))
    kubeconfig = str(namespace.cluster.admin_kubeconfig)
    assert main(["status", "-e", "fresh", "-n", namespace.name, "--kubeconfig", kubeconfig]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [f"fresh ({namespace.name}/fresh): Created", "Trials: none yet",
                                "Best: none yet (minimize loss)"]
    assert main(["export", "-e", "fresh", "-n", namespace.name, "--kubeconfig", kubeconfig, "--format", "csv"]) == 0
    assert capsys.readouterr().out == "id,number,state,value,started,finished,duration_s,attempts,reason\n"
