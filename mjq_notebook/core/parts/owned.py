"""Writes made under a claim: each applies only while the claim still holds the job.

A claim is (job id, worker, attempts). A worker whose lease ran out, and whose job another
worker took over, finds its writes matched nothing and gets ``LeaseLostError``: two workers
never both finish one job. Finishing writes history first, so a job is always findable in
the queue or in history (what ``counts()`` relies on to tell an evicted job from a finished
one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pymongo.errors import ClientBulkWriteException, DuplicateKeyError

from ...errors import LeaseLostError
from ..job import IN_HISTORY, Job, Status, utcnow
from ..retries import retried
from . import attempts, writes

if TYPE_CHECKING:
    from pymongo.collection import Collection
    from pymongo.database import Database


class OwnedWrites:
    """The claim-conditional writes of one queue: finish, and update while held."""

    def __init__(
        self, db: Database, queue: Collection, history: Collection, log: Collection
    ) -> None:
        self.db, self.queue, self.history = db, queue, history
        self.log = log  # every ended attempt (attempts.py), written first
        self.fuse = False  # one client bulkWrite per finish (MongoDB 8.0+), see writes.py

    def finish(self, job: Job, status: Status, fields: dict[str, Any]) -> None:
        """``job`` (held by this claim) becomes ``status`` with ``fields``, in history and
        in the queue. A job another program published keeps having no ``max_attempts``:
        its absence tells them apart (``counts()``, naive times)."""
        now = utcnow()
        final = {**job, **fields, "status": status.value, "lease_until": None}
        final["ts"] = {**job.get("ts", {}), "done": now}
        fields = {
            **fields,
            "status": status.value,
            "ts.done": now,
            "lease_until": None,
            IN_HISTORY: True,
        }
        if "progress" in job:  # the last report, which the rate limit may have held back
            fields["progress"] = job["progress"]
        # The history row written is this claim's own: it replaces only this very finish
        # (repeated after a lost reply), never the row of another claim or outcome (a worker
        # whose lease ran out would overwrite, then delete, the finish of the worker that
        # took the job over).
        mine = {
            "_id": job.id,
            "worker": job.get("worker"),
            "attempts": job.get("attempts"),
            "status": status.value,
        }
        try:
            self._finish(job, status, fields, final, mine)
        except (DuplicateKeyError, ClientBulkWriteException) as exc:
            if not _duplicate_key(exc):
                raise
            # history holds a row of this job from another claim or outcome: we lost the job,
            # unless we still hold it (that row is then a late worker's, about to be taken
            # back or left by a crash, and ours replaces it)
            if self.queue.find_one({**mine, "status": Status.WORKING.value}) is None:
                raise LeaseLostError(
                    f"job {job.id} is no longer held by this worker (it was finished already, "
                    "or its lease expired and it was claimed again)"
                ) from None
            self._finish(job, status, fields, final, {"_id": job.id})

    def _finish(
        self,
        job: Job,
        status: Status,
        fields: dict[str, Any],
        final: dict[str, Any],
        match: dict[str, Any],
    ) -> None:
        """``final`` into history where ``match`` (upsert), then ``job`` finished in the queue
        if this claim still holds it; if not, the history row and the attempt's record
        (written first, ``attempts.py``) are taken back."""
        history = writes.Replace(self.history, match, final, upsert=True)
        outcome = status.value
        ended = attempts.ended_write(self.log, final, outcome, fields.get("error"))
        try:
            self.update(job, fields, then=status, after=[ended, history])
        except LeaseLostError:
            # ...unless it is a finish that stands: this claim's own, repeated after a sweep
            # took the job out of the ring (rows of other claims or outcomes are never matched)
            if self.queue.find_one({"_id": job.id}, {"_id": 1}) is not None:
                retried(lambda again: self.history.delete_one(match), "taking back a finish")
                attempts.take_back(self.log, final, outcome)  # and its attempt's record
            raise

    def retry_later(self, job: Job, fields: dict[str, Any]) -> None:
        """The failed attempt recorded, then ``job`` waiting again with ``fields``."""
        ended = attempts.ended_write(self.log, job, "failed", fields.get("error"))
        try:
            self.update(job, fields, then=Status.WAITING, after=[ended])
        except LeaseLostError:
            attempts.take_back(self.log, job, "failed")
            raise

    def release(self, job: Job) -> None:
        """working -> waiting, the attempt given back; sent again after a lost reply, it
        finds the job released by this very claim (its ``claim_id``) and is done."""
        released = {
            "_id": job.id,
            "status": Status.WAITING.value,
            "worker": None,
            "attempts": job.attempts - 1,
            "claim_id": job.get("claim_id"),
        }
        fields = {"status": Status.WAITING.value, "lease_until": None, "worker": None}
        self.update(
            job, {**fields, "ts.started": None}, inc={"attempts": -1}, done_if_found=released
        )
        job.finished = True

    def update(
        self,
        job: Job,
        fields: dict[str, Any],
        *,
        inc: dict[str, int] | None = None,
        then: Status | None = None,
        after: list[writes.Write] | None = None,
        done_if_found: dict[str, Any] | None = None,
    ) -> None:
        """Update ``job`` only while this claim still owns it (after the writes ``after``).

        ``then`` is the status the update sets: a retry after a lost reply (the server did
        apply it) finds the job already there under our claim and succeeds again. An update
        that changes what the claim is matched on says what it leaves in ``done_if_found``
        (``writes.Update``).
        """
        statuses = [Status.WORKING.value] + ([then.value] if then else [])
        owned = {
            "_id": job.id,
            "status": {"$in": statuses},
            "worker": job.get("worker"),
            "attempts": job.get("attempts"),
        }
        update: dict[str, Any] = {"$set": fields}
        if inc:
            update["$inc"] = inc
        mine = writes.Update(self.queue, owned, update, done_if_found=done_if_found)
        planned = [*(after or []), mine]
        matched = writes.run(self.db, planned, together=self.fuse and len(planned) > 1)[-1]
        if matched == 0:
            raise LeaseLostError(
                f"job {job.id} is no longer held by this worker (its lease expired and it was "
                "claimed again, or it was finished already)"
            )
        if then is not None and then is not Status.WORKING:
            job.finished = True
        for key, value in fields.items():
            if key.startswith("ts."):
                job.setdefault("ts", {})[key[3:]] = value
            else:
                job[key] = value


def _duplicate_key(exc: Exception) -> bool:
    """True for a duplicate-key error, of a plain write or in a client bulkWrite."""
    if isinstance(exc, DuplicateKeyError):
        return True
    errors = getattr(exc, "write_errors", None) or []
    return any(error.get("code") == 11000 for error in errors)
