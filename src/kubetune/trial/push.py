"""Pushing a report to the operator's report endpoint, for the early-stopping rules to judge the trial while
it runs (in a Kubernetes pod the operator gives ``$KUBETUNE_REPORT_URL`` and ``$KUBETUNE_REPORT_TOKEN``).

Standard library only, a short timeout, and never an exception: a report that cannot be delivered costs one
line on stderr (the first time only) and the trial keeps running, judged on what arrived.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 2.0
ATTEMPTS = 3
_warned: list[bool] = []


def deliver(values: dict[str, float | int]) -> bool:
    """Sends one report; True when the endpoint accepted it, False (quietly after the first warning) when it
    did not or no endpoint is configured."""
    url, token = os.environ.get("KUBETUNE_REPORT_URL"), os.environ.get("KUBETUNE_REPORT_TOKEN")
    if not url or not token:
        return False
    body = json.dumps({"trial": os.environ.get("KUBETUNE_TRIAL", ""),
                       "namespace": os.environ.get("KUBETUNE_NAMESPACE", "default"),
                       "values": values}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        return _send(request)
    except Exception as exc:  # noqa: BLE001 (a report that cannot be delivered must never stop training)
        if not _warned:
            _warned.append(True)
            print(f"kubetune: could not deliver a report to {url} ({exc}); the trial goes on, and later "
                  "failures are not shown", file=sys.stderr, flush=True)
        return False


def _send(request: urllib.request.Request) -> bool:
    """Sends the request; a refused connection is tried again at once, up to :data:`ATTEMPTS` times: with
    several operator replicas the Service may pick a standby, which does not serve the port."""
    for attempt in range(ATTEMPTS):
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:  # noqa: S310 (the operator's URL)
                return 200 <= answer.status < 300
        except urllib.error.URLError as exc:
            if not isinstance(exc.reason, ConnectionRefusedError) or attempt == ATTEMPTS - 1:
                raise
    return False
