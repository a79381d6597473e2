"""``mjq tail``: a queue's newest jobs, then its changes as they happen, one line each."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import TYPE_CHECKING, Any

from ..core.job import id_order
from ..text import printable

if TYPE_CHECKING:
    from ..core.queue import JobQueue

TAIL_HEAD = f"{'time (UTC)':<12}  {'job':<24}  {'status':<18} data"


def tail(queue: JobQueue, *, limit: int, duration: float | None) -> int:
    """The newest ``limit`` jobs in time order (each at its latest change), then each new
    job and status change as it comes, for ``duration`` seconds (None: until Ctrl-C)."""
    from ..live.changes import changes

    print(
        f"mjq: the newest {limit} jobs of {queue.db.name}.{printable(queue.name)}, oldest "
        "first, then changes as they happen (Ctrl-C stops)",
        file=sys.stderr,
    )
    print(TAIL_HEAD, flush=True)
    shown: dict[Any, str] = {}  # job id -> the status last printed
    for job in sorted(queue.jobs(limit=limit), key=lambda j: (_when(j), id_order(j.id))):
        shown[job.id] = status = str(job.get("status", "?"))  # "?": written without one
        _tail_line(job, status)
    for job, previous in changes(queue, limit=limit, duration=duration):
        before, status = shown.get(job.id, previous), str(job.get("status", "?"))
        if before == status:
            continue  # printed above already
        shown[job.id] = status
        _tail_line(job, status if before is None else f"{before} -> {status}")
        if len(shown) > 10 * limit:  # forget jobs long gone from the window
            shown = {k: shown[k] for k in sorted(shown, key=id_order)[-limit:]}
    return 0


def _when(job: Any) -> Any:
    """The time of a job's latest change (done, started, created), else the earliest time."""
    ts = job.get("ts")
    times = [ts.get(key) for key in ("done", "started", "created")] if isinstance(ts, dict) else []
    never = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    return next((when for when in times if isinstance(when, dt.datetime)), never)


def _tail_line(job: Any, change: str) -> None:
    when = _when(job)
    stamp = when.strftime("%H:%M:%S.%f")[:-3] if when.year > 1 else "?"
    data = json.dumps(job.get("data"), default=str)  # ASCII: no control characters
    if len(data) > 80:
        data = data[:77] + "..."
    print(f"{stamp:<12}  {printable(job.id):<24}  {printable(change):<18} {data}", flush=True)
