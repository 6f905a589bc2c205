"""The operator's suggestion worker: a process of its own that holds every experiment's optimizer and answers
the operator's asks, so that the GP's Python work never holds the operator's event loop or its GIL.

It runs as ``python -m kubetune.operator.suggestion_worker`` (started by
:class:`kubetune.operator.suggestions.WorkerSuggestions`) and speaks in frames on its stdin and stdout: a
4-byte big-endian length, then a pickled tuple. Requests are ``("build", key, spec, records)``, ``("ask", key,
n)``, ``("tell", key, trial_id, value)``, ``("fail", key, trial_id)`` and ``("forget", key)``; build and ask are
answered, in the order they came, with ``("ok", ...)`` or ``("error", message)``; the others are not. It ends
when its stdin closes (the operator stopped or died), and needs nothing but the core: what it holds is
rebuilt from the Trials whenever it is started again.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
from typing import IO, Any

from kubetune.core.engine import Optimizer
from kubetune.core.lifecycle import build_optimizer

HEADER = struct.Struct(">I")


def read_frame(stream: IO[bytes]) -> Any | None:
    """The next message, or None once the stream ended."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    body = stream.read(HEADER.unpack(header)[0])
    return pickle.loads(body)


def frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def answer(optimizers: dict[str, Optimizer], request: tuple) -> tuple | None:
    """Carries out one request; its answer, or None for the requests that have none."""
    operation, key, *arguments = request
    if operation == "build":
        spec, records = arguments
        optimizer = optimizers[key] = build_optimizer(spec, records)
        return "ok", optimizer.pending, optimizer.exhausted
    if operation == "ask":
        optimizer = optimizers[key]
        suggestions = optimizer.ask(*arguments)
        return "ok", suggestions, optimizer.exhausted
    if operation == "forget":
        optimizers.pop(key, None)
    elif key in optimizers:  # tell or fail: of an optimizer that was never built here (a restart), nothing to do
        getattr(optimizers[key], operation)(*arguments)
    return None


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    optimizers: dict[str, Optimizer] = {}
    while (request := read_frame(requests)) is not None:
        try:
            reply = answer(optimizers, request)
        except Exception as exc:  # a request the optimizer refused: the operator's pass reports it
            reply = ("error", f"{type(exc).__name__}: {exc}") if request[0] in ("build", "ask") else None
            if reply is None:
                print(f"kubetune suggestion worker: {request[0]} failed: {exc}", file=sys.stderr, flush=True)
        if reply is not None:
            answers.write(frame(reply))
            answers.flush()


def main() -> None:
    # Ctrl-C in a terminal reaches the whole process group: the operator stops, and this worker ends with its
    # stdin, not with a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not corrupt the answers
    serve(sys.stdin.buffer, answers)


if __name__ == "__main__":
    main()
