"""A configurable trial for the runner tests: reports (x - 2)^2 and can be told to misbehave."""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, default=0.0)
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--exit", type=int, default=0, help="exit with this status")
parser.add_argument("--fail-attempts", type=int, default=0, help="fail the first N attempts (counted in --state)")
parser.add_argument("--state", help="folder for cross-attempt state")
parser.add_argument("--report", choices=["json", "keyvalue", "none", "nan", "sdk"], default="json")
parser.add_argument("--track", help="folder where running trials leave a file, to count concurrency")
parser.add_argument("--together", type=int, default=0,
                    help="trials numbered below N wait (at most a minute) until N trials run, then count")
parser.add_argument("--hold-from", type=int, default=None,
                    help="trials numbered N and above run until they are stopped")
args = parser.parse_args()

running = 1
if args.track:
    marker = Path(args.track) / os.environ["KUBETUNE_TRIAL"]
    marker.write_text(str(os.getpid()))
    running = len(list(Path(args.track).iterdir()))
    if int(os.environ["KUBETUNE_TRIAL"].rsplit("-", 1)[1]) < args.together:
        waited = time.monotonic() + 60
        while running < args.together and time.monotonic() < waited:
            time.sleep(0.02)
            running = len(list(Path(args.track).iterdir()))
if args.fail_attempts:
    counter = Path(args.state) / os.environ["KUBETUNE_TRIAL"]
    attempts = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(attempts))
    if attempts <= args.fail_attempts:
        print(f"failing attempt {attempts}", file=sys.stderr)
        sys.exit(3)
time.sleep(args.sleep)
if args.hold_from is not None and int(os.environ["KUBETUNE_TRIAL"].rsplit("-", 1)[1]) >= args.hold_from:
    time.sleep(3600)
value = (args.x - 2.0) ** 2
if args.report == "json":
    print(json.dumps({"loss": value, "concurrent": running, "step": 1}))
elif args.report == "keyvalue":
    print(f"epoch 1: loss={value} concurrent={running} lr=0.1")
elif args.report == "nan":
    print(f"loss={math.nan}")
elif args.report == "sdk":
    import kubetune

    kubetune.report(step=1, loss=value, concurrent=running)
if args.track:
    marker.unlink()
sys.exit(args.exit)
