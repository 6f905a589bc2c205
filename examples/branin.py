"""A trial script for the quickstart: the Branin function, a standard optimization test problem with a
global minimum of 0.397887 at three points. It reads its parameters from the command line and reports the
value with kubetune's SDK."""

import argparse
import math
import time

import kubetune

parser = argparse.ArgumentParser()
parser.add_argument("--x1", type=float, required=True)
parser.add_argument("--x2", type=float, required=True)
parser.add_argument("--sleep", type=float, default=0.0, help="pretend to train for this many seconds")
args = parser.parse_args()

time.sleep(args.sleep)
a, b, c = 1.0, 5.1 / (4 * math.pi**2), 5 / math.pi
r, s, t = 6.0, 10.0, 1 / (8 * math.pi)
value = a * (args.x2 - b * args.x1**2 + c * args.x1 - r) ** 2 + s * (1 - t) * math.cos(args.x1) + s
kubetune.report(branin=value)
