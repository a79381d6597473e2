"""Steering a waiting job from outside its workers: cancel it, or make it due now.

Both are single conditional updates of the job while it waits, so racing a claim a job ends
either claimed or cancelled (promoted), never both.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from pymongo.errors import DuplicateKeyError

from .job import IN_HISTORY, Status, utcnow

if TYPE_CHECKING:
    from pymongo.collection import Collection


def cancel(queue: Collection, history: Collection, job_id: Any) -> bool:
    """waiting (or delayed) -> cancelled, a final status kept in history; True if this call
    did.

    History first, as every finish: a job is then always in the queue or in history (what
    ``counts()`` relies on). If a claim (or another cancel) took the job meanwhile, this
    call's history row goes again.
    """
    doc = queue.find_one({"_id": job_id, "status": Status.WAITING.value})
    if doc is None:
        return False
    now = utcnow()
    fields = {"status": Status.CANCELLED.value, "lease_until": None, IN_HISTORY: True}
    # this call's own row (``cancel_id``): a cancel that loses the race takes back only its
    # own row, never the winner's
    token = uuid.uuid4().hex
    final = {**doc, **fields, "cancel_id": token, "ts": {**doc.get("ts", {}), "done": now}}
    mine = {"_id": job_id, "status": Status.CANCELLED.value, "cancel_id": token}
    try:
        history.insert_one(final)
    except DuplicateKeyError:
        return False  # history holds another outcome of it (another cancel, or a requeue)
    updated = queue.update_one(
        {"_id": job_id, "status": Status.WAITING.value, "attempts": doc.get("attempts")},
        {"$set": {**fields, "ts.done": now}},
    )
    if updated.modified_count != 1:
        history.delete_one(mine)  # claimed (or cancelled) by someone else first
        return False
    return True


def promote(queue: Collection, job_id: Any) -> bool:
    """A delayed waiting job, or a retry waiting out its back-off, due now; True if it was."""
    now = utcnow()
    updated = queue.update_one(
        {"_id": job_id, "status": Status.WAITING.value, "available_at": {"$gt": now}},
        {"$set": {"available_at": now}},
    )
    return updated.modified_count == 1
