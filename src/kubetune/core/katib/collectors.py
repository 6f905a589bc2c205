"""Katib's ``metricsCollectorSpec`` as kubetune's ``trialTemplate.metricsCollector``, one row of
:data:`COLLECTORS` per Katib collector kind.

kubetune reads ``name=value`` pairs (Katib's StdOut and TEXT format) and JSON lines with number values from a
trial's output, or, with the ``file`` collector, from a file it writes. Collectors that read something else
(TensorFlow event files, a Prometheus endpoint, a custom sidecar) have no counterpart and are refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kubetune.core.katib.notes import Context, Refused, items, known, mapping, text

# Katib's default metrics format (name=value), which kubetune reads as it is.
DEFAULT_FILTER = r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)"
DEFAULT_FILE = "/var/log/katib/metrics.log"
# What a metric name must look like to be read from "name=value" text.
TEXT_METRIC_NAME = re.compile(r"^[A-Za-z_][\w./-]*$")


def _filter(ctx: Context, source: dict[str, Any], path: str) -> None:
    where = f"{path}.source.filter.metricsFormat"
    formats = items(mapping(source.get("filter"), f"{path}.source.filter").get("metricsFormat"), where)
    custom = [f for f in formats if f != DEFAULT_FILTER]
    if custom:
        ctx.warn(where, "kubetune reads name=value pairs and JSON lines, not custom "
                 f"patterns ({text(custom[0], where)}): make the trial print "
                 "'accuracy=0.91' or call kubetune.report(accuracy=0.91)")


def _stdout(ctx: Context, source: dict[str, Any], path: str) -> dict[str, Any]:
    _filter(ctx, source, path)
    if source.get("fileSystemPath"):
        ctx.warn(f"{path}.source.fileSystemPath", "the StdOut collector reads the trial's output; the path is left "
                 "out")
    return {"kind": "stdout"}


def _file(ctx: Context, source: dict[str, Any], path: str) -> dict[str, Any]:
    _filter(ctx, source, path)
    where = f"{path}.source.fileSystemPath"
    location = mapping(source.get("fileSystemPath"), where)
    if location.get("kind", "File") != "File":
        raise Refused(f"{where}.kind", f"the File collector reads a file, not a {location['kind']}")
    file = text(location.get("path") or DEFAULT_FILE, f"{where}.path")
    if location.get("format", "TEXT") == "JSON":
        ctx.warn(f"{where}.format", "kubetune reads JSON lines whose values are numbers "
                 "({\"accuracy\": 0.91}); values written as strings ({\"accuracy\": \"0.91\"}, as the hypertune "
                 "logger does) are not read: write numbers, or call kubetune.report(accuracy=0.91)")
    ctx.warn(f"{where}.path", "in a cluster the operator reads a trial's output and the summary "
             "kubetune.report() leaves, never a file inside the pod: a trial that writes the file itself reports "
             "nothing there (kubetune run reads the file); report with kubetune.report(), or print the metrics too")
    return {"kind": "file", "path": file}


def _push(ctx: Context, source: dict[str, Any], path: str) -> dict[str, Any]:
    ctx.warn(f"{path}.collector.kind", "trials pushed their metrics to Katib's database "
             "(kubeflow.katib.report_metrics); kubetune reads them from the trial's output: call "
             "kubetune.report(accuracy=0.91) instead, or print 'accuracy=0.91'")
    return {"kind": "stdout"}


def _unsupported(reason: str) -> Callable[[Context, dict[str, Any], str], dict[str, Any]]:
    def refuse(ctx: Context, source: dict[str, Any], path: str) -> dict[str, Any]:
        raise Refused(f"{path}.collector.kind", reason)

    return refuse


REPORT_INSTEAD = ("print the metrics ('accuracy=0.91') or call kubetune.report(accuracy=0.91) in the trial, and "
                  "convert again with the StdOut collector")
COLLECTORS: dict[str, Callable[[Context, dict[str, Any], str], dict[str, Any]]] = {
    "StdOut": _stdout,
    "File": _file,
    "Push": _push,
    "TensorFlowEvent": _unsupported(f"kubetune does not read TensorFlow event files: {REPORT_INSTEAD}"),
    "PrometheusMetric": _unsupported(f"kubetune does not scrape a Prometheus endpoint: {REPORT_INSTEAD}"),
    "Custom": _unsupported(f"a custom collector sidecar has no kubetune counterpart: {REPORT_INSTEAD}"),
    "None": _unsupported(f"the trials wrote their metrics to Katib's database themselves: {REPORT_INSTEAD}"),
}


def convert_collector(ctx: Context) -> dict[str, Any]:
    path = "spec.metricsCollectorSpec"
    spec = mapping(ctx.katib.get("metricsCollectorSpec"), path)
    kind = mapping(spec.get("collector"), f"{path}.collector").get("kind", "StdOut")
    if not known(kind, COLLECTORS):
        raise Refused(f"{path}.collector.kind", f"unknown collector {kind!r} (Katib's are {', '.join(COLLECTORS)})")
    collector = COLLECTORS[kind](ctx, mapping(spec.get("source"), f"{path}.source"), path)
    _check_metric_names(ctx, collector)
    return collector


def _check_metric_names(ctx: Context, collector: dict[str, Any]) -> None:
    objective = ctx.spec.get("objective") or {}
    names = [objective.get("metric"), *objective.get("additionalMetrics", [])]
    odd = [n for n in names if isinstance(n, str) and not TEXT_METRIC_NAME.match(n)]
    if odd:
        ctx.warn("spec.objective", f"{odd[0]!r} cannot be read from name=value text (a letter or '_' first, then "
                 "letters, digits, '_', '.', '/', '-'): report it as a JSON line or with kubetune.report()")
