"""The token that authorises a trial pod's intermediate reports: pure functions, no key storage.

A token names what it is for and proves it: ``<claim>.<signature>``, where the claim is
``namespace/trial/attempt`` (base64url) and the signature is HMAC-SHA256 of the claim under the operator's
report key (base64url). :func:`read_token` tells a forged token (the signature does not match: 401) from a
genuine one that names another trial or an earlier attempt (the endpoint answers 403), without knowing
every trial's token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

KEY_BYTES = 32


@dataclass(frozen=True)
class Claim:
    namespace: str
    trial: str
    attempt: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _claim_text(namespace: str, trial: str, attempt: int) -> str:
    return f"{namespace}/{trial}/{attempt}"


def report_token(key: bytes, namespace: str, trial: str, attempt: int) -> str:
    """The token of attempt ``attempt`` of trial ``namespace/trial``."""
    claim = _claim_text(namespace, trial, attempt).encode()
    return f"{_b64(claim)}.{_b64(hmac.new(key, claim, hashlib.sha256).digest())}"


def read_token(key: bytes, token: str) -> Claim | None:
    """What a genuine token is for; None when it is malformed or its signature is not the key's."""
    claim_part, _, signature_part = token.partition(".")
    try:
        claim, signature = _unb64(claim_part), _unb64(signature_part)
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(hmac.new(key, claim, hashlib.sha256).digest(), signature):
        return None
    namespace, _, rest = claim.decode(errors="replace").partition("/")
    trial, _, attempt = rest.rpartition("/")
    if not namespace or not trial or not attempt.isdigit():
        return None
    return Claim(namespace, trial, int(attempt))
