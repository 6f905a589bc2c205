"""Fractional GPU packing with real CUDA trials: ``kubetune run`` of the PyTorch example in
``examples/gpu-digits`` on this machine's GPUs, once per GPU share (1, 0.5, 0.25, 0.125 of a GPU per trial).

Every share runs the same trials (Sobol points from one seed), so the runs differ only in how many trials
share a GPU. While each run goes, ``nvidia-smi`` is polled for the processes holding a CUDA context. Reported
per share: wall time and trials per minute (and the gain over one trial per GPU), the most trials running at
once (from the runner's own start and end times) against what the share allows, the most CUDA processes
``nvidia-smi`` saw at once, the median trial duration, and whether every trial succeeded and trained on a GPU.

Needs a machine with an NVIDIA GPU and PyTorch built for CUDA:

    python -m benchmarks.gpu_packing [--shares 1 0.5 0.25 0.125] [--trials 16] [--epochs 300]
                                     [--out benchmarks/results/gpu_packing.md]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import yaml

from kubetune.core.gpu import GpuPool
from kubetune.runners.devices import detect_gpus

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "gpu-digits"


def manifest(share: float, trials: int, parallelism: int, epochs: int) -> dict:
    """The example's manifest with one GPU share, Sobol points (the same trials for every share) and a set
    number of epochs."""
    document = yaml.safe_load((EXAMPLE / "experiment.yaml").read_text())
    spec = document["spec"]
    spec["algorithm"] = {"name": "sobol"}
    spec.update(seed=0, parallelism=parallelism, maxTrials=trials)
    spec["trialTemplate"]["resources"]["gpu"] = share
    spec["trialTemplate"]["spec"]["containers"][0]["args"].append(f"--epochs={epochs}")
    document["metadata"]["name"] = f"gpu-share-{share:g}".replace(".", "-")
    return document


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of intervals that overlap at one instant (an end and a start at the same instant
    do not overlap)."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


class ComputeProcessSampler:
    """Polls ``nvidia-smi`` for the processes that hold a CUDA context, until stopped."""

    def __init__(self, period: float = 0.2):
        self.period = period
        self.peak = 0
        self.peak_memory_mib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> ComputeProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                result = subprocess.run(
                    ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                    capture_output=True, text=True, check=False)
            except FileNotFoundError:
                return
            rows = [line.split(",") for line in result.stdout.splitlines() if line.strip()]
            self.peak = max(self.peak, len(rows))
            memory = sum(int(row[1]) for row in rows if len(row) > 1 and row[1].strip().isdigit())
            self.peak_memory_mib = max(self.peak_memory_mib, memory)
            self._stop.wait(self.period)


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def run_share(share: float, trials: int, parallelism: int, epochs: int, gpus: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="kubetune-gpu-") as scratch:
        workdir = Path(scratch)
        shutil.copy(EXAMPLE / "train.py", workdir / "train.py")
        (workdir / "experiment.yaml").write_text(yaml.safe_dump(manifest(share, trials, parallelism, epochs)))
        started = time.perf_counter()
        with ComputeProcessSampler() as sampler:
            run = subprocess.run(
                [sys.executable, "-m", "kubetune.cli", "run", "experiment.yaml", "--out", "out", "--quiet"],
                cwd=workdir, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        if run.returncode != 0:
            raise SystemExit(f"share {share}: kubetune run exited {run.returncode}\n{run.stdout}\n{run.stderr}")
        records = [json.loads(line) for line in (workdir / "out" / "trials.jsonl").read_text().splitlines()]
    intervals = [(_seconds(r["started"]), _seconds(r["finished"])) for r in records]
    pool = GpuPool(gpus)
    return {
        "share": share,
        "trials": len(records),
        "succeeded": sum(r["state"] == "Succeeded" for r in records),
        "on_gpu": sum(r["metrics"].get("on_gpu") == 1.0 for r in records),
        "devices": sorted({device for r in records for device in r["devices"]}),
        "wall_s": wall,
        "trials_per_min": 60 * len(records) / wall,
        "allowed_at_once": min(parallelism, pool.capacity(share)),
        "most_at_once": most_at_once(intervals),
        "most_cuda_processes": sampler.peak,
        "peak_gpu_memory_mib": sampler.peak_memory_mib,
        "median_trial_s": statistics.median(end - start for start, end in intervals),
        "median_train_s": statistics.median(r["metrics"]["train_seconds"] for r in records),
        "best_accuracy": max(r["value"] for r in records if r["value"] is not None),
    }


def gpu_names() -> list[str]:
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return ["no nvidia-smi"]
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def report(rows: list[dict], trials: int, parallelism: int, epochs: int) -> str:
    import torch

    baseline = next((row["trials_per_min"] for row in rows if row["share"] == 1), None)
    lines = [
        "# Fractional GPU packing with real CUDA trials",
        "",
        f"`python -m benchmarks.gpu_packing` on {', '.join(gpu_names())}; {platform.processor() or 'x86-64'}, "
        f"Python {platform.python_version()}, PyTorch {torch.__version__}. Each share ran the same {trials} "
        f"trials (Sobol points, seed 0) of `examples/gpu-digits` ({epochs} epochs) through `kubetune run` "
        f"with parallelism {parallelism}.",
        "",
        "| GPU per trial | trials at once (allowed) | CUDA processes seen | succeeded / on GPU | wall (s) | "
        "trials/min | vs 1 GPU each | median trial (s) | median training (s) | peak GPU memory (MiB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        gain = f"{row['trials_per_min'] / baseline:.2f}x" if baseline else "-"
        lines.append(
            f"| {row['share']:g} | {row['most_at_once']} ({row['allowed_at_once']}) | {row['most_cuda_processes']} | "
            f"{row['succeeded']}/{row['trials']} / {row['on_gpu']} | {row['wall_s']:.1f} | "
            f"{row['trials_per_min']:.1f} | {gain} | {row['median_trial_s']:.1f} | {row['median_train_s']:.1f} | "
            f"{row['peak_gpu_memory_mib']} |")
    lines += [
        "",
        "Trials at once come from the runner's recorded start and end times; CUDA processes from polling "
        "`nvidia-smi --query-compute-apps` every 0.2 s (a trial holds a CUDA context from its first CUDA call "
        "to its exit, so it can show fewer than the runner counts); peak GPU memory is the most those processes "
        "held together, CUDA contexts included. Every trial's `CUDA_VISIBLE_DEVICES` was "
        f"one of {sorted({d for row in rows for d in row['devices']})}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shares", type=float, nargs="+", default=[1.0, 0.5, 0.25, 0.125])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--parallelism", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_packing.md")
    args = parser.parse_args(argv)
    gpus = detect_gpus()
    if not gpus:
        print("no GPU found (CUDA_VISIBLE_DEVICES or nvidia-smi): this benchmark needs one", file=sys.stderr)
        return 2
    rows = []
    for share in args.shares:
        rows.append(run_share(share, args.trials, args.parallelism, args.epochs, gpus))
        print(json.dumps(rows[-1]), flush=True)
    text = report(rows, args.trials, args.parallelism, args.epochs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
