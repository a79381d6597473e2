"""Requeueing: a failed job back to waiting, with more attempts (``q.retry``).

Jobs of expired leases are *reclaimed* instead (``leases.py``); ``bulk.py`` finds the
failed jobs of ``q.retry_all`` (and ``retry_failed``).
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from pymongo.errors import DuplicateKeyError, PyMongoError

from ..job import IN_HISTORY, Status, utcnow
from ..retries import retried

if TYPE_CHECKING:
    from pymongo.collection import Collection

log = logging.getLogger("mjq_notebook")


def requeue(queue: Collection, history: Collection, failed: dict[str, Any], more: int) -> bool:
    """Move one failed job (its final document) back to waiting with ``more`` attempts
    beyond those it used; True if this call did.

    Each step is conditional on the failed attempt, so concurrent requeues of one job
    succeed once. The queue holds it as waiting before its history row goes: a job is never
    in neither (see ``JobQueue.counts``). The queue's write carries this call's token
    (``requeue_id``), so each write is sent again after a fault (``retries.py``) without doing
    it twice; if the history row can't be deleted, the job goes back to failed in the queue and
    the error is raised: it is never waiting in the queue and failed in history at once.
    """
    now = utcnow()
    token = uuid.uuid4().hex
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
        "requeue_id": token,
    }
    mine = {"_id": failed["_id"], "requeue_id": token}

    def back(again: bool) -> bool:
        """The job waiting again in the ring: updated there, or put back from history."""
        if again and queue.find_one(mine, {"_id": 1}) is not None:
            return True  # an earlier attempt did (a claim may have taken it since)
        updated = queue.update_one({**attempt, "status": Status.FAILED.value}, {"$set": fields})
        if updated.matched_count:
            return True
        if queue.find_one({"_id": failed["_id"]}, {"_id": 1}) is not None:
            return False  # requeued by someone else already, or not failed
        doc = {key: value for key, value in failed.items() if key != "result"}
        doc.update((key, value) for key, value in fields.items() if "." not in key)
        doc["ts"] = {**failed.get("ts", {}), "started": None, "done": None}
        try:  # evicted from the ring: back in from history
            queue.insert_one(doc)
        except DuplicateKeyError:
            return False  # another requeue put it back first
        return True

    if not retried(back, "a requeue"):
        return False
    try:
        retried(
            lambda again: history.delete_one({**attempt, "status": Status.FAILED.value}),
            "a requeue's history row",
        )
    except Exception:
        _undo(queue, failed, mine)
        raise
    return True


def _undo(queue: Collection, failed: dict[str, Any], mine: dict[str, Any]) -> None:
    """The requeued job back to failed in the ring, as it was (history still holds that
    failure), unless a claim took it already; if even that fails, say so."""
    was = {key: failed.get(key) for key in ("status", "available_at", "lease_until", "worker")}
    was.update(max_attempts=failed.get("max_attempts"), ts=failed.get("ts", {}))
    still = {**mine, "status": Status.WAITING.value}
    try:
        retried(
            lambda again: queue.update_one(still, {"$set": was, "$unset": {"requeue_id": ""}}),
            "undoing a requeue",
        )
    except PyMongoError as exc:
        log.warning("requeue of job %s half done, not put back: %s", mine["_id"], exc)
