"""The tail's rows: what a row holds (``job_row``, from the display's one row builder), which
jobs are in sight in the "all" view (``in_sight``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId

from ...core.job import Job
from .. import display
from ..formatting import progress_of


def job_row(job: Job, now: dt.datetime, worker_lost: bool = False) -> dict[str, Any]:
    """One table row: ``display.job_cells`` as plain strings (the front end renders them as
    text, never as HTML), with the cell that keeps changing (``live``: "wait", "run", "due"
    or "") and the time it counts from (``live_from``, unix ms), a working job's last
    progress (``progress``: "40% · resizing 4/10", ``progress_pct``: "40" of 100, "" when
    the total is unknown; both "" for a job not running or that reported none), and
    ``worker_lost`` ("1" when the registry says the worker running it is lost, its status
    then "working · worker lost"; else "")."""
    row: dict[str, Any] = display.job_cells(job, now, worker_lost)
    del row["error"]  # the detail panel shows it
    live = display.live_cell(job, now)
    row["live"], row["live_from"] = (
        ("", 0.0) if live is None else (live[0], live[1].timestamp() * 1000)
    )
    progress = progress_of(job) if job.get("status") == "working" else None
    row["progress"], row["progress_pct"] = ("", "") if progress is None else (
        progress[1], "" if progress[0] is None else f"{progress[0] * 100:g}"
    )  # fmt: skip
    row["worker_lost"] = "1" if worker_lost and job.get("status") == "working" else ""
    return row


def in_sight(working: Sequence[Job], newest: Sequence[Job], limit: int) -> list[Job]:
    """The "all" view's ``limit`` rows: the working jobs first (up to half the rows), then the
    newest others. With a backlog the newest jobs are all waiting and the running ones,
    older, would be out of sight; at most half, so new jobs still show beside many workers.
    A job in both lists shows once, as ``working`` (read after ``newest``) has it."""
    running = list(working[: max(1, limit // 2)])
    ids = {job.id for job in running}
    others = [job for job in newest if job.id not in ids]
    return [*running, *others][:limit]


def _as_id(text: str) -> ObjectId | None:
    """The job id a row's id string (``table.selected``) names; None for "" or a bad one."""
    try:
        return ObjectId(text) if text else None
    except (InvalidId, TypeError):
        return None
