"""Claims are leases: a claim takes the best due job for ``lease`` seconds, and a job whose
lease expires unrenewed (its worker vanished) is *reclaimed*: working -> waiting. Failed jobs
going back are *requeued* instead (``requeue.py``); the two never share a name."""

from __future__ import annotations

import datetime as dt
import time
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument

from .job import Status, utcnow
from .retries import retried

if TYPE_CHECKING:
    from pymongo.collection import Collection

RECLAIM_EVERY_S = 1.0  # claims look for expired leases at most this often (lease/4 if less)


def claim_one(collection: Collection, worker: str, lease: float) -> dict[str, Any] | None:
    """One atomic claim of the best waiting job that is due, for ``worker``; None if none.

    Only waiting jobs are claimed, so the query walks the (status, priority, _id) index
    and stops at the first due job, however long the backlog. The claim carries a token of
    its own (``claim_id``): sent again after a fault (``retries.py``), it first adopts the job
    an earlier attempt may have claimed without hearing back, so that job neither waits out
    its lease nor is claimed twice.
    """
    token = ObjectId()

    def claim(again: bool) -> dict[str, Any] | None:
        if again:
            mine = {"status": Status.WORKING.value, "worker": worker, "claim_id": token}
            if (adopted := collection.find_one(mine)) is not None:
                return adopted
        now = utcnow()
        return collection.find_one_and_update(
            {"status": Status.WAITING.value, "available_at": {"$not": {"$gt": now}}},
            {
                "$set": {
                    "status": Status.WORKING.value,
                    "ts.started": now,
                    "lease_until": now + dt.timedelta(seconds=lease),
                    "worker": worker,
                    "claim_id": token,
                },
                "$inc": {"attempts": 1},
            },
            sort=[("priority", DESCENDING), ("_id", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )

    return retried(claim, f"a claim in {collection.full_name}")


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
        retried(  # safe to repeat: only leases expired by ``now`` match
            lambda again: self.collection.update_many(
                {"status": Status.WORKING.value, "lease_until": {"$lt": now}},
                {
                    "$set": {
                        "status": Status.WAITING.value,
                        "lease_until": None,
                        "available_at": now,
                    }
                },
            ),
            f"the lease reclaim in {self.collection.full_name}",
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
