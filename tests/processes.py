"""Helpers for tests that check that a killed process is gone."""

from __future__ import annotations

import time
from pathlib import Path

TEARDOWN_SECONDS = 30.0


def process_ended(pid: int, within: float = TEARDOWN_SECONDS) -> bool:
    """True once the process no longer runs (a zombie nobody has reaped yet has ended too). Waits up to
    ``within`` seconds for a killed process to be torn down (a signal is delivered, and a process on another
    node is killed by its worker, a moment after the kill returns); it does not wait for a running one to end."""
    deadline = time.monotonic() + within
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
