"""The report of the quality benchmark at thousands of workers (:mod:`benchmarks.quality_scale`): Markdown tables
of median simple regret, the batch-256 / batch-32 ratio, the three targets judged, the batches the passes really
asked for, the time each case took, and a plot of regret against evaluations per case.

Targets: (a) batches of 256 within 2x the regret of batches of 32, per method; (b) at every worker count the
default GP at least as good as the exact GP and better than Optuna TPE; (c) at 8 and 32 workers (the
asynchronous benchmark, ``results/quality.json``) the default GP no worse than the exact GP. A comparison is on
median final regret; equal medians (within the problem's resolution: on the table, less than half a validation
sample apart, which several methods reach) are decided at the earlier checkpoints, ``2 x workers`` then
``workers`` evaluations.
"""

from __future__ import annotations

import itertools
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from benchmarks.problems import PROBLEMS

DEFAULT = "kubetune gp"
EXACT = "kubetune gp (exact)"
TPE = "Optuna TPE (constant liar)"
ASYNC_RAW = Path(__file__).parent / "results" / "quality.json"
# A run's regret at these checkpoints, in multiples of the workers (the last is the whole budget).
MILESTONES = ("1x", "2x", "final")
Group = tuple[str, str, int, int]  # problem, method, workers, batch


def _milestone_index(run: dict, milestone: str) -> int:
    if milestone == "final":
        return len(run["checkpoints"]) - 1
    return run["checkpoints"].index(int(milestone[:-1]) * run["workers"])


def regrets(results: list[dict]) -> dict[Group, np.ndarray]:
    """(problem, method, workers, batch) -> (seeds, checkpoints) simple regret."""
    grouped: dict[Group, list[dict]] = {}
    for r in results:
        grouped.setdefault((r["problem"], r["method"], r["workers"], r["batch"]), []).append(r)
    out = {}
    for key, runs in grouped.items():
        runs.sort(key=lambda r: r["seed"])
        optimum = PROBLEMS[key[0]].optimum
        reference = optimum if optimum is not None else min(min(r["best"]) for r in results if r["problem"] == key[0])
        out[key] = np.maximum(np.array([r["best"] for r in runs]) - reference, 0.0)
    return out


def medians(results: list[dict], table: dict[Group, np.ndarray]) -> dict[Group, dict[str, float]]:
    """Median regret over seeds at each milestone."""
    runs = {(r["problem"], r["method"], r["workers"], r["batch"]): r for r in results}
    return {key: {m: float(np.median(data[:, _milestone_index(runs[key], m)])) for m in MILESTONES}
            for key, data in table.items()}


def order(a: dict[str, float], b: dict[str, float], resolution: float = 0.0) -> int:
    """-1 when ``a`` has the lower median regret, 1 when ``b`` has, 0 when they are within ``resolution`` at every
    milestone (the final one decides first)."""
    for milestone in reversed(MILESTONES):
        if abs(a[milestone] - b[milestone]) > resolution:
            return -1 if a[milestone] < b[milestone] else 1
    return 0


def _fmt(value: float) -> str:
    return f"{value:.3g}" if np.isfinite(value) else "∞"


def ratio(high: float, low: float, resolution: float = 0.0) -> float:
    """``high / low``, each taken as at least ``resolution``; 1 when they are within it (both 0 included)."""
    if abs(high - low) <= resolution:
        return 1.0
    return max(high, resolution) / max(low, resolution) if max(low, resolution) > 0 else float("inf")


# -- sections -------------------------------------------------------------------------------------------------
def seed_counts(results: list[dict]) -> dict[Group, int]:
    counts: dict[Group, int] = {}
    for r in results:
        key = (r["problem"], r["method"], r["workers"], r["batch"])
        counts[key] = counts.get(key, 0) + 1
    return counts


def _seeds_at(counts: dict[Group, int], workers: int) -> str:
    at = [n for key, n in counts.items() if key[2] == workers]
    return f"{min(at)}" if min(at) == max(at) else f"{min(at)} to {max(at)}"


def header(results: list[dict]) -> list[str]:
    workers = sorted({r["workers"] for r in results})
    counts = seed_counts(results)
    factor = results[0]["budget"] / results[0]["workers"]
    return [
        "# Search quality at thousands of workers: the operator's pass pattern",
        "",
        f"`python -m benchmarks.quality_scale`, report made {time.strftime('%Y-%m-%d')} on {platform.machine()}, "
        f"{os.cpu_count()} cores, one BLAS thread per run. Simulated time: trial durations lognormal (median 1, "
        "sigma 0.3, the same sequence for every method at a seed); a pass every `1.1 * batch / workers` time "
        "units tells the method every trial that ended since the last pass and asks for every free slot in one "
        f"call, at most `batch` (the rest wait for the next pass). Each run has {factor:g} x workers evaluations. "
        "Seeds: " + ", ".join(f"{_seeds_at(counts, w)} at {w} workers" for w in workers) + " (a case with fewer "
        "seeds than others at its worker count says how many). Simple regret: best value found minus the optimum "
        "(for `svc-tabular`, the error of the table's best row); median over the seeds, lower is better, **bold** "
        "the best of the row.",
        "",
    ]


def batches(results: list[dict]) -> list[str]:
    """How big the passes' asks really were (the same for every method: they depend on the durations only)."""
    lines = ["## The batches the passes asked for", "",
             "Over every run of the case: asks per run, mean ask, share of asks at the cap, and the share of slots "
             "busy after the first `workers / batch` passes (which fill them) until the last ask.", "",
             "| workers | batch | pass interval | passes per run | asks per run | mean ask | at the cap | slots busy |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for workers, batch in sorted({(r["workers"], r["batch"]) for r in results}):
        runs = [r for r in results if (r["workers"], r["batch"]) == (workers, batch)]
        sizes = [(int(size), count) for r in runs for size, count in r["batch_sizes"].items()]
        asks = sum(count for _, count in sizes)
        mean = sum(size * count for size, count in sizes) / asks
        at_cap = sum(count for size, count in sizes if size == batch) / asks
        lines.append(f"| {workers} | {batch} | {runs[0]['interval']:.4g} | {np.mean([r['passes'] for r in runs]):.0f} "
                     f"| {asks / len(runs):.0f} | {mean:.1f} | {at_cap:.0%} | "
                     f"{np.nanmean([r['occupancy'] for r in runs]):.1%} |")
    return lines + [""]


def regret_tables(table: dict[Group, np.ndarray], stats: dict[Group, dict[str, float]],
                  methods: list[str]) -> list[str]:
    lines = ["## Median simple regret", "",
             "After `workers` (1x), `2 x workers` (2x) evaluations and the whole budget (final; with the first and "
             "third quartiles over the seeds).", ""]
    for problem in _problems(table):
        lines += [f"### {problem}", "", "| workers | batch | after | " + " | ".join(methods) + " |",
                  "|---:|---:|---|" + "---:|" * len(methods)]
        for workers, batch in sorted({(k[2], k[3]) for k in table if k[0] == problem}):
            most_seeds = max(len(data) for key, data in table.items() if key[2] == workers)
            for milestone in MILESTONES:
                cells = []
                for method in methods:
                    key = (problem, method, workers, batch)
                    cells.append(_cell(table[key], stats[key], milestone, most_seeds) if key in table else "")
                present = [stats[(problem, m, workers, batch)][milestone] if (problem, m, workers, batch) in stats
                           else np.inf for m in methods]
                best = float(np.min(present))
                cells = [f"**{c}**" if c and present[i] == best else c for i, c in enumerate(cells)]
                lines.append(f"| {workers} | {batch} | {milestone} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _cell(data: np.ndarray, stat: dict[str, float], milestone: str, most_seeds: int) -> str:
    if milestone != "final":
        return _fmt(stat[milestone])
    final = data[:, -1]
    cell = f"{_fmt(stat['final'])} [{_fmt(float(np.quantile(final, 0.25)))}, {_fmt(float(np.quantile(final, 0.75)))}]"
    seeds = len(final)
    return cell if seeds == most_seeds else f"{cell} ({seeds} seed{'s' if seeds > 1 else ''})"


def _problems(table: dict[Group, np.ndarray]) -> list[str]:
    return [p for p in PROBLEMS if any(k[0] == p for k in table)]


def target_a(table: dict[Group, np.ndarray], stats: dict[Group, dict[str, float]], methods: list[str]) -> list[str]:
    """The largest batch against the smallest (256 and 32 in the benchmark's matrix)."""
    sizes = sorted({k[3] for k in table})
    small, large = sizes[0], sizes[-1]
    lines = [f"## (a) Batches of {large} within 2x the regret of batches of {small}", "",
             f"Median final regret with batch {large} divided by that with batch {small}: 1 where they are equal (0 "
             "included) or, on `svc-tabular`, less than half a validation sample apart (a regret below that counts "
             f"as that much, {PROBLEMS['svc-tabular'].resolution:.2g}).", "",
             "| problem | workers | " + " | ".join(methods) + " |", "|---|---:|" + "---|" * len(methods)]
    verdicts = []
    for problem in _problems(table):
        for workers in sorted({k[2] for k in table if k[0] == problem}):
            cells = []
            for method in methods:
                low, high = stats.get((problem, method, workers, small)), stats.get((problem, method, workers, large))
                if low is None or high is None or small == large:
                    cells.append("")
                    continue
                factor = ratio(high["final"], low["final"], PROBLEMS[problem].resolution)
                verdicts.append(factor <= 2)
                cells.append(f"{_fmt(factor)} {'✓' if factor <= 2 else '✗'}")
            lines.append(f"| {problem} | {workers} | " + " | ".join(cells) + " |")
    return lines + ["", f"Met in {sum(verdicts)} of {len(verdicts)} cases (✓ ratio ≤ 2).", ""]


def target_b(stats: dict[Group, dict[str, float]]) -> list[str]:
    lines = ["## (b) The default GP at least as good as the exact GP, and better than TPE", "",
             f"`{DEFAULT}` against `{EXACT}` and `{TPE}`, median final regret; equal medians (on `svc-tabular`: less "
             "than half a validation sample apart) are decided at 2x, then 1x workers evaluations.", "",
             "| problem | workers | batch | default | exact | ≤ exact | TPE | < TPE |",
             "|---|---:|---:|---:|---:|:---:|---:|:---:|"]
    judged = {"exact": [], "tpe": []}
    for problem, method, workers, batch in sorted((k for k in stats if k[1] == DEFAULT),
                                                  key=lambda k: (list(PROBLEMS).index(k[0]), k[2], k[3])):
        ours = stats[(problem, method, workers, batch)]
        cells = []
        for name, peer in (("exact", EXACT), ("tpe", TPE)):
            theirs = stats.get((problem, peer, workers, batch))
            if theirs is None:
                cells += ["", "not run"]
                continue
            verdict = order(ours, theirs, PROBLEMS[problem].resolution)
            met = verdict <= 0 if name == "exact" else verdict < 0
            judged[name].append(met)
            cells += [_fmt(theirs["final"]), "yes" if met else "tie (no)" if verdict == 0 else "**no**"]
        lines.append(f"| {problem} | {workers} | {batch} | {_fmt(ours['final'])} | " + " | ".join(cells) + " |")
    lines.append("")
    for name, peer in (("exact", EXACT), ("tpe", TPE)):
        verdicts = judged[name]
        lines.append(f"- against `{peer}`: " + (f"met in {sum(verdicts)} of {len(verdicts)} cases." if verdicts else
                                                "not judged: no runs of it (skipped or not asked for)."))
    return lines + [""]


def target_c(raw: Path = ASYNC_RAW) -> list[str]:
    """From the asynchronous benchmark's runs at 8 and 32 workers (``python -m benchmarks.quality``)."""
    lines = ["## (c) At 8 and 32 workers, no worse than today", ""]
    results = json.loads(raw.read_text()) if raw.exists() else []
    runs = {(r["problem"], r["method"], r["q"]): [] for r in results}
    for r in results:
        runs[(r["problem"], r["method"], r["q"])].append(r["best"][-1] - (PROBLEMS[r["problem"]].optimum or 0.0))
    pairs = sorted((p, q) for p, m, q in runs if m == DEFAULT and q in (8, 32) and (p, EXACT, q) in runs)
    if not pairs:
        return lines + [f"Not judged: `{raw.name}` has no `{EXACT}` runs at 8 or 32 workers to compare `{DEFAULT}` "
                        f"with (`python -m benchmarks.quality --methods '{DEFAULT}' '{EXACT}' --q 8 32 --replace` "
                        "makes them once the installed kubetune has the GP's `model` setting).", ""]
    lines += [f"`{DEFAULT}` against `{EXACT}` in `{raw.name}` (100 evaluations, workers told at once): median final "
              "value minus the optimum (for digits-svc, minus nothing: compared as the error itself).", "",
              "| problem | workers | default | exact | ≤ exact |", "|---|---:|---:|---:|:---:|"]
    verdicts = []
    for problem, q in pairs:
        ours, theirs = float(np.median(runs[(problem, DEFAULT, q)])), float(np.median(runs[(problem, EXACT, q)]))
        verdicts.append(ours <= theirs)
        lines.append(f"| {problem} | {q} | {_fmt(ours)} | {_fmt(theirs)} | {'yes' if ours <= theirs else '**no**'} |")
    return lines + ["", f"Met in {sum(verdicts)} of {len(verdicts)} cases.", ""]


def costs(results: list[dict], methods: list[str]) -> list[str]:
    lines = ["## Time per run", "",
             "CPU seconds (one thread) of one run, the simulation included, mean over its runs, and in brackets the "
             "milliseconds per suggestion the method spent in ask and tell; the last column is the slowest single ask "
             "(one call for a whole batch) of any run of the row, in seconds. CPU time, because other jobs shared the "
             "machine: wall-clock time would be inflated by them.", "",
             "| problem | workers | batch | " + " | ".join(methods) + " | slowest ask (s) |",
             "|---|---:|---:|" + "---:|" * (len(methods) + 1)]
    for problem, workers, batch in sorted({(r["problem"], r["workers"], r["batch"]) for r in results},
                                          key=lambda k: (list(PROBLEMS).index(k[0]), k[1], k[2])):
        cells, slowest = [], 0.0
        for method in methods:
            runs = [r for r in results if (r["problem"], r["method"], r["workers"], r["batch"]) ==
                    (problem, method, workers, batch)]
            if not runs:
                cells.append("")
                continue
            per_trial = 1000 * np.mean([r["suggest_seconds"] / r["evaluations"] for r in runs])
            cells.append(f"{np.mean([r['cpu'] for r in runs]):.3g} ({per_trial:.2g})")
            slowest = max(slowest, max(r["slowest_ask_seconds"] for r in runs))
        lines.append(f"| {problem} | {workers} | {batch} | " + " | ".join(cells) + f" | {slowest:.2f} |")
    return lines + [""]


def plot(table: dict[Group, np.ndarray], results: list[dict], methods: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = _problems(table)
    workers = sorted({k[2] for k in table})
    marks = {r["workers"]: r["checkpoints"] for r in results}
    colours = {m: plt.get_cmap("tab10")(i) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(len(problems), len(workers), figsize=(4.4 * len(workers), 3.3 * len(problems)),
                             squeeze=False)
    for row, problem in enumerate(problems):
        for col, w in enumerate(workers):
            ax = axes[row][col]
            for method, batch in itertools.product(methods, sorted({k[3] for k in table})):
                data = table.get((problem, method, w, batch))
                if data is None:
                    continue
                ax.plot(marks[w], np.maximum(np.median(data, axis=0), 1e-8), color=colours[method],
                        linestyle="-" if batch == min(k[3] for k in table) else "--",
                        linewidth=2 if method == DEFAULT else 1, label=f"{method}, batch {batch}")
            ax.set_yscale("log")
            ax.set_title(f"{problem}, {w} workers", fontsize=10)
            ax.set_xlabel("evaluations")
            if col == 0:
                ax.set_ylabel("simple regret (median)")
            if ax.has_data():
                ax.legend(fontsize=6)
            else:
                ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def report(raw: Path, out: Path) -> str:
    """Writes ``quality_scale.md`` and ``quality_scale.png`` into ``out`` from ``raw``; returns the Markdown."""
    results = json.loads(raw.read_text())
    if not results:
        raise SystemExit(f"error: {raw} holds no runs")
    table = regrets(results)
    stats = medians(results, table)
    methods = [m for m in dict.fromkeys(r["method"] for r in sorted(results, key=_method_rank))]
    lines = (header(results) + regret_tables(table, stats, methods) + target_a(table, stats, methods)
             + target_b(stats) + target_c() + batches(results) + costs(results, methods))
    text = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality_scale.md").write_text(text)
    plot(table, results, methods, out / "quality_scale.png")
    print(f"wrote {out / 'quality_scale.md'} and {out / 'quality_scale.png'}")
    return text


def _method_rank(run: dict) -> tuple[int, str]:
    from benchmarks.methods import METHODS

    names = list(METHODS)
    return (names.index(run["method"]) if run["method"] in names else len(names), run["method"])
