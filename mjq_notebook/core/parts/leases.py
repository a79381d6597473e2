"""Claims are leases: a claim takes the best due job for ``lease`` seconds, and a job whose
lease expires unrenewed (its worker vanished) is *reclaimed*: working -> waiting. Failed jobs
going back are *requeued* instead (``requeue.py``); the two never share a name.

Jobs other programs wrote (pymjq) have no lease and no priority: a ``working`` one comes back
after its start plus the lease, and a waiting one is given priority 0 by the same pass.
"""

from __future__ import annotations

import datetime as dt
import time
from functools import partial
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import OperationFailure

from ..job import Status, malformed, utcnow
from ..retries import retried, transient
from . import attempts
from .quarantine import mend, set_aside

if TYPE_CHECKING:
    from pymongo.collection import Collection

RECLAIM_EVERY_S = 1.0  # claims look for expired leases at most this often (lease/4 if less)
MEND_AT_MOST = 10  # malformed jobs one claim mends before it gives up (quarantine.py)


def claim_one(collection: Collection, worker: str, lease: float) -> dict[str, Any] | None:
    """One atomic claim of the best waiting job that is due, for ``worker``; None if none.

    Only waiting jobs are claimed, so the query walks the (status, priority, _id) index
    and stops at the first due job, however long the backlog. The claim carries a token of
    its own (``claim_id``): sent again after a fault (``retries.py``), it first adopts the job
    an earlier attempt may have claimed without hearing back, so that job neither waits out
    its lease nor is claimed twice. A claim the server refuses because of the job itself (a
    document another program wrote) mends that job (``quarantine.mend``) and tries again; a
    job claimed that is too large for its outcome to be stored is set aside, not run.
    """
    order = [("priority", DESCENDING), ("_id", ASCENDING)]

    def due() -> dict[str, Any]:
        return {"status": Status.WAITING.value, "available_at": {"$not": {"$gt": utcnow()}}}

    def claim(token: ObjectId, again: bool) -> dict[str, Any] | None:
        if again:
            mine = {"status": Status.WORKING.value, "worker": worker, "claim_id": token}
            if (adopted := collection.find_one(mine)) is not None:
                return adopted
        now = utcnow()
        return collection.find_one_and_update(
            due(),
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
            sort=order,
            return_document=ReturnDocument.AFTER,
        )

    for _ in range(MEND_AT_MOST):
        token = ObjectId()
        try:
            doc = retried(partial(claim, token), f"a claim in {collection.full_name}")
        except OperationFailure as exc:
            if transient(exc):
                raise  # the retries ran out; if it was applied, the job comes back with its lease
            job = collection.find_one(due(), sort=order)
            if job is None or not mend(collection, job):
                raise
            continue
        reason = None if doc is None else malformed(doc)
        if doc is None or reason is None:
            return doc
        # claimed, but too large for its outcome to be stored with it: no use running it
        mine = {"_id": doc["_id"], "worker": worker, "attempts": doc["attempts"]}
        set_aside(collection, doc, reason, {**mine, "status": Status.WORKING.value})
    raise OperationFailure(f"claims keep failing on malformed jobs in {collection.name}")


class Reclaimer:
    """Hands the jobs of expired leases back to waiting, at most every so often, and gives
    waiting jobs without a priority (pymjq's) priority 0.

    So a job without priority is claimed as priority 0, oldest first among both kinds, from
    the pass after its publish: within ``every`` seconds (at most ``RECLAIM_EVERY_S``; before
    that it sorts below every priority-0 job). ``naive_tz``: the time zone of other
    programs' naive start times (pymjq wrote local ``datetime.now()``), else UTC.
    """

    def __init__(
        self,
        collection: Collection,
        lease: float,
        naive_tz: ZoneInfo | None = None,
        log: Collection | None = None,
    ):
        self.collection = collection
        self.log = log  # where each reclaimed attempt is recorded as lost (attempts.py)
        self.lease = lease
        self.naive_tz = naive_tz
        self.every = min(lease / 4, RECLAIM_EVERY_S)
        self.next_at = 0.0  # monotonic time of the next look

    def reclaim_if_due(self) -> None:
        if time.monotonic() >= self.next_at:
            self.reclaim()

    def reclaim(self) -> None:
        """working -> waiting for every job whose lease has expired, or that has no lease
        and started more than a lease ago; then priority 0 for waiting jobs that have none.

        Conditional updates along the ring's indexes (a few index entries each when there
        is nothing to do): a worker that is merely late then finds the job gone
        (LeaseLostError) rather than two workers finishing it.
        """
        self.next_at = time.monotonic() + self.every
        now = utcnow()
        started_before = self._as_stored(now) - dt.timedelta(seconds=self.lease)
        back = {"$set": {"status": Status.WAITING.value, "lease_until": None, "available_at": now}}
        working = Status.WORKING.value
        # each expired job by itself, so that its attempt can be recorded as lost: a read
        # along the (status, lease_until) index, a few entries when there is nothing to do
        expired = {"status": working, "lease_until": {"$lt": now}}
        fields = {"attempts": 1, "worker": 1, "ts": 1, "progress": 1}
        for doc in retried(
            lambda again: list(self.collection.find(expired, fields)),
            f"the lease reclaim in {self.collection.full_name}",
        ):
            reclaim_one(self.collection, doc, self.log, expired)
        # Without a lease: read first (an index range of few jobs; some servers plan a null
        # beside another condition as a collection scan), then the same update on each.
        unleased = {"status": working, "lease_until": {"$in": [None]}}
        abandoned = [
            doc["_id"]
            for doc in self.collection.find(unleased, {"ts.started": 1})
            if _before(doc.get("ts"), started_before)
        ]
        if abandoned:
            self.collection.update_many(
                {**unleased, "_id": {"$in": abandoned}, "ts.started": {"$lt": started_before}},
                back,
                hint="_id_",  # not planned as a scan (SecantusDB plans nulls so)
            )
        self._fill_priorities()

    def _fill_priorities(self) -> None:
        """Priority 0 for waiting jobs that have none; one by one if a job can't take the
        field (another program wrote it too large), which is then mended (quarantine.py)."""
        missing = {"status": Status.WAITING.value, "priority": None}
        zero = {"$set": {"priority": 0}}
        try:
            retried(lambda again: self.collection.update_many(missing, zero), "a priority fill")
        except OperationFailure as exc:
            if transient(exc):
                raise
            for found in self.collection.find(missing, {"_id": 1}):
                try:
                    self.collection.update_one({**missing, "_id": found["_id"]}, zero)
                except OperationFailure:
                    doc = self.collection.find_one({**missing, "_id": found["_id"]})
                    if doc is None or not mend(self.collection, doc):
                        raise

    def _as_stored(self, now: dt.datetime) -> dt.datetime:
        """``now`` as another program writes it: the local wall time of ``naive_tz``
        (stored as if UTC), or UTC."""
        if self.naive_tz is None:
            return now
        return now.astimezone(self.naive_tz).replace(tzinfo=dt.timezone.utc)


def _before(ts: Any, when: dt.datetime) -> bool:
    """Whether a job's ``ts`` says it started before ``when``."""
    started = ts.get("started") if isinstance(ts, dict) else None
    return isinstance(started, dt.datetime) and started < when


def reclaim_one(
    collection: Collection,
    job: dict[str, Any],
    log: Collection | None = None,
    also: dict[str, Any] | None = None,
) -> bool:
    """Hand ``job`` (a working job's document) back to waiting now, as its lease expiring
    would: only while the same claim holds it (attempt and worker, and ``also``), so if that
    worker was only paused and comes back, it finds the job gone and cannot also finish it.
    Then that attempt is recorded in ``log`` as lost: after the reclaim, so a job that
    finished meanwhile never gets a lost record (a crash between the two leaves none)."""
    now = utcnow()
    claim = {"_id": job["_id"], "attempts": job.get("attempts"), "worker": job.get("worker")}
    back = {"$set": {"status": Status.WAITING.value, "lease_until": None, "available_at": now}}

    def reclaim(again: bool) -> bool:
        held = {**(also or {}), **claim, "status": Status.WORKING.value}
        updated = collection.update_one(held, back)
        if updated.modified_count or not again:
            return updated.modified_count == 1
        # sent again: an earlier try may have reclaimed it (no claim since: same attempts)
        waiting = {**claim, "status": Status.WAITING.value}
        return collection.find_one(waiting, {"_id": 1}) is not None

    if not retried(reclaim, f"a reclaim in {collection.full_name}"):
        return False
    if log is not None:
        attempts.lost(log, job, now)
    return True
