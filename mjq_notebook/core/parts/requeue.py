"""Requeueing: a failed job back to waiting, with more attempts (``q.retry``).

Jobs of expired leases are *reclaimed* instead (``leases.py``); ``bulk.py`` finds the
failed jobs of ``q.retry_all`` (and ``retry_failed``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pymongo.errors import DuplicateKeyError, PyMongoError

from ..job import IN_HISTORY, Status, stored_size, utcnow
from ..minutes import note_late
from ..retries import retried
from . import attempts

if TYPE_CHECKING:
    from pymongo.collection import Collection

log = logging.getLogger("mjq_notebook")


def failed_jobs(queue: Collection, history: Collection, query: Mapping[str, Any]) -> list[dict]:
    """The failed jobs matching ``query``, each once: history's copy where it has one (jobs
    are in history once finished; the ring may have evicted them since)."""
    match = {**query, "status": Status.FAILED.value}
    failed = {doc["_id"]: doc for doc in queue.find(match)}
    failed.update((doc["_id"], doc) for doc in history.find(match))
    return list(failed.values())


KEEP: Any = object()  # requeue's ``data`` when the job keeps its own


def requeue(
    queue: Collection,
    history: Collection,
    failed: dict[str, Any],
    more: int,
    *,
    data: Any = KEEP,
    log: Collection | None = None,
    by: Any = None,
) -> bool:
    """Move one failed job (its final document) back to waiting with ``more`` attempts
    beyond those it used; True if this call did. ``data``: the job runs with that instead
    (edit and retry), the data it had kept in ``log`` (an ``edited`` entry, with ``by``),
    under the same conditions: written before the requeue, taken back if it does not happen
    (a crash between the two leaves an entry for an edit not made, never an edit unrecorded).

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
    if data is not KEEP:
        fields["data"] = data
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

    entry = None if data is KEEP or log is None else attempts.edited(log, failed, token, by)
    if not retried(back, "a requeue"):
        if entry is not None:
            retried(lambda again: log.delete_one(entry), "taking back an edit")  # type: ignore[union-attr]  # set with entry
        return False
    try:
        retried(
            lambda again: history.delete_one({**attempt, "status": Status.FAILED.value}),
            "a requeue's history row",
        )
    except Exception:
        _undo(queue, failed, mine)
        if entry is not None:
            log.delete_one(entry)  # type: ignore[union-attr]  # set with entry
        raise
    # that failure was no job's last: the rollups count it as a retry once they recount it
    ts = failed.get("ts") if isinstance(failed.get("ts"), Mapping) else {}
    note_late(queue, [ts.get("done")], now)  # type: ignore[union-attr]  # a Mapping
    return True


def _undo(queue: Collection, failed: dict[str, Any], mine: dict[str, Any]) -> None:
    """The requeued job back to failed in the ring, as it was (history still holds that
    failure), unless a claim took it already; if even that fails, say so."""
    was = {key: failed.get(key) for key in ("status", "available_at", "lease_until", "worker")}
    was.update(max_attempts=failed.get("max_attempts"), ts=failed.get("ts", {}))
    was["data"] = failed.get("data")  # an edit's data goes too
    still = {**mine, "status": Status.WAITING.value}
    try:
        retried(
            lambda again: queue.update_one(still, {"$set": was, "$unset": {"requeue_id": ""}}),
            "undoing a requeue",
        )
    except PyMongoError as exc:
        log.warning("requeue of job %s half done, not put back: %s", mine["_id"], exc)


def requeue_edited(
    queue: Collection,
    history: Collection,
    log: Collection,
    job_id: Any,
    data: Any,
    more: int,
    by: Any = None,
) -> bool:
    """Edit and retry: the failed job ``job_id`` back to waiting with ``data`` (checked as
    a publish is: PublishError, nothing written, when the job can't hold it); False, nothing
    written, when it is not failed."""
    stored_size({"data": data}, "the new data")
    for failed in failed_jobs(queue, history, {"_id": job_id}):
        rest = {key: value for key, value in failed.items() if key != "result"}
        stored_size({**rest, "data": data}, "the job with the new data")
        return requeue(queue, history, failed, more, data=data, log=log, by=by)
    return False
