"""Steering a waiting job from outside its workers: cancel it, or make it due now.

Both are conditional updates of the job while it waits, so racing a claim a job ends either
claimed or cancelled (promoted), never both.
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


def cancel(queue: Collection, history: Collection, job_id: Any) -> bool:
    """waiting (or delayed) -> cancelled, a final status kept in history; True if this call
    did.

    History first, as every finish: a job is then always in the queue or in history (what
    ``counts()`` relies on). If a claim (or another cancel) took the job meanwhile, this
    call's history row goes again. Both writes carry this call's token (``cancel_id``), so each
    is sent again after a fault (``retries.py``) without doing it twice; if the second can't
    be made, the first is undone and the error raised: the job is never waiting in the queue
    and cancelled in history at once.
    """
    doc = queue.find_one({"_id": job_id, "status": Status.WAITING.value})
    if doc is None:
        return False
    now = utcnow()
    # this call's own row and update (``cancel_id``): a cancel that loses the race takes back
    # only its own row, never the winner's, and a repeat finds its own write done
    token = uuid.uuid4().hex
    fields = {
        "status": Status.CANCELLED.value,
        "lease_until": None,
        IN_HISTORY: True,
        "cancel_id": token,
    }
    final = {**doc, **fields, "ts": {**doc.get("ts", {}), "done": now}}
    mine = {"_id": job_id, "status": Status.CANCELLED.value, "cancel_id": token}

    def record(again: bool) -> bool:
        try:
            history.insert_one(final)
        except DuplicateKeyError:
            # history holds another outcome of it (another cancel, or a requeue), or, sent
            # again, this very row
            return again and history.find_one(mine, {"_id": 1}) is not None
        return True

    if not retried(record, "a cancel's history row"):
        return False
    waiting = {"_id": job_id, "status": Status.WAITING.value, "attempts": doc.get("attempts")}

    def mark(again: bool) -> bool:
        updated = queue.update_one(waiting, {"$set": {**fields, "ts.done": now}})
        return updated.modified_count == 1 or (
            again and queue.find_one(mine, {"_id": 1}) is not None
        )

    try:
        cancelled = retried(mark, "a cancel")
    except Exception:
        _undo(queue, history, mine)
        raise
    if not cancelled:
        retried(lambda again: history.delete_one(mine), "taking back a cancel's history row")
        return False  # claimed (or cancelled) by someone else first
    return True


def _undo(queue: Collection, history: Collection, mine: dict[str, Any]) -> None:
    """Take back a cancel's history row when its job was not cancelled in the queue after
    all; if even that fails, say so (the job then reads as waiting and cancelled at once)."""
    try:
        if queue.find_one(mine, {"_id": 1}) is None:
            retried(lambda again: history.delete_one(mine), "undoing a cancel's history row")
    except PyMongoError as exc:
        log.warning("cancel of job %s half done, history not put back: %s", mine["_id"], exc)


def promote(queue: Collection, job_id: Any) -> bool:
    """A delayed waiting job, or a retry waiting out its back-off, due now; True if it was."""
    now = utcnow()

    def make_due(again: bool) -> bool:
        updated = queue.update_one(
            {"_id": job_id, "status": Status.WAITING.value, "available_at": {"$gt": now}},
            {"$set": {"available_at": now}},
        )
        # sent again: an earlier attempt may have made it due at this very ``now``
        mine = {"_id": job_id, "status": Status.WAITING.value, "available_at": now}
        return updated.modified_count == 1 or (again and queue.find_one(mine) is not None)

    return retried(make_due, "a promote")
