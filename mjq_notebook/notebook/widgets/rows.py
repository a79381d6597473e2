"""The tail's rows: what a row holds (``job_row``, from the display's one row builder), the rows
as they go out (``RowCache``), which jobs are in sight in the "all" view (``in_sight``), and
the lines around them (``state_text``, ``counters_html``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from bson.errors import InvalidId

from ...core.job import Job
from .. import display
from ..formatting import live_text, progress_of

if TYPE_CHECKING:
    from ...live.watch import Snapshot


def job_row(job: Job, now: dt.datetime, worker_lost: bool = False) -> dict[str, Any]:
    """One table row: ``display.job_cells`` as plain strings (the front end renders them as
    text, never as HTML), with the cell that keeps changing (``live``: "wait", "run", "due"
    or "") and the time it counts from (``live_from``, unix ms), a working job's last
    progress (``progress``: "40% · 4/10 · resizing", ``progress_pct``: "40" of 100, "" when
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


class RowCache:
    """The tail's rows, formatting only jobs that changed since the last call (most refreshes
    change a few rows of fifty). A kept row's live cell is written afresh for each call: kept
    as formatted, a job waiting minutes went out as the "246 ms …" of its first sight with
    every change of another row, and the page showed it until its next tick. Called on the
    watcher's thread only."""

    def __init__(self) -> None:
        self._held: dict[Any, tuple[Job, dict[str, Any]]] = {}
        self._basis: list[dict[str, Any]] | None = None  # the rows last given, as formatted

    def rows(
        self, jobs: list[Job], now: dt.datetime, lost: dict[str, dict]
    ) -> list[dict[str, Any]] | None:
        """The rows of ``jobs`` as of ``now`` (``lost``: the lost workers' records by id);
        None when only the live cells' clocks moved since the last rows (the page counts
        those on itself)."""
        basis, rows = [], []
        for job in jobs:
            held, gone = self._held.get(job.id), worker_lost(job, lost)
            live = display.live_cell(job, now)
            kind = "" if live is None else live[0]  # a delay running out makes it a wait
            if (held is None or held[0] != job or held[1]["live"] != kind
                    or held[1]["worker_lost"] != ("1" if gone else "")):  # fmt: skip
                held = self._held[job.id] = (job, job_row(job, now, gone))
            basis.append(held[1])
            cell = "wait" if kind == "due" else kind
            rows.append(held[1] if live is None else {**held[1], cell: live_text(*live, now)})
        if len(self._held) > 2 * len(jobs) + 50:  # forget jobs no longer shown
            self._held = {job.id: self._held[job.id] for job in jobs}
        if basis == self._basis:
            return None
        self._basis = basis
        return rows


def worker_lost(job: Job | None, lost: dict[str, dict]) -> bool:
    """True when ``job`` is working and the registry says its worker is lost (``lost``: the
    snapshot's ``lost_workers``)."""
    if job is None or job.get("status") != "working":
        return False
    worker = job.get("worker")
    return isinstance(worker, str) and worker in lost


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


def state_text(snapshot: Snapshot) -> str:
    """The table's state line: live, paused, connecting… or reconnecting… and why."""
    if snapshot.state == "reconnecting":
        return f"reconnecting…: {snapshot.message}" if snapshot.message else "reconnecting…"
    if snapshot.state == "connecting":
        return "connecting…"
    return snapshot.state


def counters_html(counts: dict[str, int]) -> str:
    """The counters above the table, styled to stand alone."""
    return f'<div class="mjq">{display.stylesheet()}{display.counts_html(counts)}</div>'
