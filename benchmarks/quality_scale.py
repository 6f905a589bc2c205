"""Search quality at thousands of workers, with the operator's pass pattern (:mod:`benchmarks.passes`): every
problem x workers x batch x method x seed is one simulated run of ``BUDGET_FACTOR * workers`` evaluations.

Raw results go to ``results/quality_scale.json`` (a run already there is not run again, so an interrupted
benchmark goes on where it stopped); ``results/quality_scale.md`` and ``.png`` are made from that file by
:mod:`benchmarks.quality_scale_report`. Methods whose settings the installed kubetune refuses (the GP's
``model`` before it exists) are skipped with one line each.

    python -m benchmarks.quality_scale [--workers 500 2000 5000] [--batch 32 256] [--methods ...]
                                       [--problems ...] [--seeds 500:5 2000:3 5000:2] [--jobs 2] [--replace]
    python -m benchmarks.quality_scale --report-only
"""

from __future__ import annotations

import os

# One BLAS thread per run; runs go in parallel processes instead (set before numpy is imported).
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks.methods import METHODS, refusal  # noqa: E402
from benchmarks.passes import Case, simulate_passes  # noqa: E402
from benchmarks.problems import PROBLEMS  # noqa: E402

RESULTS = Path(__file__).parent / "results"
RAW = RESULTS / "quality_scale.json"
WORKERS = (500, 2000, 5000)
BATCHES = (32, 256)
# Evaluations per run, in multiples of the workers: the first ``workers`` are mostly asked before anything is
# known (filling the slots takes about one trial duration), so the budget spans a few such generations.
BUDGET_FACTOR = 2.5
DEFAULT_METHODS = ("kubetune gp", "kubetune gp (exact)", "kubetune gp (scalable)", "random",
                   "Optuna TPE (constant liar)")
# The worker counts each problem runs at by default: the table has 30,420 rows, and 12,500 evaluations
# (5,000 workers) would try two fifths of it, which leaves nothing to tell the methods apart.
DEFAULT_PROBLEMS = {"hartmann6": WORKERS, "ackley20": WORKERS, "svc-tabular": (500, 2000)}
# Seeds per worker count: the large cases cost the most (Optuna TPE's ask grows with the trials it holds).
DEFAULT_SEEDS = {500: 5, 2000: 3, 5000: 2}
ANY = 0  # the key of a seed count that holds for every worker count


def budget_of(workers: int) -> int:
    return round(BUDGET_FACTOR * workers)


def cases(problems: list[str], methods: list[str], workers: list[int] | None, batches: list[int],
          seeds: dict[int, int]) -> list[Case]:
    """The matrix, largest runs first (so that the pool does not end on one long run)."""
    out = [Case(problem, method, w, batch, seed, budget_of(w))
           for problem in problems for w in (workers or DEFAULT_PROBLEMS.get(problem, WORKERS))
           for method in methods for batch in batches for seed in range(seeds.get(w, seeds.get(ANY, 1)))]
    return sorted(out, key=lambda case: -case.workers)


def runnable(methods: list[str]) -> list[str]:
    """The methods the installed kubetune can run; a line for each one it cannot."""
    kept = []
    for method in methods:
        reason = refusal(method)
        if reason:
            print(reason, flush=True)
        else:
            kept.append(method)
    return kept


def run(todo: list[Case], jobs: int, raw: Path, replace: bool = False) -> None:
    raw.parent.mkdir(parents=True, exist_ok=True)
    done = json.loads(raw.read_text()) if raw.exists() else []
    if replace:  # the cases asked for are run again; other runs of the same methods stay
        asked = {case.key[:4] for case in todo}
        done = [r for r in done if (r["problem"], r["method"], r["workers"], r["batch"]) not in asked]
    have = {(r["problem"], r["method"], r["workers"], r["batch"], r["seed"]) for r in done}
    missing = [case for case in todo if case.key not in have]
    print(f"{len(missing)} runs to do ({len(todo) - len(missing)} already in {raw})", flush=True)
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        for result in pool.imap_unordered(simulate_passes, missing):
            done.append(result)
            raw.write_text(json.dumps(done))
            mean_batch = sum(int(s) * n for s, n in result["batch_sizes"].items()) / sum(result["batch_sizes"].values())
            print(f"{result['problem']:>12} {result['method']:>28} workers={result['workers']:<5} "
                  f"batch={result['batch']:<4} seed={result['seed']:<2} best={result['best'][-1]:.5g} "
                  f"mean batch={mean_batch:.1f} wall={result['wall']:.1f}s", flush=True)


def _seeds(values: list[str]) -> dict[int, int]:
    """``N`` (every worker count: the key ``ANY``) or ``WORKERS:N`` pairs (a count not named gets one seed)."""
    if len(values) == 1 and ":" not in values[0]:
        return {ANY: int(values[0])}
    pairs = dict(value.split(":", 1) for value in values)
    return {int(w): int(n) for w, n in pairs.items()}


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="*", help=f"worker counts (default: per problem, {WORKERS})")
    parser.add_argument("--batch", type=int, nargs="*", default=list(BATCHES), help="the cap on a pass's ask")
    parser.add_argument("--methods", nargs="*", default=list(DEFAULT_METHODS))
    parser.add_argument("--problems", nargs="*", default=list(DEFAULT_PROBLEMS))
    parser.add_argument("--seeds", nargs="*", default=[f"{w}:{n}" for w, n in DEFAULT_SEEDS.items()],
                        help="N, or WORKERS:N pairs (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--replace", action="store_true",
                        help="run the cases asked for again, dropping their stored runs (after a kubetune change)")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--raw", type=Path, default=RAW, help="the results file to add to and report from")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the Markdown and the plot go")
    args = parser.parse_args(argv)
    checks = {
        "--methods": [m for m in args.methods if m not in METHODS],
        "--problems": [p for p in args.problems if p not in PROBLEMS],
        "--workers": [w for w in args.workers or [] if w < 1],
        "--batch": [b for b in args.batch if b < 1],
    }
    for option, bad in checks.items():
        if bad:
            known = {"--methods": list(METHODS), "--problems": list(PROBLEMS)}.get(option, "positive integers")
            parser.error(f"{option}: {', '.join(map(str, bad))} not accepted; choose from {known}")
    if args.jobs < 1:
        parser.error("--jobs: must be at least 1")
    try:
        args.seeds = _seeds(args.seeds)
    except ValueError:
        parser.error(f"--seeds: expected N or WORKERS:N pairs of integers, got {' '.join(args.seeds)}")
    if not args.seeds or min(args.seeds.values()) < 1:
        parser.error("--seeds: every count must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    from benchmarks.quality_scale_report import report

    args = _parse(argv)
    if not args.report_only:
        methods = runnable(args.methods)
        run(cases(args.problems, methods, args.workers, args.batch, args.seeds), args.jobs, args.raw, args.replace)
    if not args.raw.exists():
        raise SystemExit(f"error: {args.raw} does not exist; run the benchmark first")
    report(args.raw, args.out)


if __name__ == "__main__":
    main()
