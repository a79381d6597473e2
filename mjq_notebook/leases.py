"""Claims are leases: a claim takes the best due job for ``lease`` seconds, and a job whose
lease expires unrenewed (its worker vanished) is *reclaimed*: working -> waiting. Failed jobs
going back are *requeued* instead (``requeue.py``); the two never share a name."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import OperationFailure, WriteConcernError

from .job import Status, utcnow
from .quarantine import mend

if TYPE_CHECKING:
    from pymongo.collection import Collection

RECLAIM_EVERY_S = 1.0  # claims look for expired leases at most this often (lease/4 if less)


MEND_AT_MOST = 10  # malformed jobs one claim mends before it gives up (quarantine.py)


def claim_one(collection: Collection, worker: str, lease: float) -> dict[str, Any] | None:
    """One atomic claim of the best waiting job that is due, for ``worker``; None if none.

    Only waiting jobs are claimed, so the query walks the (status, priority, _id) index
    and stops at the first due job, however long the backlog. A claim the server refuses
    because of the job itself (a document another program wrote) mends that job
    (``quarantine.mend``) and tries again.
    """
    for _ in range(MEND_AT_MOST):
        now = utcnow()
        due = {"status": Status.WAITING.value, "available_at": {"$not": {"$gt": now}}}
        order = [("priority", DESCENDING), ("_id", ASCENDING)]
        try:
            return collection.find_one_and_update(
                due,
                {
                    "$set": {
                        "status": Status.WORKING.value,
                        "ts.started": now,
                        "lease_until": now + dt.timedelta(seconds=lease),
                        "worker": worker,
                    },
                    "$inc": {"attempts": 1},
                },
                sort=order,
                return_document=ReturnDocument.AFTER,
            )
        except OperationFailure as exc:
            if isinstance(exc, WriteConcernError):
                raise  # applied: the job comes back when its lease ends
            job = collection.find_one(due, sort=order)
            if job is None or not mend(collection, job):
                raise
    raise OperationFailure(f"claims keep failing on malformed jobs in {collection.name}")


class Reclaimer:
    """Hands the jobs of expired leases back to waiting, at most every so often."""

    def __init__(self, collection: Collection, lease: float) -> None:
        self.collection = collection
        self.every = min(lease / 4, RECLAIM_EVERY_S)
        self.next_at = 0.0  # monotonic time of the next look

    def reclaim_if_due(self) -> None:
        if time.monotonic() >= self.next_at:
            self.reclaim()

    def reclaim(self) -> None:
        """working -> waiting for every job whose lease has expired.

        One conditional update: a worker that is merely late then finds the job gone
        (LeaseLostError) rather than two workers finishing it.
        """
        self.next_at = time.monotonic() + self.every
        now = utcnow()
        self.collection.update_many(
            {"status": Status.WORKING.value, "lease_until": {"$lt": now}},
            {"$set": {"status": Status.WAITING.value, "lease_until": None, "available_at": now}},
        )


def reclaim_one(collection: Collection, job: dict[str, Any]) -> bool:
    """Hand ``job`` (a working job's document) back to waiting now, as its lease expiring
    would: only while the same claim holds it (attempt and worker), so if that worker was
    only paused and comes back, it finds the job gone and cannot also finish it."""
    now = utcnow()
    updated = collection.update_one(
        {
            "_id": job["_id"],
            "status": Status.WORKING.value,
            "attempts": job.get("attempts"),
            "worker": job.get("worker"),
        },
        {"$set": {"status": Status.WAITING.value, "lease_until": None, "available_at": now}},
    )
    return updated.modified_count == 1
