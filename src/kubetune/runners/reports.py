"""Reading the intermediate reports of running trials from their output as it is written, for early stopping.

Each running trial's source (its stdout, or the metrics file of the ``file`` collector) is read from where the
last read stopped; complete lines that report both the resource (``step``) and the objective become reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kubetune.core.metrics import progress_report

MAX_READ_BYTES = 1 << 20  # per trial and poll: a trial that prints fast is read over several polls


@dataclass
class Tail:
    path: Path
    offset: int = 0
    partial: bytes = field(default=b"")

    def reports(self, resource: str, metric: str) -> list[tuple[float, float]]:
        """The reports in what was written since the last call."""
        try:
            with self.path.open("rb") as source:
                source.seek(self.offset)
                data = source.read(MAX_READ_BYTES)
        except OSError:
            return []
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        found = []
        for line in lines:
            report = progress_report(line.decode(errors="replace"), resource, metric)
            if report is not None:
                found.append(report)
        return found
