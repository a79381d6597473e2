"""A job's whole story as a DataFrame (``q.timeline(job)``): one row per attempt and per
edit, newest last, from the plain rows the core reads (``core/parts/attempts.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

COLUMNS = [
    "attempt",
    "outcome",
    "worker",
    "started",
    "ended",
    "run_s",
    "error_type",
    "error_message",
    "progress",
    "data",
    "by",
]


def timeline(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """``rows`` (``q.story(job)``) as a frame of ``COLUMNS``: times as UTC timestamps,
    ``attempt`` a nullable integer, ``progress`` as text ("4/10 resizing"); ``data`` is the
    data a job had before an edit (on ``edited`` rows), ``by`` who edited it."""
    frame = pd.DataFrame([{**row, "progress": progress_text(row.get("progress"))} for row in rows],
                         columns=COLUMNS)  # fmt: skip
    for column in ("started", "ended"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    frame["attempt"] = frame["attempt"].astype("Int64")
    frame["run_s"] = frame["run_s"].astype("float64")
    return frame


def progress_text(progress: Any) -> str | None:
    """A last progress report as short text: "4/10 resizing", "4 resizing"; None if none."""
    if not isinstance(progress, Mapping) or progress.get("done") is None:
        return None
    total = progress.get("total")
    count = f"{progress['done']:g}" + (f"/{total:g}" if isinstance(total, (int, float)) else "")
    return f"{count} {progress.get('message') or ''}".strip()
