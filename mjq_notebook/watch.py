"""Follow a queue live: new jobs and status changes, by re-reading the newest jobs.

A tailable cursor reports inserts only; status changes are updates, so the jobs shown are
re-read each round (a round starts early when something is published).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .job import Job

if TYPE_CHECKING:
    from .queue import JobQueue


def changes(
    queue: JobQueue, *, limit: int = 50, interval: float = 0.5, duration: float | None = None
) -> Iterator[tuple[Job, str | None]]:
    """Yield ``(job, previous_status)`` for each new job (previous None) and status change
    among the newest ``limit`` jobs, until ``duration`` seconds pass (None: forever)."""
    end = None if duration is None else time.monotonic() + duration
    known: dict = {}
    while end is None or time.monotonic() < end:
        for job in reversed(queue.jobs(limit=limit)):
            previous = known.get(job.id)
            if previous != job["status"]:
                known[job.id] = job["status"]
                yield job, previous
        if len(known) > 10 * limit:  # forget jobs long gone from the window
            keep = sorted(known)[-limit:]
            known = {k: known[k] for k in keep}
        wait = interval if end is None else min(interval, max(0.0, end - time.monotonic()))
        if wait > 0:
            queue.wait(wait)
