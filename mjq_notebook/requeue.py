"""Requeueing: a failed job back to waiting, with more attempts (``q.retry``).

Jobs of expired leases are *reclaimed* instead (``leases.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymongo.errors import DuplicateKeyError

from .job import IN_HISTORY, Status, utcnow

if TYPE_CHECKING:
    from pymongo.collection import Collection


def failed_jobs(queue: Collection, history: Collection, query: dict[str, Any]) -> list[dict]:
    """The failed jobs matching ``query``, each once: history's copy where it has one (jobs
    are in history once finished; the ring may have evicted them since)."""
    match = {**query, "status": Status.FAILED.value}
    failed = {doc["_id"]: doc for doc in queue.find(match)}
    failed.update((doc["_id"], doc) for doc in history.find(match))
    return list(failed.values())


def requeue(queue: Collection, history: Collection, failed: dict[str, Any], more: int) -> bool:
    """Move one failed job (its final document) back to waiting with ``more`` attempts
    beyond those it used; True if this call did.

    Each step is conditional on the failed attempt, so concurrent requeues of one job
    succeed once. The queue holds it as waiting before its history row goes: a job is never
    in neither (see ``JobQueue.counts``).
    """
    now = utcnow()
    attempt = {"_id": failed["_id"], "attempts": failed.get("attempts")}
    fields = {
        "status": Status.WAITING.value,
        "available_at": now,
        "lease_until": None,
        "worker": None,
        "ts.started": None,
        "ts.done": None,
        "max_attempts": int(failed.get("attempts") or 0) + more,
        IN_HISTORY: False,  # its history row goes below
    }
    updated = queue.update_one({**attempt, "status": Status.FAILED.value}, {"$set": fields})
    if not updated.matched_count:
        if queue.find_one({"_id": failed["_id"]}, {"_id": 1}) is not None:
            return False  # requeued by someone else already, or not failed
        doc = {key: value for key, value in failed.items() if key != "result"}
        doc.update((key, value) for key, value in fields.items() if "." not in key)
        doc["ts"] = {**failed.get("ts", {}), "started": None, "done": None}
        try:  # evicted from the ring: back in from history
            queue.insert_one(doc)
        except DuplicateKeyError:
            return False  # another requeue put it back first
    history.delete_one({**attempt, "status": Status.FAILED.value})
    return True
