"""``kubetune report``: one self-contained HTML page of an experiment's results (inline SVG plots, inline
script, nothing fetched), built from :class:`~kubetune.results.model.Results`. A module per plot:
:mod:`.history`, :mod:`.parallel`, :mod:`.importance`, :mod:`.slices`, :mod:`.timeline`, :mod:`.curves`,
:mod:`.table`; :mod:`.page` puts them together."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from kubetune.results.model import Results
from kubetune.results.report import curves, history, importance, page, parallel, slices, table, timeline
from kubetune.results.report.data import build_frame

PLOTS = (history, parallel, importance, slices, timeline, curves)


def render_report(results: Results, now: datetime | None = None) -> str:
    frame = build_frame(results)
    sections = [plot.render(frame) for plot in PLOTS]
    return page.render_page(frame, sections, table.data(frame), now=now)


def write_report(results: Results, path: Path, now: datetime | None = None) -> int:
    """Writes the report to ``path``; returns its size in bytes. Raises OSError when it cannot be written."""
    # a lone surrogate read from a damaged run folder is written escaped, as the terminal shows it
    text = render_report(results, now=now).encode(errors="backslashreplace")
    Path(path).write_bytes(text)
    return len(text)
