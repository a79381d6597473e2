"""Changes of a queue's newest jobs as a plain iterator, for ``mjq tail`` in a terminal: the
watcher's snapshots turned into one line's worth each."""

from __future__ import annotations

import queue as queue_module
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..core.job import Job, id_order
from .subscription import Snapshot
from .watch import Watcher

if TYPE_CHECKING:
    from ..core.queue import JobQueue


def changes(
    queue: JobQueue, *, limit: int = 50, interval: float = 0.5, duration: float | None = None
) -> Iterator[tuple[Job, str | None]]:
    """Yield ``(job, previous_status)`` for each new job (previous None) and status change
    among the newest ``limit`` jobs, until ``duration`` seconds pass (None: forever).

    The queue's shared ``Watcher`` reads it; changes closer together than ``interval``
    seconds may be reported as one (waiting -> done)."""
    snapshots: queue_module.Queue[Snapshot] = queue_module.Queue()
    sub = Watcher.of(queue).subscribe(snapshots.put, window=limit, rate=1.0 / interval)
    end = None if duration is None else time.monotonic() + duration
    known: dict[Any, str | None] = {}
    try:
        while end is None or time.monotonic() < end:
            wait = None if end is None else max(0.0, end - time.monotonic())
            try:
                snapshot = snapshots.get(timeout=wait)
            except queue_module.Empty:
                break
            for job in reversed(snapshot.jobs[:limit]):
                previous = known.get(job.id)
                if previous != job.get("status"):  # None: written without one by others
                    known[job.id] = job.get("status")
                    yield job, previous
            if len(known) > 10 * limit:  # forget jobs long gone from the window
                known = {k: known[k] for k in sorted(known, key=id_order)[-limit:]}
    finally:
        sub.close()
