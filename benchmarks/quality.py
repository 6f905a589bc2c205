"""Search quality with asynchronous workers: simple regret against evaluations, kubetune ``gp`` against
random, Sobol, scikit-optimize ``cl_min``, Optuna TPE with ``constant_liar=True`` and Optuna's GPSampler.

Trials are simulated: each takes a random time (uniform 0.5 to 1.5 units, the same sequence for every
method), ``q`` workers run them, and the moment one finishes the method is told its value and asked for the
next point, conditioned on the ``q - 1`` still running. Each run stops after ``budget`` evaluations.
Results (best value after each evaluation and its simulated time) go to ``results/quality.json``; the
Markdown table and the PNG of the regret curves are made from that file.

The parallel speed-up (simulated time for 8 workers to reach the regret random search reaches, against 1
worker) is a median of first-hit times, noisy over 10 seeds; ``--speedup-seeds N`` measures it again over N
seeds with runs that stop at that level (``results/speedup.json``, after the main runs, which set the level).

The same runs at 8 and 32 workers with ``kubetune gp (exact)`` (``algorithm.settings.model: exact``) are what the
default GP is held to at small scale; methods whose settings the installed kubetune refuses are skipped with one
line, and ``--replace`` runs the cases asked for again after a change to kubetune. Thousands of workers, with the
operator's pass pattern of large batches, are :mod:`benchmarks.quality_scale`.

    python -m benchmarks.quality [--seeds 10] [--q 1 8 32] [--methods ...] [--problems ...] [--jobs 2]
    python -m benchmarks.quality --methods "kubetune gp" "kubetune gp (exact)" --q 8 32 --replace
    python -m benchmarks.quality --speedup-seeds 200
    python -m benchmarks.quality --report-only
    python -m benchmarks.quality --methods "kubetune gp" random "kubetune tpe" "kubetune cmaes" \
        --raw benchmarks/results/quality_tpe_cmaes.json     # its report: quality_tpe_cmaes.md and .png

The report (Markdown and PNG) is named after the results file: ``quality.json`` gives ``quality.md``.
"""

from __future__ import annotations

import os

# One BLAS thread per run; runs go in parallel processes instead (set before numpy is imported).
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import heapq  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.methods import METHODS, durations, refusal  # noqa: E402
from benchmarks.problems import PROBLEMS  # noqa: E402

RESULTS = Path(__file__).parent / "results"
RAW = RESULTS / "quality.json"


# The peers kubetune gp's targets compare it with.
PEERS = ("scikit-optimize cl_min", "Optuna TPE (constant liar)")


def speedup_raw() -> Path:
    """The speed-up runs that go with the results file: ``quality.json`` has ``speedup.json``."""
    return RAW.with_name(RAW.name.replace("quality", "speedup", 1))
# The problems this benchmark runs by default (the ones added for the pass pattern run there).
DEFAULT_PROBLEMS = ("branin", "hartmann6", "six-hump-camel", "digits-svc")
# The expensive peers run where the targets compare (8 workers) unless asked otherwise.
DEFAULT_MATRIX = {
    "kubetune gp": (1, 8, 32),
    "kubetune gp (exact)": (8, 32),
    "random": (1, 8, 32),
    "sobol": (1, 8, 32),
    "kubetune tpe": (1, 8, 32),
    "kubetune cmaes": (1, 8, 32),
    "Optuna TPE (constant liar)": (1, 8, 32),
    "scikit-optimize cl_min": (8,),
    "Optuna GPSampler": (8,),
    "kubetune gp liar=min": (8,),
    "kubetune gp liar=mean": (8,),
    "kubetune gp liar=max": (8,),
    "kubetune gp liar=believer": (8,),
    "kubetune gp pendingPriorShift=0": (8,),
    "kubetune tpe multivariate=false": (8,),
    "kubetune cmaes popsize=8": (8,),
    "kubetune cmaes popsize=32": (32,),
}


def simulate(problem_name: str, method_name: str, q: int, seed: int, budget: int,
             stop_at: float | None = None) -> dict:
    """One run; with ``stop_at`` it ends as soon as the best value is at or below it."""
    problem = PROBLEMS[problem_name]
    method = METHODS[method_name](problem.parameters, seed)
    trial_durations = durations(seed, budget)
    running: list[tuple[float, int, object, dict]] = []
    asked = 0
    started = time.perf_counter()
    suggest_seconds = 0.0

    def launch(now: float) -> None:
        nonlocal asked, suggest_seconds
        t0 = time.perf_counter()
        token, params = method.ask()
        suggest_seconds += time.perf_counter() - t0
        heapq.heappush(running, (now + trial_durations[asked], asked, token, params))
        asked += 1

    for _ in range(min(q, budget)):
        launch(0.0)
    best, curve, times = float("inf"), [], []
    while running:
        now, _, token, params = heapq.heappop(running)
        value = problem.objective(params)
        t0 = time.perf_counter()
        method.tell(token, params, value)
        suggest_seconds += time.perf_counter() - t0
        best = min(best, value)
        curve.append(best)
        times.append(now)
        if stop_at is not None and best <= stop_at:
            break
        if asked < budget:
            launch(now)
    return {"problem": problem_name, "method": method_name, "q": q, "seed": seed, "best": curve,
            "time": times, "wall": time.perf_counter() - started, "suggest_seconds": suggest_seconds}


def _run(task: tuple) -> dict:
    return simulate(*task)


def run(tasks: list[tuple], jobs: int, raw: Path | None = None, replace: bool = False) -> None:
    raw = raw or RAW
    RESULTS.mkdir(parents=True, exist_ok=True)
    done = json.loads(raw.read_text()) if raw.exists() else []
    if replace:  # the cases asked for are run again; other runs of the same methods stay
        cases = {t[:3] for t in tasks}
        done = [r for r in done if (r["problem"], r["method"], r["q"]) not in cases]
    have = {(r["problem"], r["method"], r["q"], r["seed"]) for r in done}
    todo = [t for t in tasks if t[:4] not in have]
    print(f"{len(todo)} runs to do ({len(tasks) - len(todo)} already in {raw})", flush=True)
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        for result in pool.imap_unordered(_run, todo):
            done.append(result)
            raw.write_text(json.dumps(done))
            print(f"{result['problem']:>15} {result['method']:>28} q={result['q']:<3} seed={result['seed']:<3}"
                  f" best={result['best'][-1]:.5g} wall={result['wall']:.1f}s", flush=True)


# -- report ---------------------------------------------------------------------------------------------------
def regrets(results: list[dict]) -> dict[tuple, np.ndarray]:
    """(problem, method, q) -> (seeds, evaluations) array of simple regret."""
    references = {name: reference_value(results, name) for name in {r["problem"] for r in results}}
    grouped: dict[tuple, list] = {}
    for r in results:
        grouped.setdefault((r["problem"], r["method"], r["q"]), []).append(r)
    out = {}
    for key, runs in grouped.items():
        runs.sort(key=lambda r: r["seed"])
        out[key] = np.maximum(np.array([r["best"] for r in runs]) - references[key[0]], 0.0)
    return out


def reference_value(results: list[dict], problem: str) -> float:
    """What regret is measured from: the problem's optimum, or the best value any run found."""
    optimum = PROBLEMS[problem].optimum
    return optimum if optimum is not None else min(min(r["best"]) for r in results if r["problem"] == problem)


def reference_and_level(results: list[dict], problem: str) -> tuple[float, float]:
    """The reference value and the regret random search reaches with one worker after all evaluations
    (median over seeds): the level the speed-up is measured at."""
    reference = reference_value(results, problem)
    finals = [r["best"][-1] - reference for r in results
              if (r["problem"], r["method"], r["q"]) == (problem, "random", 1)]
    return reference, float(np.median(finals))


def speedup_tasks(results: list[dict], seeds: int, budget: int) -> list[tuple]:
    """Runs that stop at the level: 1 and 8 workers, and 8 with the neutral prior, on every problem."""
    tasks = []
    for problem in PROBLEMS:
        if not any(r["problem"] == problem and r["method"] == "random" and r["q"] == 1 for r in results):
            continue
        reference, level = reference_and_level(results, problem)
        for method, q in (("kubetune gp", 1), ("kubetune gp", 8), ("kubetune gp pendingPriorShift=0", 8)):
            tasks += [(problem, method, q, seed, budget, reference + level) for seed in range(seeds)]
    return tasks


def speedup_section(results: list[dict]) -> list[str]:
    if not speedup_raw().exists():
        return []
    runs = json.loads(speedup_raw().read_text())
    seeds = len({r["seed"] for r in runs})
    lines = ["## Parallel speed-up over more seeds", "",
             f"`python -m benchmarks.quality --speedup-seeds {seeds}`: the speed-up target again, from runs that "
             f"stop at the level ({seeds} seeds; the median time to a level is noisy with 10). Median simulated "
             "time to random search's regret.", "",
             "| problem | level | 1 worker | 8 workers | speed-up | 8 workers, neutral prior | speed-up |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for problem in PROBLEMS:
        if not any(r["problem"] == problem for r in runs):
            continue
        _, level = reference_and_level(results, problem)
        t1, t8, neutral = (time_to_reach(runs, problem, method, q, level, results) for method, q in
                           (("kubetune gp", 1), ("kubetune gp", 8), ("kubetune gp pendingPriorShift=0", 8)))
        lines.append(f"| {problem} | {level:.3g} | {t1:.2f} | {t8:.2f} | {_ratio(t1, t8)} | {neutral:.2f} | "
                     f"{_ratio(t1, neutral)} |")
    return lines + [""]


def time_to_reach(results: list[dict], problem: str, method: str, q: int, level: float,
                  all_results: list[dict] | None = None) -> float:
    """Median over seeds of the simulated time at which the best value first came within ``level`` regret
    (of the optimum, or of the best value found in ``all_results``, by default ``results``)."""
    reference = reference_value(all_results or results, problem)
    hits = []
    for r in results:
        if (r["problem"], r["method"], r["q"]) != (problem, method, q):
            continue
        reached = [t for b, t in zip(r["best"], r["time"], strict=True) if b - reference <= level]
        hits.append(reached[0] if reached else float("inf"))
    return float(np.median(hits)) if hits else float("nan")


def report(budget: int, note: str = "") -> None:
    results = json.loads(RAW.read_text())
    table = regrets(results)
    problems = [p for p in PROBLEMS if any(k[0] == p for k in table)]
    methods = [m for m in METHODS if any(k[1] == m for k in table)]
    qs = sorted({k[2] for k in table})
    seeds = sorted({r["seed"] for r in results})
    lines = [
        "# Search quality with asynchronous workers",
        "",
        f"`python -m benchmarks.quality`, run {time.strftime('%Y-%m-%d')} on {platform.machine()}, "
        f"{os.cpu_count()} cores; {len(seeds)} seeds, {budget} evaluations per run, simulated trial durations "
        "uniform in [0.5, 1.5]. Simple regret after the last evaluation: median [first quartile, third "
        "quartile] over the seeds (the digits task's regret is against the best accuracy any run found). "
        "Lower is better; **bold** is the best median of the row.",
        "",
        *([note, ""] if note else []),
    ]
    for q in qs:
        lines += [f"## {q} worker{'s' if q > 1 else ''}", "", "| problem | " + " | ".join(methods) + " |",
                  "|---|" + "---:|" * len(methods)]
        for problem in problems:
            cells, medians = [], []
            for method in methods:
                data = table.get((problem, method, q))
                if data is None:
                    cells.append("")
                    medians.append(np.inf)
                    continue
                final = data[:, -1]
                medians.append(np.median(final))
                cells.append(f"{np.median(final):.3g} [{np.quantile(final, 0.25):.3g}, {np.quantile(final, 0.75):.3g}]")
            best = int(np.argmin(medians))
            cells[best] = f"**{cells[best]}**"
            lines.append(f"| {problem} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += targets(results, table, problems)
    lines += speedup_section(results)
    lines += suggestion_cost(results, methods)
    RAW.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(table, problems, methods, qs)
    print(f"wrote {RAW.with_suffix('.md')} and {RAW.with_suffix('.png')}")


def targets(results: list[dict], table: dict, problems: list[str]) -> list[str]:
    if not any(key[1] in PEERS for key in table):
        return []  # a run of kubetune's own algorithms only
    lines = ["## Targets", "", "With 8 workers: kubetune gp's median regret against the better of scikit-optimize "
             "`cl_min` and Optuna TPE (constant liar), and against random search; and the speed-up of 8 "
             "workers over 1 in simulated time to reach the regret random search reaches after all evaluations "
             "(the last two columns: the same with a neutral prior while trials are pending, "
             "`pendingPriorShift: 0`).",
             "", "| problem | kubetune gp | better peer | ≤ better peer | random | ≤ 0.3 × random | "
             "time to random's regret, 1 worker | 8 workers | speed-up | 8 workers, neutral prior | speed-up |",
             "|---|---:|---:|:---:|---:|:---:|---:|---:|---:|---:|---:|"]

    def median(problem: str, method: str, q: int = 8) -> float:
        data = table.get((problem, method, q))
        return float(np.median(data[:, -1])) if data is not None else float("nan")

    for problem in problems:
        ours = median(problem, "kubetune gp")
        peers = [median(problem, m) for m in PEERS]
        peers = [p for p in peers if not np.isnan(p)]
        peer = min(peers) if peers else float("nan")
        rand = median(problem, "random", 1) if (problem, "random", 1) in table else median(problem, "random")
        t1 = time_to_reach(results, problem, "kubetune gp", 1, rand)
        t8 = time_to_reach(results, problem, "kubetune gp", 8, rand)
        neutral = time_to_reach(results, problem, "kubetune gp pendingPriorShift=0", 8, rand)
        beats_peer = "n/a" if np.isnan(peer) else "yes" if ours <= peer else "no"
        lines.append(f"| {problem} | {ours:.3g} | {peer:.3g} | {beats_peer} | {rand:.3g} | "
                     f"{'yes' if ours <= 0.3 * rand else 'no'} | {t1:.1f} | {t8:.1f} | {_ratio(t1, t8)} | "
                     f"{neutral:.1f} | {_ratio(t1, neutral)} |")
    return lines + [""]


def _ratio(t1: float, t8: float) -> str:
    return f"{t1 / t8:.1f}×" if t8 > 0 and np.isfinite(t8) else "n/a"


def suggestion_cost(results: list[dict], methods: list[str]) -> list[str]:
    lines = ["## Time spent suggesting", "", "Mean seconds per run spent in the method's ask and tell, 8 workers.",
             "", "| method | seconds per run |", "|---|---:|"]
    for method in methods:
        spent = [r["suggest_seconds"] for r in results if r["method"] == method and r["q"] == 8]
        if spent:
            lines.append(f"| {method} | {np.mean(spent):.2f} |")
    return lines + [""]


def plot(table: dict, problems: list[str], methods: list[str], qs: list[int]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in methods if "=" not in m]  # the ablations are in the tables only
    colours = {m: plt.get_cmap("tab10")(i) for i, m in enumerate(shown)}
    fig, axes = plt.subplots(len(qs), len(problems), figsize=(4.2 * len(problems), 3.2 * len(qs)), squeeze=False)
    for row, q in enumerate(qs):
        for col, problem in enumerate(problems):
            ax = axes[row][col]
            for method in shown:
                data = table.get((problem, method, q))
                if data is None:
                    continue
                x = np.arange(1, data.shape[1] + 1)
                median = np.median(data, axis=0)
                ax.plot(x, np.maximum(median, 1e-8), label=method, color=colours[method],
                        linewidth=2.2 if method == "kubetune gp" else 1)
                ax.fill_between(x, np.maximum(np.quantile(data, 0.25, axis=0), 1e-8),
                                np.maximum(np.quantile(data, 0.75, axis=0), 1e-8), color=colours[method], alpha=0.12)
            ax.set_yscale("log")
            ax.set_title(f"{problem}, {q} worker{'s' if q > 1 else ''}", fontsize=10)
            ax.set_xlabel("evaluations")
            if col == 0:
                ax.set_ylabel("simple regret (median, IQR)")
        axes[row][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RAW.with_suffix(".png"), dpi=90)


def _refused(method: str) -> bool:
    reason = refusal(method)
    if reason:
        print(reason, flush=True)
    return reason is not None


def main() -> None:
    global RAW
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--q", type=int, nargs="*", help="worker counts (default: the matrix in DEFAULT_MATRIX)")
    parser.add_argument("--methods", nargs="*", default=[m for m in DEFAULT_MATRIX if "=" not in m])
    parser.add_argument("--problems", nargs="*", default=list(DEFAULT_PROBLEMS))
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--speedup-seeds", type=int, metavar="N",
                        help="only the speed-up runs (stopping at the level) with N seeds, to speedup.json")
    parser.add_argument("--raw", type=Path, default=RAW, help="the results file to add to and report from")
    parser.add_argument("--note", default="", help="a paragraph for the report's head (how the runs were made)")
    parser.add_argument("--replace", action="store_true",
                        help="run the cases asked for again, dropping their stored runs (after a kubetune change)")
    args = parser.parse_args()
    for option, bad, known in (("--methods", [m for m in args.methods if m not in METHODS], METHODS),
                               ("--problems", [p for p in args.problems if p not in PROBLEMS], PROBLEMS)):
        if bad:
            parser.error(f"{option}: {', '.join(bad)} not accepted; choose from {list(known)}")
    RAW = args.raw
    if args.speedup_seeds:
        run(speedup_tasks(json.loads(RAW.read_text()), args.speedup_seeds, args.budget), args.jobs, speedup_raw())
    elif not args.report_only:
        methods = [m for m in args.methods if not _refused(m)]
        tasks = [(problem, method, q, seed, args.budget)
                 for method in methods for q in (args.q or DEFAULT_MATRIX.get(method, (8,)))
                 for problem in args.problems for seed in range(args.seeds)]
        run(tasks, args.jobs, replace=args.replace)
    report(args.budget, args.note)


if __name__ == "__main__":
    main()
