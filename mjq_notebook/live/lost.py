"""Which workers of the working jobs a view shows are lost, and which of their jobs' leases
have ended: what a row needs to say "working · worker lost"."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..core.job import Job, utcnow
from ..core.registry import State, workers_by_id
from ..text import utc

if TYPE_CHECKING:
    from ..core.queue import JobQueue


def lost_workers(
    queue: JobQueue, jobs: Iterable[Job], registry: Iterable[dict[str, Any]] | None
) -> tuple[dict[str, dict[str, Any]], frozenset[Any]]:
    """(the records of the lost workers among those of the working ``jobs``, the ids of
    their jobs whose lease has ended). From ``registry`` where a view has just read it whole,
    else one read of those records by ``_id``; no read while none of ``jobs`` is working."""
    working = [job for job in jobs if job.get("status") == "working"]
    ids = {job["worker"] for job in working if isinstance(job.get("worker"), str)}
    if not ids:
        return {}, frozenset()
    if registry is not None:
        records = {row["_id"]: row for row in registry if row.get("_id") in ids}
    else:
        records = workers_by_id(queue, ids)
    lost = {key: row for key, row in records.items() if row.get("state") == State.LOST.value}
    now = utcnow()
    lapsed = frozenset(
        job.id
        for job in working
        if job.get("worker") in lost
        and isinstance(job.get("lease_until"), dt.datetime)
        and utc(job["lease_until"]) <= now
    )
    return lost, lapsed
