"""The collectors' line formats and the objective strategies."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import FUZZ, JSON_VALUES
from kubetune.core.metrics import final_metrics, objective_value, parse_line, parse_text, progress_report
from kubetune.trial import report

OUTPUT = """
starting, lr=0.1 (not wanted)
epoch 1: accuracy=0.80 loss=1.5
{"accuracy": 0.91, "loss": 0.7, "step": 2}
Epoch 3 accuracy = 0.89 loss=5e-1
"""


def test_key_value_and_json_lines():
    assert parse_line("epoch 1: accuracy=0.80 loss=-1.5e-2") == [("accuracy", 0.8), ("loss", -0.015)]
    assert parse_line('{"accuracy": 0.91, "step": 2, "note": "x", "ok": true}') == [("accuracy", 0.91)]
    assert parse_line("no metrics here") == []
    assert parse_line("val/acc=0.5") == [("val/acc", 0.5)]
    assert parse_line("a=1.5x") == []  # not a number


def test_only_wanted_metrics_are_kept():
    log = parse_text(OUTPUT, ["accuracy", "loss"])
    assert log.values == {"accuracy": [0.8, 0.91, 0.89], "loss": [1.5, 0.7, 0.5]}


@pytest.mark.parametrize(("strategy", "expected"), [("latest", 0.89), ("max", 0.91), ("min", 0.8)])
def test_strategies(strategy, expected):
    log = parse_text(OUTPUT, ["accuracy"])
    assert objective_value(log, "accuracy", strategy) == expected


def test_nan_and_inf_give_no_objective():
    for text in ("loss=nan", "loss=inf", '{"loss": NaN}', "loss=-Infinity"):
        log = parse_text(text, ["loss"])
        assert log.values["loss"] and objective_value(log, "loss", "latest") is None
    log = parse_text("loss=0.5\nloss=nan", ["loss"])
    assert objective_value(log, "loss", "latest") is None
    assert objective_value(log, "loss", "min") == 0.5
    assert final_metrics(log, "loss", "latest") == {"loss": None}


def test_missing_metric_gives_none():
    assert objective_value(parse_text("accuracy=0.9", ["loss"]), "loss", "latest") is None


def test_sdk_report_is_read_back_by_both_collectors(capsys, tmp_path, monkeypatch):
    metrics_file = tmp_path / "metrics.txt"
    monkeypatch.setenv("KUBETUNE_METRICS_FILE", str(metrics_file))
    report(step=1, accuracy=0.5, loss=float("nan"))
    report(step=2, accuracy=0.75)
    for text in (capsys.readouterr().out, metrics_file.read_text()):
        log = parse_text(text, ["accuracy", "loss"])
        assert log.values["accuracy"] == [0.5, 0.75]
        assert math.isnan(log.values["loss"][0])


def test_sdk_writes_a_termination_message_summary(tmp_path, monkeypatch):
    import kubetune.trial as sdk

    message = tmp_path / "termination-log"
    message.touch()
    monkeypatch.setattr(sdk, "TERMINATION_LOG", message)
    monkeypatch.setattr(sdk, "_history", {})
    report(accuracy=0.5)
    report(accuracy=0.9)
    report(accuracy=0.7)
    summary = json.loads(message.read_text())["kubetune"]["metrics"]["accuracy"]
    assert summary == {"count": 3, "latest": 0.7, "min": 0.5, "max": 0.9}


def test_report_needs_a_metric():
    with pytest.raises(ValueError, match="at least one metric"):
        report(step=1)


def test_a_trial_reads_its_gpu_share(monkeypatch):
    from kubetune import gpu_share

    monkeypatch.delenv("KUBETUNE_GPU_SHARE", raising=False)
    assert gpu_share() is None
    monkeypatch.setenv("KUBETUNE_GPU_SHARE", "0.25")
    assert gpu_share() == 0.25


def test_sdk_makes_the_metrics_file_folder(tmp_path, monkeypatch):
    metrics_file = tmp_path / "not" / "there" / "metrics.jsonl"
    monkeypatch.setenv("KUBETUNE_METRICS_FILE", str(metrics_file))
    report(accuracy=0.5)
    assert parse_text(metrics_file.read_text(), ["accuracy"]).values["accuracy"] == [0.5]


def test_with_the_file_collector_a_pod_still_leaves_the_summary_the_operator_reads(tmp_path, monkeypatch):
    import kubetune.trial as sdk
    from kubetune.core.termination import decode

    message = tmp_path / "termination-log"
    message.touch()
    monkeypatch.setattr(sdk, "TERMINATION_LOG", message)
    monkeypatch.setattr(sdk, "_history", {})
    monkeypatch.setenv("KUBETUNE_METRICS_FILE", str(tmp_path / "out" / "metrics.jsonl"))
    report(step=1, accuracy=0.5)
    assert decode(message.read_text())["accuracy"]["latest"] == 0.5


def test_an_integer_no_float_holds_reads_as_infinite():
    huge = "1" + "0" * 400
    assert parse_line(f'{{"loss": {huge}, "acc": -{huge}}}') == [("loss", math.inf), ("acc", -math.inf)]
    assert parse_line(f"loss={huge}") == [("loss", math.inf)]
    assert progress_report(f'{{"step": {huge}, "loss": 2}}', "step", "loss") == (math.inf, 2.0)


@FUZZ
@given(line=st.text(max_size=60) | st.dictionaries(st.text(max_size=5) | st.sampled_from(["step", "loss"]),
                                                   JSON_VALUES, max_size=4).map(json.dumps))
def test_any_output_line_reads_as_floats_or_nothing(line):
    assert all(type(value) is float for _, value in parse_line(line))
    report = progress_report(line, "step", "loss")
    assert report is None or all(type(value) is float for value in report)
