"""Plain text for notebook displays: one-line previews of job data and the one row builder of
job lists (``q.jobs()``, the queue view and the live tail), in the words of ``text``. No HTML
here."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import textwrap
from collections.abc import Iterable, Mapping
from typing import Any

from ..text import (
    as_of,
    format_seconds,
    format_time,
    int_or_none,
    progress_text,
    text_table,
    utc,
)

LIST_COLUMNS = ("id", "status", "created (UTC)", "wait", "run", "attempts", "error", "data")
# job_cells() gives them in this order
LIST_ROWS = 500  # rows of a job list rendered
ONGOING = "“…”: still going on"


# -- times ----------------------------------------------------------------------------------


def job_times(job: Mapping[str, Any], status: str) -> tuple[Any, Any, Any]:
    """created, started, done — started/done only where that stage happened (pymjq
    pre-filled them while the job waited)."""
    ts = job["ts"] if isinstance(job.get("ts"), Mapping) else {}
    created, started, done = ts.get("created"), ts.get("started"), ts.get("done")
    tried = (int_or_none(job.get("attempts")) or 0) > 0
    if status in ("waiting", "cancelled") and not tried:  # cancelled: it never ran again
        started = None
    if status not in ("done", "failed", "cancelled"):
        done = None
    return created, started, done


def seconds_between(start: Any, end: Any) -> float | None:
    """Seconds from ``start`` to ``end``; None unless both are datetimes."""
    if isinstance(start, dt.datetime) and isinstance(end, dt.datetime):
        return (utc(end) - utc(start)).total_seconds()
    return None


# -- one-line previews ----------------------------------------------------------------------


class _Full(Exception):
    """The preview is wide enough: stop walking the value."""


def data_preview(value: Any, width: int = 80) -> str:
    """A one-line, JSON-ish preview of ``value``, at most ``width`` characters. NOT escaped.

    It stops walking the value once the line is full, so a huge document costs no more than
    a small one.
    """
    parts: list[str] = []
    size = 0

    def emit(text: str) -> None:
        nonlocal size
        parts.append(text)
        size += len(text)
        if size > width:
            raise _Full

    def walk(item: Any) -> None:
        if isinstance(item, Mapping):
            emit("{")
            for index, (key, inner) in enumerate(item.items()):
                emit(", " if index else "")
                emit(scalar_text(str(key), width) + ": ")
                walk(inner)
            emit("}")
        elif isinstance(item, (list, tuple)):
            emit("[")
            for index, inner in enumerate(item):
                emit(", " if index else "")
                walk(inner)
            emit("]")
        else:
            emit(scalar_text(item, width))

    with contextlib.suppress(_Full):
        walk(value)
    text = "".join(parts)
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def scalar_text(value: Any, width: int = 80) -> str:
    """One value as JSON would write it; BSON types readably; only ~``width`` characters."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value[: width + 1], ensure_ascii=False)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dt.datetime):
        return format_time(value).replace(" ", "T") + "Z"
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value):,} bytes>"
    if type(value).__name__ == "ObjectId":
        return f'ObjectId("{value}")'
    return str(value)[: width + 1]


def error_preview(error: Any) -> str:
    """``Type: message`` on one line, shortened at a word (NOT escaped)."""
    if not error:
        return ""
    if isinstance(error, Mapping):
        kind, message = str(error.get("type") or "Error"), error.get("message")
        text = kind + (f": {message}" if message not in (None, "") else "")
    else:
        text = str(error)
    return textwrap.shorten(text, 60, placeholder=" …")


# -- progress -------------------------------------------------------------------------------


def progress_of(job: Mapping[str, Any]) -> tuple[float | None, str] | None:
    """A job's last reported progress as (the fraction done, None when the total is unknown;
    its text, ``text.progress_text``: "40% · 4/10 · resizing", "3 done"); None when it
    reported none. NOT escaped: the message is the handler's."""
    value = job.get("progress")
    if not isinstance(value, Mapping):
        return None
    done, total, message = value.get("done"), value.get("total"), value.get("message")
    if not isinstance(done, (int, float)) or isinstance(done, bool):
        return None
    if not isinstance(total, (int, float)) or isinstance(total, bool) or total <= 0:
        total = None
    words = " ".join(str(message).split())[:120] if message else None
    fraction = None if total is None else min(max(done / total, 0.0), 1.0)
    return fraction, progress_text(done, total, words)


# -- rows of a job list ---------------------------------------------------------------------


def live_cell(job: Mapping[str, Any], now: dt.datetime) -> tuple[str, dt.datetime] | None:
    """The cell of a job's row that changes while nothing happens to the job, and the time it
    counts from: ``("due", available_at)`` for a job not claimable yet (delayed, or a retry's
    back-off), ``("wait", created)`` for one waiting its first turn, ``("run", started)`` for
    a running one; None for a finished job."""
    status = str(job.get("status", "?"))
    created, started, _ = job_times(job, status)
    available = job.get("available_at")
    if status == "waiting" and isinstance(available, dt.datetime) and utc(available) > now:
        return "due", utc(available)
    if status == "waiting" and started is None and isinstance(created, dt.datetime):
        return "wait", utc(created)
    if status == "working" and isinstance(started, dt.datetime):
        return "run", utc(started)
    return None


def live_text(cell: str, since: dt.datetime, now: dt.datetime) -> str:
    """A live cell's text at ``now`` ("due in 4 s", "2 min 47 s …"); tail.js's ``liveText``
    writes the same between updates."""
    seconds = (now - since).total_seconds()
    if cell == "due":
        return "due in " + format_seconds(-seconds) if seconds < 0 else "due now"
    return format_seconds(max(0.0, seconds)) + " …"


LOST_ROW = "working · worker lost"  # a lost worker's job's status cell
BY_NEXT = "by the next free worker"


def lost_note(job: Mapping[str, Any], now: dt.datetime) -> str:
    """What a working job of a lost worker shows. Its lease ending does not change the job:
    a consumer's next claim hands expired leases back (``leases.Reclaimer``), so it is taken
    only once a worker is free to claim. So: "worker lost · claimable again from 12:03:10
    UTC, when its lease ends, by the next free worker", and once the lease ended: "worker
    lost · its lease ended at 12:03:10 UTC: waiting for a free worker to take it"."""
    lease = job.get("lease_until")
    if not isinstance(lease, dt.datetime):
        return f"worker lost · claimable again when its lease ends, {BY_NEXT}"
    at = utc(lease).strftime("%H:%M:%S")
    if utc(lease) > now:
        return f"worker lost · claimable again from {at} UTC, when its lease ends, {BY_NEXT}"
    return f"worker lost · its lease ended at {at} UTC: waiting for a free worker to take it"


def job_cells(
    job: Mapping[str, Any], now: dt.datetime, worker_lost: bool = False
) -> dict[str, str]:
    """Plain-text cells of a job's row (``LIST_COLUMNS``), the one row builder of ``q.jobs()``,
    the queue view and the live tail: ``…`` marks a wait or run still going on, a job not
    yet claimable says when it is due, and a working one whose worker the registry says is
    lost (``worker_lost``, where a view read it) says so in its status."""
    status = str(job.get("status", "?"))
    created, started, done = job_times(job, status)
    cells = {
        "wait": format_seconds(seconds_between(created, started)),
        "run": format_seconds(seconds_between(started, done)),
    }
    live = live_cell(job, now)
    if live is not None:
        cells["wait" if live[0] == "due" else live[0]] = live_text(*live, now)
    attempts, most = int_or_none(job.get("attempts")), int_or_none(job.get("max_attempts"))
    return {
        "id": str(job.get("_id")),
        "status": LOST_ROW if worker_lost and status == "working" else status,
        "created": format_time(created),
        "wait": cells["wait"],
        "run": cells["run"],
        "attempts": "—" if attempts is None else f"{attempts}/{most}" if most else str(attempts),
        "error": error_preview(job.get("error")),
        "data": data_preview(job.get("data"), 60),
    }


def list_rows(
    jobs: list[Mapping[str, Any]], now: dt.datetime
) -> tuple[list[str], list[tuple[str, ...]]]:
    """The columns and rows of a job list, its first ``LIST_ROWS`` jobs: ``error`` only when
    some job has one."""
    rows = [tuple(job_cells(job, now).values()) for job in jobs[:LIST_ROWS]]
    error = LIST_COLUMNS.index("error")
    if any(row[error] for row in rows):
        return list(LIST_COLUMNS), rows
    keep = [i for i in range(len(LIST_COLUMNS)) if i != error]
    return [LIST_COLUMNS[i] for i in keep], [tuple(row[i] for i in keep) for row in rows]


def ongoing(rows: list[tuple[str, ...]]) -> bool:
    """True if a wait or run in ``rows`` is still going on (its cell ends in "…")."""
    return any(cell.endswith(" …") for row in rows for cell in row[3:5])


def job_list_text(jobs: Iterable[Mapping[str, Any]], now: dt.datetime | None = None) -> str:
    """A table of jobs as plain text, for ``repr`` in a terminal: the columns of
    ``job_list_html``."""
    now = as_of(now)
    jobs = list(jobs)
    if not jobs:
        return "no jobs"
    columns, rows = list_rows(jobs, now)
    lines = text_table([columns, *rows])
    if len(jobs) > LIST_ROWS:
        lines.append(f"… {len(jobs) - LIST_ROWS:,} more")
    if ongoing(rows):
        lines.append(ONGOING)
    return "\n".join(line.rstrip() for line in lines)
