"""The reaper: a small process that outlives ``kubetune run`` just long enough to kill its trials.

Trials run in process groups of their own (so that Ctrl-C reaches the runner, which stops them cleanly),
which also means nothing kills them when the runner itself dies (``kill -9``, a closed terminal). The runner
starts one reaper in a session of its own and tells it, through a pipe, each trial process group it starts
(``+PGID``) and each that ended (``-PGID``). When the pipe closes, the runner is gone: the reaper sends
SIGTERM to every group still listed, then SIGKILL to any left after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

GRACE_SECONDS = 5.0


def reap(groups: set[int]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for group in list(groups):
            try:
                os.killpg(group, sig)
            except ProcessLookupError:
                groups.discard(group)
            except PermissionError:
                groups.discard(group)
        deadline = time.monotonic() + GRACE_SECONDS
        while groups and sig == signal.SIGTERM and time.monotonic() < deadline:
            time.sleep(0.1)
            for group in list(groups):
                with contextlib.suppress(OSError):
                    os.killpg(group, 0)
                    continue
                groups.discard(group)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin:
        sign, _, number = line.strip().partition(" ")
        with contextlib.suppress(ValueError):
            (groups.add if sign == "+" else groups.discard)(int(number))
    reap(groups)


if __name__ == "__main__":
    main()
