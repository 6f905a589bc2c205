"""The operator scale benchmark's report: its results (``operator_scale.json``) as Markdown, gp and random
side by side for each scenario that runs both, every target judged met or missed with the evidence, and
where the operator's CPU went (py-spy's profile, before and after, when the results have one).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from benchmarks.operator_profile import table

NODES = 200
WRITES = ("POST", "PATCH", "PUT", "DELETE", "create", "patch", "update", "delete", "deletecollection")
COMPONENTS = ("operator", "suggestion worker", "kube-apiserver", "etcd", "kube-scheduler", "kube-controller-manager",
              "test kubelet")
CORES = os.cpu_count() or 1
MIB_PER_MB = 1e6 / 2**20
PROFILES = "operator_scale_profile.json"  # beside the report: py-spy's summaries, before the operator's cuts and now


def write_report(path: Path, results: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    quick = [r for r in results if r.get("quick")]
    dates = sorted({r["date"] for r in results if r.get("date")}) or [time.strftime("%Y-%m-%d")]
    lines = [
        "# Operator scale",
        "",
        f"`python -m benchmarks.operator_scale`, run {', '.join(dates)} on "
        f"{platform.machine()}, {CORES} cores: the operator (`kubetune operator`, its own process, as the chart's "
        "ServiceAccount, with its suggestion worker) against a real control plane built by `make control-plane` "
        "(kube-apiserver, etcd, kube-scheduler, the garbage collector), with "
        f"{NODES} fake nodes run by the test kubelet (its own process), everything on this one machine. Every "
        "experiment searches six parameters on the unit cube; the test kubelet reports Hartmann-6 of each pod's "
        "`KUBETUNE_PARAMS` as its metric (the minimum is -3.32237). The operator's CPU per trial is counted from "
        "the moment the experiments are created (its start is not)."
        + (f" **{len(quick)} of these {len(results)} rows are `--quick` results (a tenth of the size), marked "
           "(quick).**" if quick else ""),
        "",
        "| scenario | algorithm | trial durations | trials | seconds | trials/s | most running at once | refill p50 "
        "| refill p95 | operator writes per trial | operator 429s | operator peak RSS (+ worker) "
        "| operator CPU per trial (+ worker) | best value |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        operator, worker = r["usage"].get("operator", {}), r["usage"].get("suggestion worker", {})
        lines.append(
            f"| {_label(r)} | {r.get('algorithm', 'random')} | {r['durations']} | {r['trials']} of {r['planned']} | "
            f"{r['seconds']:.0f} | {r['trials_per_second']:.1f} | {r['max_running']} | {_ms(r['refill_p50'])} | "
            f"{_ms(r['refill_p95'])} | {r['operator_writes_per_trial']:.2f} | {r['operator_throttled']:.0f} | "
            f"{operator.get('rss_mib', 0):.0f} MiB (+ {worker.get('rss_mib', 0):.0f}) | "
            f"{_per_trial(r, operator, 'operator'):.1f} ms (+ {_per_trial(r, worker):.1f}) | "
            f"{_value(r.get('best'))} |")
    lines += ["", "## Targets", "", *targets(results), "", "## Suggestions, passes and the event loop", "",
              *suggestion_table(results), "", "## Evidence", "",
              "Where the CPU went (seconds over the scenario) and peak RSS, per component:", "",
              "| scenario | algorithm | " + " | ".join(COMPONENTS) + " |", "|---|---|" + "---:|" * len(COMPONENTS)]
    for r in results:
        usage = [r["usage"].get(c, {}) for c in COMPONENTS]
        cells = [f"{u.get('cpu_seconds', 0):.0f} s, {u.get('rss_mib', 0):.0f} MiB" for u in usage]
        lines.append(f"| {_label(r)} | {r.get('algorithm', 'random')} | " + " | ".join(cells) + " |")
    lines += ["", "The machine's load (its 1-minute load average, from every process on it, these and others') when "
              "each scenario began and ended: above the 2 cores, other work was waiting for them too:", ""]
    for r in results:
        load = r.get("load") or []
        lines.append(f"- {_name(r)}: " + (" then ".join(f"{value:.1f}" for value in load) if load else "not recorded"))
    lines += ["", "etcd and object sizes: growth of etcd's database in use per trial, and the JSON size of a Trial "
              "and of a Pod as the API serves them:", ""]
    for r in results:
        pod = (f"{r['pod_object_bytes'] / 1024:.1f} KiB" if r["pod_object_bytes"]
               else "none left at the end (deleted once their results were recorded: trialTemplate.retain)")
        lines.append(f"- {_name(r)}: {r['etcd_bytes_per_trial'] / 1024:.1f} KiB of etcd per trial; Trial "
                     f"{r['trial_object_bytes'] / 1024:.1f} KiB, Pod {pod}; "
                     f"429s: {r['http_429']:.0f} answered by kube-apiserver, {r['apf_rejected']:.0f} rejected by "
                     f"API Priority and Fairness, {r['operator_throttled']:.0f} retried by the operator")
    lines += ["", "The operator's own requests per trial (`kubetune_api_requests_total`):", ""]
    for r in results:
        lines.append(f"- {_name(r)}: " + ", ".join(f"{k} {v:.2f}" for k, v in r["operator_requests_per_trial"].items()))
    lines += ["", "API requests per trial, by verb and resource, as kube-apiserver counted them "
              "(`apiserver_request_total`, every client: the operator, the kubelet, the scheduler, the garbage "
              "collector; requests under 0.01 per trial left out):", ""]
    for r in results:
        counted = [(k, v) for k, v in r["apiserver_requests_per_trial"].items() if v >= 0.005]
        lines.append(f"- {_name(r)}: " + ", ".join(f"{k} {v:.2f}" for k, v in counted))
    lines += profile_section(path)
    lines.append("")
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


def suggestion_table(results: list[dict]) -> list[str]:
    lines = ["From the operator's `/metrics`: the suggestion calls (`kubetune_suggestion_seconds`, "
             "`kubetune_suggestions_total`), the reconciliation passes (`kubetune_reconcile_seconds`) and the event "
             "loop's lag (`kubetune_event_loop_lag_seconds`: how late a tick due every 0.1 s ran; the p99 and the "
             "slowest are histogram bucket bounds).", "",
             "| scenario | algorithm | suggestion calls | suggestions per call | time per call | slowest call "
             "| passes | time per pass | loop lag mean | loop lag p99 | slowest tick | ticks over 100 ms |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        calls, lag = r.get("suggestion_calls", 0), r.get("lag") or {}
        passes = r.get("passes", 0)
        lines.append(
            f"| {_label(r)} | {r.get('algorithm', 'random')} | {calls:.0f} | "
            f"{r.get('suggestions', 0) / calls if calls else 0:.1f} | "
            f"{_ms(r.get('suggestion_seconds', 0) / calls if calls else float('nan'))} | "
            f"≤ {_ms(r.get('suggestion_slowest', float('nan')))} | {passes:.0f} | "
            f"{_ms(r.get('pass_seconds', 0) / passes if passes else float('nan'))} | "
            f"{_ms(lag.get('mean', float('nan')))} | ≤ {_ms(lag.get('p99', float('nan')))} | "
            f"≤ {_ms(lag.get('slowest', float('nan')))} | {lag.get('over_100ms', float('nan')):.1%} |")
    return lines


def targets(results: list[dict]) -> list[str]:
    """Each target, met or not, with the figures it was judged on; a miss names the busiest component."""
    by_key = {(r["name"], r.get("algorithm", "random")): r for r in results}
    lines: list[str] = []

    def check(what: str, value: str, met: bool, r: dict, why: str | None = None) -> None:
        verdict = "met" if met else f"**missed**; {why or bottleneck(r)}"
        lines.append(f"- {what}: {value} ({_name(r)}): {verdict}.")

    gp, random = by_key.get(("one-experiment", "gp")), by_key.get(("one-experiment", "random"))
    if gp is not None:
        check("refill p95 under 1 s at 2,000 parallel ~60-s trials with gp", _ms(gp["refill_p95"]),
              gp["refill_p95"] < 1.0, gp, refill_evidence(gp, by_key))
    if gp is not None and random is not None:
        ratio = gp["refill_p95"] / random["refill_p95"]
        check("gp's refill p95 within 1.5x random's in the same run",
              f"{_ms(gp['refill_p95'])} against {_ms(random['refill_p95'])}, {ratio:.2f}x", ratio <= 1.5, gp,
              suggestion_evidence(gp))
        for r in (gp, random):
            rss = _rss(r)
            check("operator peak RSS under 500 MB (the operator and its suggestion worker)",
                  f"{rss:.0f} MiB = {rss / MIB_PER_MB:.0f} MB", rss / MIB_PER_MB < 500, r)
        for whose, cpu in (("the operator process's own", _cpu), ("with its suggestion worker", _cpu_with_worker)):
            gp_cpu, random_cpu = cpu(gp), cpu(random)
            why = None if whose.endswith("own") else suggestion_evidence(gp)
            check(f"operator CPU per trial with gp at most 10 ms ({whose})", f"{gp_cpu:.1f} ms", gp_cpu <= 10.0, gp,
                  why)
            check(f"operator CPU per trial with gp within 1.3x random's ({whose})",
                  f"{gp_cpu:.1f} ms against {random_cpu:.1f} ms, {gp_cpu / random_cpu:.2f}x",
                  gp_cpu <= 1.3 * random_cpu, gp, why)
    huge = by_key.get(("ten-thousand-gp", "gp"))
    if huge is not None:
        rss = _rss(huge)
        check("RSS under 500 MB with 10,000 parallel trials and gp (the operator and its suggestion worker)",
              f"{rss:.0f} MiB = {rss / MIB_PER_MB:.0f} MB with {huge['max_running']} running at once",
              rss / MIB_PER_MB < 500, huge)
    instant = by_key.get(("instant", "random"))
    if instant is not None:
        check("at least 100 trials/s with instant trials", f"{instant['trials_per_second']:.1f} trials/s",
              instant["trials_per_second"] >= 100, instant)
    for r in results:
        # deleting a recorded trial's pod (trialTemplate.retain, since 2026-12-07) is a write the target predates
        deletes = r["operator_requests_per_trial"].get("delete pods", 0.0)
        writes = r["operator_writes_per_trial"] - deletes
        shown = f"{writes:.2f}" + (f" (+ {deletes:.2f} deleting recorded trials' pods)" if deletes else "")
        check("at most 4 operator writes per trial, besides deleting a recorded trial's pod", shown, writes <= 4.0, r,
              writes_evidence(r))
    wide = by_key.get(("ten-thousand-running", "random"))
    if wide is not None:
        rss = _rss(wide)
        check("operator RSS under 500 MB at 10,000 running", f"{rss:.0f} MiB with {wide['max_running']} running at "
              "once", rss / MIB_PER_MB < 500 and wide["max_running"] >= 10_000, wide)
    throttled = ", ".join(f"{r['operator_throttled']:.0f} ({_name(r)})" for r in results)
    lines.append(f"- no 429 storm: the operator got {throttled} 429s.")
    return lines


def refill_evidence(result: dict, by_key: dict[tuple[str, str], dict]) -> str:
    """Why refills wait: the machine's CPU (and how the refill compares with random's in the same run)."""
    text = f"{suggestion_evidence(result)}; {bottleneck(result)}"
    random = by_key.get((result["name"], "random"))
    if random is not None:
        text += f"; random in the same run: p95 {_ms(random['refill_p95'])}, {random['trials_per_second']:.1f} trials/s"
    return text


def writes_evidence(result: dict) -> str:
    """Which of the operator's own requests make up its writes per trial."""
    writes = {request: count for request, count in result["operator_requests_per_trial"].items()
              if request.split()[0] in WRITES and count >= 0.005}
    parts = ", ".join(f"{request} {count:.2f}" for request, count in sorted(writes.items()))
    return (f"the writes are {parts}: a Trial, its Pod, its status marked Running and its result (4), plus the "
            "Experiment's status, patched when it changed and at most every 2 s per experiment, which adds "
            "most where experiments are small (and, where it is counted apart, the pod deleted once its trial's "
            "result is recorded)")


def bottleneck(result: dict) -> str:
    """The machine's CPU use over the scenario, and which component used the most of it."""
    usage = {name: u.get("cpu_seconds", 0.0) for name, u in result["usage"].items()}
    total = sum(usage.values())
    busy = total / max(result["seconds"] * CORES, 1e-9)
    top = sorted(usage.items(), key=lambda item: -item[1])[:3]
    trials = max(result["trials"], 1)
    shares = ", ".join(f"{name} {seconds / max(total, 1e-9):.0%} ({seconds / trials * 1000:.0f} ms per trial)"
                       for name, seconds in top)
    saturated = "saturated" if busy >= 0.85 else "not saturated"
    return f"the {CORES} cores were {busy:.0%} busy on average ({saturated}); of the CPU used, {shares}"


def profile_section(path: Path) -> list[str]:
    """py-spy's view of the operator process before the cuts and now (``--profile-as before|after``), from
    ``operator_scale_profile.json`` beside the report."""
    profiles_path = path.parent / PROFILES
    if not profiles_path.exists():
        return []
    profiles: dict[str, Any] = json.loads(profiles_path.read_text())
    before, after = profiles.get("before"), profiles.get("after")
    lines = ["", "## Where the operator's CPU goes (py-spy)", "",
             "Samples of the thread holding the operator process's GIL (py-spy `--gil`, 50 a second) over the whole "
             "scenario, as a share of all its samples; its suggestion worker is left out. *By kubetune function*: the "
             "innermost kubetune function on the stack, what of the operator's own work the time was spent for (no "
             "kubetune frame: kopf's, the client's or asyncio's own work, named by the library under the event "
             "loop). *By package*: the package of the function on top. *Self*: the function on top."]
    for key, profile in (("before", before), ("after", after)):
        if profile:
            lines.append(f"- {key}: {profile['note']} (`{profile['command']}`), {profile['samples']} samples")
    for what, title in (("kubetune", "By kubetune function"), ("package", "By package"), ("self", "Self")):
        lines += ["", f"{title}:", ""]
        columns = [(key, table(p["profile"], what, rows=12)) for key, p in (("before", before), ("after", after)) if p]
        lines.append("| " + " | ".join(f"{key} | share" for key, _ in columns) + " |")
        lines.append("|" + "---|---:|" * len(columns))
        for i in range(max(len(rows) for _, rows in columns)):
            cells = []
            for _, rows in columns:
                name, share = (rows[i].strip("|").rsplit("|", 1) if i < len(rows) else ["", ""])
                cells += [name.strip(), share.strip()]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _per_trial(result: dict, usage: dict, component: str = "") -> float:
    """ms of CPU per trial; the operator's counted from the moment the experiments were created."""
    start = result.get("operator_cpu_at_start", 0.0) if component == "operator" else 0.0
    return (usage.get("cpu_seconds", 0.0) - start) / max(result["trials"], 1) * 1000


def _cpu(result: dict) -> float:
    """ms of CPU per trial of the operator process."""
    return _per_trial(result, result["usage"].get("operator", {}), "operator")


def _cpu_with_worker(result: dict) -> float:
    """ms of CPU per trial, the operator and its suggestion worker together."""
    return _cpu(result) + _per_trial(result, result["usage"].get("suggestion worker", {}))


def suggestion_evidence(result: dict) -> str:
    """How long the suggestion calls took and what the worker spent on them."""
    calls = max(result.get("suggestion_calls", 0), 1)
    return (f"the suggestion worker spent {_per_trial(result, result['usage'].get('suggestion worker', {})):.1f} ms "
            f"per trial: {result.get('suggestion_calls', 0):.0f} calls of {result.get('suggestions', 0) / calls:.1f} "
            f"suggestions, {_ms(result.get('suggestion_seconds', 0) / calls)} each (the slowest "
            f"≤ {_ms(result.get('suggestion_slowest', float('nan')))})")


def _rss(result: dict) -> float:
    """MiB, the peaks of the operator and its suggestion worker summed (no less than they ever held at once)."""
    return sum(result["usage"].get(c, {}).get("rss_mib", 0.0) for c in ("operator", "suggestion worker"))


def _label(result: dict) -> str:
    return result["label"] + (" (quick)" if result.get("quick") else "")


def _name(result: dict) -> str:
    return f"{_label(result)}, {result.get('algorithm', 'random')}"


def _value(value: float | None) -> str:
    return "-" if value is None or value != value else f"{value:.4f}"


def _ms(seconds: float) -> str:
    return "-" if seconds != seconds else f"{seconds * 1000:.0f} ms"
