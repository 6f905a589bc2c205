"""The report of the early-stopping benchmark, made from its JSON results: the regret level per problem,
training steps and simulated time to reach it per method (median and quartiles over seeds), the targets,
what the optimizer should be told of a stopped trial, the Markdown and the PNG."""

from __future__ import annotations

import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from benchmarks.learning_curves import CURVE_PROBLEMS, MAX_EPOCHS
from benchmarks.stopping_methods import STOPPING_METHODS

BASELINE = "kubetune random, no stopping"
OURS = "kubetune random + asha"
OURS_FAIL = "kubetune random + asha, fail stopped"
GP_TELL, GP_FAIL = "kubetune gp + asha", "kubetune gp + asha, fail stopped"
HYPERBAND, RAY = "Optuna random + HyperbandPruner", "Ray Tune ASHAScheduler (random points)"
NEVER = 1e12  # stands for "not reached within the budget" in quantiles


def reference(results: list[dict], problem: str) -> float:
    """The known optimum, or the best final value any run found."""
    optimum = CURVE_PROBLEMS[problem].optimum
    return optimum if optimum is not None else min(r["best"] for r in results if r["problem"] == problem)


def level(results: list[dict], problem: str) -> float:
    """The regret random search without stopping reaches with its whole budget: the median over seeds."""
    ref = reference(results, problem)
    return float(np.median([r["best"] - ref for r in results if (r["problem"], r["method"]) == (problem, BASELINE)]))


def first_hit(run: dict, ref: float, target: float) -> tuple[float, float]:
    """(steps, time) at which the run's best completed trial first came within ``target`` regret."""
    for steps, clock, best in run["hits"]:
        if best - ref <= target + 1e-12:
            return float(steps), float(clock)
    return NEVER, NEVER


def summarize(results: list[dict]) -> dict[str, dict[str, dict]]:
    """problem -> method -> the figures of the tables (steps and time to the level, as sorted lists)."""
    out: dict[str, dict[str, dict]] = {}
    for problem in [p for p in CURVE_PROBLEMS if any(r["problem"] == p for r in results)]:
        ref, target = reference(results, problem), level(results, problem)
        out[problem] = {}
        for method in [m for m in STOPPING_METHODS if any(r["method"] == m for r in results)]:
            runs = sorted((r for r in results if (r["problem"], r["method"]) == (problem, method)),
                          key=lambda r: r["seed"])
            if not runs:
                continue
            hits = [first_hit(r, ref, target) for r in runs]
            out[problem][method] = {
                "steps": [h[0] for h in hits], "time": [h[1] for h in hits], "seeds": len(runs),
                "reached": sum(h[0] < NEVER for h in hits), "regret": [r["best"] - ref for r in runs],
                "started": float(np.mean([r["started"] for r in runs])),
                "stopped": float(np.mean([r["stopped"] for r in runs])),
                "hits": [r["hits"] for r in runs], "level": target, "reference": ref,
                "wall": float(np.mean([r["wall"] for r in runs])),
            }
    return out


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, median, q3 = np.quantile(np.array(values, dtype=float), [0.25, 0.5, 0.75])
    return float(q1), float(median), float(q3)


def _fmt(value: float, digits: str = ".0f") -> str:
    return "never" if value >= NEVER / 10 else format(value, digits)


def _cell(values: list[float]) -> str:
    q1, median, q3 = quartiles(values)
    return f"{_fmt(median)} [{_fmt(q1)}, {_fmt(q3)}]"


def machine() -> str:
    """The CPU's model name where Linux tells it, else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.machine()


def versions() -> str:
    found = []
    for package in ("optuna", "ray", "scikit-learn", "numpy"):
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} not installed")
    return ", ".join(found)


def table(problem: str, rows: dict[str, dict], budget: int) -> list[str]:
    base = float(budget)  # what no stopping needs to reach the level, by the level's definition
    first = next(iter(rows.values()))
    known = CURVE_PROBLEMS[problem].optimum is not None
    against = "the known optimum" if known else "the best final value any run found"
    lines = [f"### {problem}", "",
             f"Regret level: {first['level']:.4g} (against {first['reference']:.6g}, {against}).",
             "", "| method | steps to the level | time to the level | reached | steps / budget | final regret | "
             "trials started | stopped | seconds per run |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for method, row in rows.items():
        median = quartiles(row["steps"])[1]
        ratio = f"{median / base:.2f}" if median < NEVER / 10 and base < NEVER / 10 else "n/a"
        q1, regret, q3 = quartiles(row["regret"])
        lines.append(f"| {method} | {_cell(row['steps'])} | {_cell(row['time'])} | {row['reached']}/{row['seeds']} | "
                     f"{ratio} | {regret:.3g} [{q1:.3g}, {q3:.3g}] | {row['started']:.0f} | {row['stopped']:.0f} | "
                     f"{row['wall']:.1f} |")
    return lines + [""]


def targets(summary: dict[str, dict[str, dict]], budget: int) -> tuple[list[str], bool]:
    lines = ["## Target", "",
             "kubetune's ASHA (random search, `kubetune random + asha`) reaches the level with at most a third "
             "of the steps no stopping needs, and with fewer steps than Optuna's HyperbandPruner and Ray "
             "Tune's ASHAScheduler (medians over seeds). No stopping needs its whole budget: the level is the median "
             "of what it reaches with it, so half its seeds reach the level only then or never (its own median "
             "first hit in the tables is therefore `never` or close to the budget).", "",
             "| problem | kubetune ASHA | no stopping (budget) | ratio | ≤ 1/3 | Optuna Hyperband | fewer | "
             "Ray Tune ASHA | fewer |",
             "|---|---:|---:|---:|:---:|---:|:---:|---:|:---:|"]
    met = True
    for problem, rows in summary.items():
        if OURS not in rows:
            continue
        ours = quartiles(rows[OURS]["steps"])[1]
        figures = [float(budget)] + [quartiles(rows[m]["steps"])[1] if m in rows else float("nan")
                                     for m in (HYPERBAND, RAY)]
        checks = [ours <= figures[0] / 3, ours < figures[1], ours < figures[2]]
        met = met and all(checks)
        cells = [f"{_fmt(f)} | {'yes' if ok else 'no'}" for f, ok in zip(figures, checks, strict=True)]
        cells[0] = f"{budget} | {_fmt(ours / budget, '.2f') if ours < NEVER / 10 else 'n/a'} | {_yes(checks[0])}"
        lines.append(f"| {problem} | {_fmt(ours)} | " + " | ".join(cells) + " |")
    lines += ["", "Seed by seed against Ray Tune's ASHA, which runs on the same points (so only the rule differs): "
              + "; ".join(f"{problem}: {_paired(rows[OURS]['steps'], rows[RAY]['steps'])}"
                          for problem, rows in summary.items() if OURS in rows and RAY in rows) + ".",
              "", f"**Target {'met' if met else 'not met'}.**", ""]
    return lines, met


def _paired(ours: list[float], theirs: list[float]) -> str:
    first = sum(a < b for a, b in zip(ours, theirs, strict=True))
    later = sum(a > b for a, b in zip(ours, theirs, strict=True))
    return f"kubetune first on {first} seeds, later on {later}, the same step on {len(ours) - first - later}"


def misses(summary: dict[str, dict[str, dict]], budget: int, fidelity_path: Path) -> list[str]:
    """Where the target is missed, with the figures that say why: how the other successive-halving rules
    fare on the same problem, and how well early epochs predict the last there."""
    noise = {}
    if fidelity_path.exists():
        noise = {e["problem"]: e for e in json.loads(fidelity_path.read_text())}
    lines = []
    for problem, rows in summary.items():
        if OURS not in rows:
            continue
        ours = quartiles(rows[OURS]["steps"])[1]
        peers = {m: quartiles(rows[m]["steps"])[1] for m in (RAY, "Optuna random + SuccessiveHalvingPruner",
                                                             HYPERBAND, GP_TELL, GP_FAIL) if m in rows}
        failed = []
        if ours > budget / 3:
            failed.append(f"a third of the budget ({budget / 3:.0f} steps): it needs {_fmt(ours)}, "
                          f"{ours / budget:.2f} of the budget")
        failed += [f"{m} ({_fmt(peers[m])} steps)" for m in (HYPERBAND, RAY) if m in peers and ours >= peers[m]]
        if not failed:
            continue
        text = (f"**{problem}**: kubetune's ASHA misses " + "; ".join(failed) + ". The other rules on it: "
                + ", ".join(f"{m} {_fmt(v)}" for m, v in peers.items()) + ".")
        entry = noise.get(problem)
        if entry:
            rung = entry["rungs"]["1"]
            text += (f" Early epochs predict the last poorly where it matters: among the best quarter of random "
                     f"points the rank correlation of the first epoch's value with the final one is "
                     f"{rung['rho_best_quarter']:.2f} (rung 3: {entry['rungs']['3']['rho_best_quarter']:.2f}, rung 9: "
                     f"{entry['rungs']['9']['rho_best_quarter']:.2f}), and the first rung's top third keeps "
                     f"{rung['best_tenth_kept']:.0%} of the best tenth; the final value of one point varies by "
                     f"{entry['final_noise']:.3g} (standard deviation) from one training stream to another, about the "
                     f"regret level ({rows[OURS]['level']:.3g}), so reaching the level is partly a draw that "
                     "needs many completed trials, and stopping completes fewer of them.")
        lines.append(text)
    return ["## Where the target is missed, and why", "", *[line + "\n" for line in lines]] if lines else []


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


def telling(summary: dict[str, dict[str, dict]]) -> list[str]:
    lines = ["## What the optimizer is told of a stopped trial", "",
             "`TELL_EARLY_STOPPED = True` tells the optimizer a stopped trial's last value; `False` fails the trial "
             "(never suggested again, no value). Random search ignores values, so its two rows are the same runs "
             "(checked below); the choice matters to a model-based sampler, measured with `gp`.", "",
             "| problem | random: identical runs | gp, told its last value: steps | gp, failed: steps | "
             "told / failed (median steps) | seeds: told first, failed first | gp, told: final regret | "
             "gp, failed: final regret |",
             "|---|:---:|---:|---:|---:|---:|---:|---:|"]
    votes: list[bool] = []
    for problem, rows in summary.items():
        same = (OURS in rows and OURS_FAIL in rows and rows[OURS]["hits"] == rows[OURS_FAIL]["hits"])
        if GP_TELL in rows and GP_FAIL in rows:
            told, failed = quartiles(rows[GP_TELL]["steps"])[1], quartiles(rows[GP_FAIL]["steps"])[1]
            ratio = f"{told / failed:.2f}" if max(told, failed) < NEVER / 10 else "n/a"
            regrets = [quartiles(rows[m]["regret"]) for m in (GP_TELL, GP_FAIL)]
            votes.append(told < failed)
            lines.append(f"| {problem} | {_yes(same)} | {_cell(rows[GP_TELL]['steps'])} | "
                         f"{_cell(rows[GP_FAIL]['steps'])} | {ratio} | "
                         f"{sum(a < b for a, b in zip(rows[GP_TELL]['steps'], rows[GP_FAIL]['steps'], strict=True))}, "
                         f"{sum(a > b for a, b in zip(rows[GP_TELL]['steps'], rows[GP_FAIL]['steps'], strict=True))} | "
                         + " | ".join(f"{m:.3g} [{a:.3g}, {b:.3g}]" for a, m, b in regrets) + " |")
    if votes:
        verdict = ("told its last value (`True`)" if all(votes) else "failed (`False`)" if not any(votes)
                   else "neither everywhere")
        lines += ["", f"Fewer median steps to the level on every problem: {verdict}."]
    return lines + [""]


def report(raw: Path, out: Path, budget: int, quick: bool = False) -> dict:
    results = [r for r in json.loads(raw.read_text()) if r["budget"] == budget]
    summary = summarize(results)
    seeds = len({r["seed"] for r in results})
    lines = ["# Early stopping with asynchronous workers", "",
             f"`python -m benchmarks.early_stopping{' --quick' if quick else ''}`, run {time.strftime('%Y-%m-%d')} "
             f"on {machine()}, {os.cpu_count()} cores shared with other work "
             f"(Python {platform.python_version()}; {versions()}). "
             f"{seeds} seeds, {WORKERS_TEXT}, a budget of {budget} training steps ({budget // MAX_EPOCHS} full "
             f"trials of {MAX_EPOCHS} epochs). Steps and simulated time (one epoch = one unit) at which the best "
             "completed trial first came within the regret random search without stopping reaches with its "
             "whole budget (median over seeds of its final regret): median [first quartile, third quartile] over "
             "the seeds, `never` when not reached within the budget. Rules: kubetune median "
             "(minTrialsRequired 3, startStep 4) and Optuna's MedianPruner with the same settings; every "
             "successive-halving rule from 1 epoch, reduction factor 3, 27 epochs at most. Ray Tune's "
             "`ASHAScheduler` is driven directly with the simulated clock (its `on_trial_add`, "
             "`on_trial_result`, `on_trial_complete`, as Tune's controller calls them) on kubetune's random "
             "points; Optuna's pruners through `study.ask`, `trial.report`, `trial.should_prune`, `study.tell` "
             "with Optuna's RandomSampler. Seconds per run: the real time a run took on this machine, its "
             "suggestions and rule decisions included; the learning curves a (problem, seed) computes are "
             "shared by its methods, so the first method to need a curve pays for it (no stopping, on "
             f"sgd-digits). The runs took {sum(r['wall'] for r in results) / 60:.1f} process-minutes in all, "
             f"{sum(r['wall'] for r in results if ' gp ' in r['method']) / 60:.1f} of them the gp rows.", ""]
    for problem, rows in summary.items():
        lines += table(problem, rows, budget)
    target_lines, met = targets(summary, budget)
    fidelity_path = out / "early_stopping_fidelity.json"
    lines += (target_lines + misses(summary, budget, fidelity_path) + telling(summary)
              + predictors(fidelity_path, summary))
    (out / "early_stopping.md").write_text("\n".join(lines) + "\n")
    plot(summary, out / "early_stopping.png", budget)
    print(f"wrote {out / 'early_stopping.md'} and {out / 'early_stopping.png'}")
    return {"summary": summary, "target_met": met}


def predictors(path: Path, summary: dict[str, dict[str, dict]]) -> list[str]:
    if not path.exists():
        return []
    lines = ["## How well early epochs predict the last", "",
             "Measured by the benchmark on random points of each problem: Spearman's rank correlation of the "
             "value at each rung with the final value (over all points, and over the best quarter by final "
             "value), the share of the best tenth that a rung's top third keeps, and the noise of the final "
             "value itself (standard deviation over 5 training streams of the same point, median over the best "
             "ten points), against the regret level.", "",
             "| problem | points | rung 1: ρ, ρ best quarter, best tenth kept | rung 3 | rung 9 | final-value noise "
             "| regret level |", "|---|---:|---|---|---|---:|---:|"]
    for entry in json.loads(path.read_text()):
        rows = summary.get(entry["problem"])
        target = f"{next(iter(rows.values()))['level']:.3g}" if rows else "n/a"
        cells = [f"{r['rho']:.2f}, {r['rho_best_quarter']:.2f}, {r['best_tenth_kept']:.0%}"
                 for r in entry["rungs"].values()]
        lines.append(f"| {entry['problem']} | {entry['configs']} | " + " | ".join(cells)
                     + f" | {entry['final_noise']:.3g} | {target} |")
    return lines + [""]


WORKERS_TEXT = "8 simulated asynchronous workers"


def _regret_curve(hits: list[list], ref: float, grid: np.ndarray) -> np.ndarray:
    values = np.full(grid.shape, np.nan)
    for steps, _, best in hits:
        values[grid >= steps] = best - ref
    return values


def plot(summary: dict[str, dict[str, dict]], path: Path, budget: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = list(summary)
    fig, axes = plt.subplots(2, len(problems), figsize=(7 * len(problems), 9), squeeze=False)
    grid = np.arange(1, budget + 1)
    for col, problem in enumerate(problems):
        rows = summary[problem]
        colours = {m: plt.get_cmap("tab10")(i) for i, m in enumerate(rows)}
        ax = axes[0][col]
        drawn = False
        for method, row in rows.items():
            curves = np.array([_regret_curve(h, row["reference"], grid) for h in row["hits"]])
            curves = np.where(np.isnan(curves), np.inf, curves)
            with np.errstate(invalid="ignore"):  # inf - inf between two never-reached seeds: nan, not drawn
                median = np.quantile(curves, 0.5, axis=0)
            median = np.where(np.isfinite(median), np.maximum(median, 1e-4), np.nan)  # 0 drawn at 1e-4
            ax.plot(grid, median, label=method, color=colours[method], linewidth=2.2 if method == OURS else 1)
            drawn = drawn or bool(np.isfinite(median).any())
        target = next(iter(rows.values()))["level"]
        ax.axhline(max(target, 1e-4), color="grey", linestyle=":", linewidth=1)
        if drawn:  # nothing to draw when no trial completed (a tiny budget)
            ax.set_yscale("log")
        ax.set_title(f"{problem}: regret of the best completed trial (median over seeds)", fontsize=9)
        ax.set_xlabel("training steps (epochs, all workers)")
        ax.legend(fontsize=7)
        box = axes[1][col]
        data = [np.minimum(row["steps"], budget * 1.05) for row in rows.values()]
        box.boxplot(data, orientation="horizontal", whis=(0, 100))
        box.set_yticks(range(1, len(rows) + 1), list(rows), fontsize=7)
        box.axvline(budget, color="grey", linestyle=":", linewidth=1)
        box.set_xlabel("training steps to the level (right of the dotted line: not reached)")
        box.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
