"""What a live view shows of one job: its row in a tail, its status in a watcher's snapshot."""

from __future__ import annotations


def row(tail, job_id) -> dict | None:
    """The tail's row of ``job_id``, or None while it shows none."""
    return next((r for r in tail.table.rows if r["id"] == str(job_id)), None)


def status_of(watcher, job_id) -> str | None:
    """The status the watcher's snapshot holds for ``job_id``, or None."""
    return next((j["status"] for j in watcher.snapshot.jobs if j.id == job_id), None)
