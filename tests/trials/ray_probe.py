"""A trial for the Ray backend tests: reports loss = (x - 2)^2 after --sleep seconds, and leaves in --track a
JSON file with where it ran (its Ray node, CUDA_VISIBLE_DEVICES, its GPU share, $PROBE_EXTRA), its pid and when
it started and ended. With --together N the first N trials wait for each other, so that they run at once
however slowly the machine starts them."""

import argparse
import json
import os
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float)
parser.add_argument("--sleep", type=float, default=1.0)
parser.add_argument("--track")
parser.add_argument("--together", type=int, default=0,
                    help="trials numbered below N wait (at most a minute) until N trials have started")
args = parser.parse_args()
seen = {"trial": os.environ["KUBETUNE_TRIAL"], "pid": os.getpid(), "node": os.environ.get("KUBETUNE_RAY_NODE_ID"),
        "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "share": os.environ.get("KUBETUNE_GPU_SHARE"),
        "cwd": os.getcwd(), "extra": os.environ.get("PROBE_EXTRA"), "start": time.time()}
marker = Path(args.track) / f"{seen['trial']}.{os.getpid()}.json"
marker.write_text(json.dumps(seen))
if int(seen["trial"].rsplit("-", 1)[1]) < args.together:
    waited = time.monotonic() + 60
    while len(list(Path(args.track).glob("*.json"))) < args.together and time.monotonic() < waited:
        time.sleep(0.02)
time.sleep(args.sleep)
marker.write_text(json.dumps({**seen, "end": time.time()}))
print(json.dumps({"loss": (args.x - 2.0) ** 2}), flush=True)
