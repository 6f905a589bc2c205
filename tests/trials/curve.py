"""A trial with a learning curve for the early-stopping tests: reports loss = (x - 2)^2 + 1/step at each step
up to --steps, sleeping --sleep seconds per step; leaves its pid in --track while it runs."""

import argparse
import json
import os
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float)
parser.add_argument("--steps", type=int, default=9)
parser.add_argument("--sleep", type=float, default=0.1)
parser.add_argument("--track")
args = parser.parse_args()
marker = Path(args.track) / os.environ["KUBETUNE_TRIAL"] if args.track else None
if marker:
    marker.write_text(str(os.getpid()))
for step in range(1, args.steps + 1):
    time.sleep(args.sleep)
    print(json.dumps({"step": step, "loss": (args.x - 2.0) ** 2 + 1.0 / step}), flush=True)
if marker:
    marker.unlink()
