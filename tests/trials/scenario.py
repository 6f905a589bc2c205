"""The trial of the scenario suite: reports (x - 2)^2, or fails, as the plan in $SCENARIO_PLAN says for its
trial number and attempt: ok, slow (ok after ten minutes: the experiment ends before, however slow the
machine), fail or nometrics ({"default": ["ok"], "0": ["fail", "ok"]}: trial 0 fails its first attempt)."""

import json
import os
import sys
import time
from pathlib import Path

plan = json.loads(os.environ["SCENARIO_PLAN"])
number = os.environ["KUBETUNE_TRIAL"].rsplit("-", 1)[1]
counter = Path(os.environ["SCENARIO_STATE"]) / number
attempt = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(attempt))
endings = plan.get(number, plan["default"])
ending = endings[min(attempt, len(endings)) - 1]
x = json.loads(os.environ["KUBETUNE_PARAMS"])["x"]
if ending == "fail":
    print("boom", file=sys.stderr)
    sys.exit(3)
if ending == "slow":
    time.sleep(600)
if ending in ("ok", "slow"):
    print(json.dumps({"loss": (x - 2.0) ** 2}))
