"""``mjq tail``: a queue's job changes as a log people can read, one line a change, in the
order they happened, each at its own time (``live.joblog``): the newest jobs first, then
every change of any job as it happens, with its worker, attempt, progress and error."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..signals import StopFlag, handling_stop_signals
from ..text import format_time, printable, significant

if TYPE_CHECKING:
    from ..core.queue import JobQueue
    from ..live.joblog import JobChange

# the columns of a line and their widths (the last, data or the error, takes what it needs)
COLUMNS = (
    ("time (UTC)", 23),
    ("job", 24),
    ("change", 20),
    ("worker", 20),
    ("attempt", 7),
    ("progress", 24),
    ("data / error", 0),
)
DATA_MOST = 80  # characters of a job's data shown


def tail(queue: JobQueue, *, limit: int, duration: float | None, form: str = "table") -> int:
    """The newest ``limit`` jobs, each at its latest change, oldest first, then each change
    of any job as it comes, for ``duration`` seconds (None: until Ctrl-C); ``form`` "json":
    one JSON object a change. 130 once stopped by Ctrl-C or SIGTERM."""
    from ..live.joblog import POLL_S, JobLog

    print(
        f"mjq: the newest {limit} jobs of {queue.db.name}.{printable(queue.name)}, each at its "
        "latest change, then every change of any job as it happens (Ctrl-C stops)",
        file=sys.stderr,
    )
    if form == "table":
        print(_line([name for name, _ in COLUMNS]), flush=True)

    def following(mode: str) -> None:
        how = (
            "times are the server's, when each change happened"
            if mode == "change stream"
            else f"this server has no change streams: polling every {POLL_S:g} s, so times "
            "are when the tail saw each change, and a waiting job beyond the newest shows "
            "from its claim on"
        )
        print(f"mjq: {how}", file=sys.stderr, flush=True)

    # Ctrl-C or SIGTERM end the log between two reads (a KeyboardInterrupt could land inside
    # the driver), and do so where the shell started the tail with SIGINT ignored (``&``)
    stop = StopFlag()
    with handling_stop_signals(stop.set):
        for change in JobLog(queue, limit=limit).changes(duration, following, stop.is_set):
            print(_json(change) if form == "json" else _line(_cells(change)), flush=True)
    return 130 if stop.is_set() else 0


def _cells(change: JobChange) -> list[str]:
    job, status = change.job, str(change.job.get("status") or "?")  # "?": written without one
    moved = change.previous is not None and change.previous != status
    what = f"{change.previous} -> {status}" if moved else status
    last = f"error: {_error_line(change.error)}" if change.error else _data(job.get("data"))
    return [
        format_time(change.at) if change.at.year > 1 else "?",  # "?": a job with no time
        str(job.get("_id")),
        what,
        _worker(job.get("worker")),
        _attempt(job),
        progress_text(job.get("progress")),
        last,
    ]


def _line(cells: list[str]) -> str:
    """One line: each cell escaped (job data is anyone's), cut to its column's width and
    padded to it, so the columns stay aligned whatever the jobs hold."""
    parts = []
    for cell, (_, width) in zip(cells, COLUMNS, strict=True):
        text = printable(cell)
        if width:
            text = text if len(text) <= width else text[: width - 1] + "…"
            text = text.ljust(width)
        parts.append(text)
    return "  ".join(parts).rstrip()


def _worker(worker: Any) -> str:
    """A worker's id ("host:pid:hex"), its end kept when long: the end tells workers apart."""
    text = printable(worker) if worker else "—"
    width = dict(COLUMNS)["worker"]
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def _attempt(job: Mapping[str, Any]) -> str:
    attempts, most = job.get("attempts"), job.get("max_attempts")
    if not isinstance(attempts, int):
        return "—"
    return f"{attempts}/{most}" if isinstance(most, int) else str(attempts)


def progress_text(progress: Any) -> str:
    """A job's last progress, its numbers and message each said once: "4/10 resizing",
    "resizing 4 of 10" (the message gives the numbers already), "4"; "" for none."""
    if not isinstance(progress, Mapping):
        return ""
    done, total, message = progress.get("done"), progress.get("total"), progress.get("message")
    if not _number(done):
        return ""
    numbers = [_figure(done)] + ([_figure(total)] if _number(total) else [])
    words = " ".join(str(message).split()) if message else ""
    if words and all(number in words for number in numbers):
        return words
    return " ".join(["/".join(numbers), words]).strip()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _figure(value: Any) -> str:
    return str(int(value)) if float(value).is_integer() else significant(value)


def _error_line(error: Mapping[str, Any]) -> str:
    """An error's type and its message's first line: "ValueError: no such user"."""
    message = str(error.get("message") or "").strip().splitlines()
    kind = str(error.get("type") or "Error")
    return f"{kind}: {message[0]}" if message else kind


def _data(data: Any) -> str:
    text = json.dumps(data, default=str)  # ASCII: no control characters
    return text if len(text) <= DATA_MOST else text[: DATA_MOST - 3] + "..."


def _json(change: JobChange) -> str:
    """One change as one JSON object (a line of ``--format json``)."""
    job = change.job
    return json.dumps(
        {
            "time": change.at.isoformat() if change.at.year > 1 else None,
            "job": str(job.get("_id")),
            "status": job.get("status"),
            "previous": change.previous,
            "worker": job.get("worker"),
            "attempt": job.get("attempts"),
            "max_attempts": job.get("max_attempts"),
            "progress": job.get("progress"),
            "error": _error_line(change.error) if change.error else None,
            "data": job.get("data"),
        },
        default=str,
    )
