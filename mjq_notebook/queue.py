"""JobQueue: publish into a capped collection, claim atomically, finish into history."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from bson.codec_options import CodecOptions
from pymongo import ASCENDING, DESCENDING, ReturnDocument, WriteConcern
from pymongo.errors import (
    ClientBulkWriteException,
    CollectionInvalid,
    ConnectionFailure,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
)

from . import writes
from .errors import (
    DataLossWarning,
    Empty,
    InvalidQueueError,
    LeaseLostError,
    warn_at_caller,
)
from .job import (
    FINISHED,
    PUBLISHED_BY_US,
    STATUSES,
    Job,
    JobList,
    Status,
    error_document,
    new_document,
    stored_size,
    utcnow,
)
from .outage import Backoff, OutageLog, display_timeout, unavailable_as_error
from .wakeup import Wakeup

if TYPE_CHECKING:
    import pandas as pd
    from pymongo.database import Database

    from .notebook.widgets import Dashboard, Explorer, Publisher, Tail

log = logging.getLogger("mjq_notebook")

SWEEP_EVERY_S = 1.0  # finishing sweeps finished jobs out of the ring at most this often...
SWEEP_AFTER = 50  # ...or after this many finishes by this queue object


class JobQueue:
    """A job queue in a capped MongoDB collection, compatible with pymjq's ``JobQueue(db)``.

    Claims are single atomic ``find_one_and_update`` calls, so competing workers never hold
    the same job; a claim is a lease, and a job whose worker vanished comes back when the lease
    expires. Finished jobs are copied to ``<name>.history`` so the ring buffer's evictions never
    lose them. ``write_concern`` (e.g. ``WriteConcern(w=1, j=True)`` on a standalone mongod)
    is what every acknowledgement of the queue waits for; by default the database's.
    """

    @unavailable_as_error
    def __init__(
        self,
        db: Database,
        name: str = "jobqueue",
        *,
        max_jobs: int = 100_000,
        size_bytes: int = 64 * 2**20,
        lease: float = 60.0,
        max_attempts: int = 3,
        backoff: float = 1.0,
        write_concern: WriteConcern | None = None,
    ) -> None:
        codec = CodecOptions(tz_aware=True, tzinfo=dt.timezone.utc, document_class=dict)
        # every write of the queue (publish, claim, finish, requeue) is acknowledged under
        # write_concern; None: the database's (the client's, or the URI's ?w=&journal=)
        self.db = db.with_options(codec_options=codec, write_concern=write_concern)
        self.name = name
        self.lease = float(lease)
        self.max_attempts = int(max_attempts)
        self.backoff = float(backoff)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.collection = self.db[name]
        self.history_collection = self.db[f"{name}.history"]
        self._meta = self.db[f"{name}.meta"]
        self._ensure_collection(max_jobs, size_bytes)
        self._fuse = writes.supports_client_bulk_write(self.db)  # see writes.py
        self._wakeup = Wakeup(self.collection)
        self.outage = OutageLog(log, f"queue {self.db.name}.{name}")  # said once per outage
        self._lost_reported = 0
        self._next_requeue = 0.0  # monotonic time of the next look for expired leases
        self._next_sweep = 0.0  # ... and of the next sweep of finished jobs (_sweep_finished)
        self._finished_since_sweep = 0
        self._due = self._due_checked = 0.0  # see _idle_wait()

    # -- set-up ---------------------------------------------------------------------------

    def _ensure_collection(self, max_jobs: int | None, size_bytes: int) -> None:
        """Create the capped collection and its indexes; leave a non-capped one untouched."""
        if self.name not in self.db.list_collection_names(filter={"name": self.name}):
            limits = {"size": size_bytes} | ({"max": max_jobs} if max_jobs else {})
            try:
                self.db.create_collection(self.name, capped=True, **limits)
                log.info("Creating %s collection.", self.name)
            except (CollectionInvalid, OperationFailure):
                pass  # another process created it first; check below what it is
        self._capped = self.valid()
        if self._capped:
            self.collection.create_index(
                [("status", ASCENDING), ("priority", DESCENDING), ("_id", ASCENDING)]
            )
            self.collection.create_index([("status", ASCENDING), ("lease_until", ASCENDING)])
            # counts() counts failed jobs by status; the live charts read finishes by time
            self.history_collection.create_index([("status", ASCENDING)])
            self.history_collection.create_index([("ts.done", ASCENDING)])

    @unavailable_as_error
    def valid(self) -> bool:
        """True when the collection exists and is capped (the seed's check)."""
        return bool(self.collection.options().get("capped"))

    def _require_capped(self) -> None:
        if not self._capped:
            raise InvalidQueueError(
                f"collection {self.db.name}.{self.name} is not capped, so it can't be a job "
                "queue; nothing was written. Use another name, or drop it and let JobQueue "
                "create it."
            )

    # -- publishing -----------------------------------------------------------------------

    @unavailable_as_error
    def pub(
        self,
        data: Any,
        *,
        priority: int = 0,
        delay: float = 0,
        max_attempts: int | None = None,
    ) -> ObjectId:
        """Publish one job; returns its id. Higher ``priority`` is claimed first; a ``delay``
        in seconds keeps it unclaimable until then."""
        [doc] = self._documents([data], priority, delay, max_attempts)
        self._insert([doc], delay)
        return doc["_id"]

    @unavailable_as_error
    def pub_many(
        self,
        items: Iterable[Any],
        *,
        priority: int = 0,
        delay: float = 0,
        max_attempts: int | None = None,
    ) -> list[ObjectId]:
        """Publish many jobs in one round trip; all are checked before any is written."""
        docs = self._documents(list(items), priority, delay, max_attempts)
        if docs:
            self._insert(docs, delay)
        return [doc["_id"] for doc in docs]

    def _documents(
        self, items: list[Any], priority: int, delay: float, max_attempts: int | None
    ) -> list[dict[str, Any]]:
        self._require_capped()
        now = utcnow()
        available = now + dt.timedelta(seconds=delay)
        attempts = self.max_attempts if max_attempts is None else int(max_attempts)
        docs = []
        for index, data in enumerate(items):
            doc = new_document(
                data, priority=int(priority), available_at=available, max_attempts=attempts, now=now
            )
            stored_size(doc, f"the data of job {index}" if len(items) > 1 else "the data")
            docs.append(doc)
        return docs

    def _insert(self, docs: list[dict[str, Any]], delay: float) -> None:
        # A running total of published jobs lets counts() tell jobs evicted unfinished from
        # jobs that finished; it is written after the jobs. A single job shares its round
        # trip with it; a batch goes as insert_many, which servers take faster than a
        # bulkWrite of as many single inserts.
        count = writes.Update(
            self._meta, {"_id": "counters"}, {"$inc": {"published": len(docs)}}, upsert=True
        )
        together = self._fuse and len(docs) == 1
        writes.run(self.db, [writes.Insert(self.collection, docs), count], together=together)
        if delay:
            self._expect(delay)

    # -- claiming -------------------------------------------------------------------------

    @unavailable_as_error
    def next(self, timeout: float | None = 0) -> Job:
        """Claim the next job (highest priority, then oldest): it becomes ``working`` with a
        lease. With no job, raises ``Empty`` at once, as pymjq did; ``timeout`` waits up to
        that many seconds first (None: forever)."""
        self._require_capped()
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = Backoff()
        while True:
            try:
                job = self._claim()
                backoff.reset()
                self.outage.back()
            except ConnectionFailure as exc:
                # The server is away (restart, failover): back off, bounded, and try again.
                if deadline is not None and time.monotonic() + backoff.pause > deadline:
                    raise
                self.outage.away(exc, "claiming")
                backoff.wait()
                continue
            if job is not None:
                return job
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                waited = f" within {timeout:g}s" if timeout else ""
                raise Empty(f"no job waiting in {self.db.name}.{self.name}{waited}")
            wait = self._idle_wait()
            self._wakeup.wait(wait if remaining is None else min(remaining, wait))

    def _claim(self) -> Job | None:
        """Claim one job, first handing abandoned jobs (expired leases) back to waiting."""
        if time.monotonic() >= self._next_requeue:
            self._requeue_expired()
        return self._claim_one()

    def _idle_wait(self) -> float:
        """Seconds an idle consumer may wait for an insert before it claims again.

        A delayed or retried job, or an expired lease, becomes claimable without an insert:
        wait no longer than until the next one is due. That is read from the server at most
        once a second (so at most a second late for what other processes schedule); what
        this queue object schedules itself is known at once (``_expect``).
        """
        now = time.monotonic()
        if now >= self._due_checked + 1.0:
            self._due_checked = now
            self._due = now + self._seconds_until_due()
        due_in = self._due - now
        if due_in <= 0:  # it was due, yet nothing could be claimed: someone else took it
            due_in = self._due_checked + 1.0 - now
        return min(max(due_in, 0.0), 1.0)

    def _expect(self, seconds: float) -> None:
        """Note that something this object scheduled becomes claimable in ``seconds``."""
        self._due = min(self._due, time.monotonic() + seconds)

    def _claim_one(self) -> Job | None:
        """One atomic claim of the best waiting job that is due.

        Only waiting jobs are claimed, so the query walks the (status, priority, _id) index
        and stops at the first due job, however long the backlog.
        """
        while True:
            now = utcnow()
            doc = self.collection.find_one_and_update(
                {"status": Status.WAITING.value, "available_at": {"$not": {"$gt": now}}},
                {
                    "$set": {
                        "status": Status.WORKING.value,
                        "ts.started": now,
                        "lease_until": now + dt.timedelta(seconds=self.lease),
                        "worker": self.worker_id,
                    },
                    "$inc": {"attempts": 1},
                },
                sort=[("priority", DESCENDING), ("_id", ASCENDING)],
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:
                return None
            job = Job(doc)
            if job.attempts <= self._max_attempts(job):
                self._expect(self.lease)
                return job
            # Its last worker vanished mid-job (the lease expired) and no attempts are left.
            reason = f"the worker of attempt {job.attempts - 1} was lost (its lease expired)"
            self._finish(job, Status.FAILED, {"error": error_document(reason)})

    def _requeue_expired(self) -> None:
        """working -> waiting for jobs whose lease expired.

        Each is a conditional update, so a worker that is merely late finds the job gone
        (LeaseLostError) rather than two workers finishing it.
        """
        self._next_requeue = time.monotonic() + min(self.lease / 4, 1.0)
        now = utcnow()
        self.collection.update_many(
            {"status": Status.WORKING.value, "lease_until": {"$lt": now}},
            {"$set": {"status": Status.WAITING.value, "lease_until": None, "available_at": now}},
        )

    def _sweep_finished(self) -> None:
        """Delete from the ring the jobs this package finished: they are in history already.

        The ring then holds only unfinished jobs, so it evicts a waiting job only when the
        backlog outgrows it, and servers that pay per document in a capped collection stay
        fast as jobs go through. The newest document stays, done or not: the consumers'
        tailable wake-up cursors stand on it, and an empty capped collection can hold none.
        pymjq's finished jobs stay too (they have no history row).
        """
        self._next_sweep = time.monotonic() + SWEEP_EVERY_S
        self._finished_since_sweep = 0
        try:
            self._delete_finished()
        except PyMongoError as exc:  # the job is finished all the same; the next sweep tries
            log.debug("could not sweep finished jobs from %s: %s", self.name, exc)

    def _delete_finished(self) -> None:
        # The last document inserted, and the one with the newest id (the same but for
        # clock differences between publishers; not all servers honour $natural).
        keep = [
            doc["_id"]
            for order in ("$natural", "_id")
            if (doc := self.collection.find_one({}, {"_id": 1}, sort=[(order, DESCENDING)]))
        ]
        if keep:
            self.collection.delete_many(
                {
                    "status": {"$in": list(FINISHED)},
                    "max_attempts": {"$exists": True},  # finished by us: in history first
                    "_id": {"$nin": keep},
                }
            )

    def wait(self, timeout: float) -> bool:
        """Block until a job is published (True) or ``timeout`` seconds pass (False)."""
        return self._wakeup.wait(timeout)

    def _seconds_until_due(self) -> float:
        """Seconds until a waiting job's delay or a working job's lease runs out."""
        now = utcnow()
        rows = list(
            self.collection.aggregate(
                [
                    {
                        "$match": {
                            "$or": [
                                {"status": Status.WAITING.value, "available_at": {"$gt": now}},
                                {"status": Status.WORKING.value, "lease_until": {"$gt": now}},
                            ]
                        }
                    },
                    {
                        "$group": {
                            "_id": None,
                            "due": {
                                "$min": {
                                    "$cond": [
                                        {"$eq": ["$status", Status.WAITING.value]},
                                        "$available_at",
                                        "$lease_until",
                                    ]
                                }
                            },
                        }
                    },
                ]
            )
        )
        if not rows or rows[0]["due"] is None:
            return float("inf")
        return max(0.0, (rows[0]["due"] - now).total_seconds())

    def _max_attempts(self, job: Job) -> int:
        return int(job.get("max_attempts") or self.max_attempts)

    def __iter__(self) -> Iterator[Job]:
        """Seed API: yield jobs forever; a job is marked done when the loop asks for the next.

        A job still held when the loop stops (``break``, an exception) goes back to waiting;
        one the loop body finished itself (``q.done(job)``/``q.fail(job, exc)``) is left as is.
        """
        while True:
            job = self.next(timeout=None)
            try:
                yield job
            except GeneratorExit:
                if not job.finished:
                    self.release(job)
                raise
            if not job.finished:
                self.done(job)

    @contextlib.contextmanager
    def claim(self, timeout: float | None = 0) -> Iterator[Job]:
        """Claim a job for the block: done when it ends (with ``job["result"]`` if set),
        failed when it raises, back to waiting on KeyboardInterrupt. ``timeout`` as ``next``."""
        job = self.next(timeout)
        try:
            yield job
        except Exception as exc:
            if not job.finished:
                self.fail(job, exc)
            raise
        except BaseException:
            if not job.finished:
                self.release(job)
            raise
        if not job.finished:
            self.done(job, job.get("result"))

    # -- finishing ------------------------------------------------------------------------

    @unavailable_as_error
    def done(self, job: Job, result: Any = None) -> None:
        """working -> done, with ``ts.done`` and an optional ``result``."""
        stored_size({"result": result}, f"the result of job {job.id}")
        self._finish(job, Status.DONE, {"result": result})

    @unavailable_as_error
    def fail(self, job: Job, error: BaseException | str) -> bool:
        """Record ``error`` (type, message, traceback). The job waits again, after an
        exponential back-off, while attempts remain; else it is ``failed``.
        Returns True when it will be retried."""
        err = error_document(error)
        if job.attempts >= self._max_attempts(job):
            self._finish(job, Status.FAILED, {"error": err})
            return False
        delay = self.backoff * 2 ** (job.attempts - 1)
        self._update_owned(
            job,
            {
                "status": Status.WAITING.value,
                "available_at": utcnow() + dt.timedelta(seconds=delay),
                "error": err,
                "lease_until": None,
            },
            then=Status.WAITING,
        )
        self._expect(delay)
        return True

    @unavailable_as_error
    def release(self, job: Job) -> None:
        """working -> waiting without using up an attempt (the worker is stopping)."""
        self._update_owned(
            job,
            {
                "status": Status.WAITING.value,
                "lease_until": None,
                "worker": None,
                "ts.started": None,
            },
            inc={"attempts": -1},
        )
        job.finished = True

    @unavailable_as_error
    def touch(self, job: Job, lease: float | None = None) -> None:
        """Extend the job's lease (a heartbeat for long jobs); LeaseLostError if it was lost."""
        until = utcnow() + dt.timedelta(seconds=self.lease if lease is None else lease)
        self._update_owned(job, {"lease_until": until})

    heartbeat = touch

    # -- requeueing -----------------------------------------------------------------------

    @unavailable_as_error
    def retry(self, job: Mapping[str, Any] | ObjectId) -> bool:
        """A failed job back to waiting, with ``max_attempts`` more attempts; its last error
        stays on it. False when it is not failed (already requeued, say, or done)."""
        job_id = job if isinstance(job, ObjectId) else job["_id"]
        self._require_capped()
        doc = self.history_collection.find_one({"_id": job_id, "status": Status.FAILED.value})
        doc = doc or self.collection.find_one({"_id": job_id, "status": Status.FAILED.value})
        return doc is not None and self._requeue(doc)

    @unavailable_as_error
    def retry_failed(self, query: Mapping[str, Any] | None = None) -> int:
        """Every failed job matching ``query`` (a MongoDB filter, e.g. ``{"data.kind":
        "email"}``) back to waiting, as ``retry``; returns how many were requeued."""
        self._require_capped()
        match = {**(query or {}), "status": Status.FAILED.value}
        failed = {doc["_id"]: doc for doc in self.collection.find(match)}
        # finished jobs are in history first; the ring may have evicted them since
        failed.update((doc["_id"], doc) for doc in self.history_collection.find(match))
        return sum(self._requeue(doc) for doc in failed.values())

    def _requeue(self, failed: dict[str, Any]) -> bool:
        """Move one failed job (its final document) back to waiting; True if this call did.

        Each step is conditional on the failed attempt, so concurrent requeues of one job
        succeed once. The queue holds it as waiting before its history row goes: a job is
        never in neither (see ``counts``).
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
            "max_attempts": int(failed.get("attempts") or 0) + self.max_attempts,
        }
        updated = self.collection.update_one(
            {**attempt, "status": Status.FAILED.value}, {"$set": fields}
        )
        if not updated.matched_count:
            if self.collection.find_one({"_id": failed["_id"]}, {"_id": 1}) is not None:
                return False  # requeued by someone else already, or not failed
            doc = {key: value for key, value in failed.items() if key != "result"}
            doc.update((key, value) for key, value in fields.items() if "." not in key)
            doc["ts"] = {**failed.get("ts", {}), "started": None, "done": None}
            try:  # evicted from the ring: back in from history
                self.collection.insert_one(doc)
            except DuplicateKeyError:
                return False  # another requeue put it back first
        self.history_collection.delete_one({**attempt, "status": Status.FAILED.value})
        self._expect(0)
        return True

    def _finish(self, job: Job, status: Status, fields: dict[str, Any]) -> None:
        now = utcnow()
        final = {**job, **fields, "status": status.value, "lease_until": None}
        final["ts"] = {**job.get("ts", {}), "done": now}
        # max_attempts marks it as finished by us, also a seed-written job (see counts())
        fields = {
            **fields,
            "status": status.value,
            "ts.done": now,
            "lease_until": None,
            "max_attempts": self._max_attempts(job),
        }
        # History first: a job is then always findable in the queue or in history, which is
        # what counts() relies on to tell an evicted job from a finished one. The history row
        # written is this claim's own: it replaces only this very finish (repeated after a
        # lost reply), never the row of another claim or outcome (a worker whose lease ran
        # out would overwrite, then delete, the finish of the worker that took the job over).
        mine = {
            "_id": job.id,
            "worker": job.get("worker"),
            "attempts": job.get("attempts"),
            "status": status.value,
        }
        try:
            self._finish_owned(job, status, fields, final, mine)
        except (DuplicateKeyError, ClientBulkWriteException) as exc:
            if not _duplicate_key(exc):
                raise
            # history holds a row of this job from another claim or outcome: we lost the job,
            # unless we still hold it (that row is then a late worker's, about to be taken
            # back or left by a crash, and ours replaces it)
            if self.collection.find_one({**mine, "status": Status.WORKING.value}) is None:
                raise LeaseLostError(
                    f"job {job.id} is no longer held by this worker (it was finished already, "
                    "or its lease expired and it was claimed again)"
                ) from None
            self._finish_owned(job, status, fields, final, {"_id": job.id})
        self._finished_since_sweep += 1
        if self._finished_since_sweep >= SWEEP_AFTER or time.monotonic() >= self._next_sweep:
            self._sweep_finished()  # after the finish, not before a claim: no one waits on it

    def _finish_owned(
        self,
        job: Job,
        status: Status,
        fields: dict[str, Any],
        final: dict[str, Any],
        match: dict[str, Any],
    ) -> None:
        """``final`` into history where ``match`` (upsert), then ``job`` finished in the queue
        if this claim still holds it; if not, the history row is taken back."""
        history = writes.Replace(self.history_collection, match, final, upsert=True)
        try:
            self._update_owned(job, fields, then=status, after=history)
        except LeaseLostError:
            # ...unless it is a finish that stands: this claim's own, repeated after a sweep
            # took the job out of the ring (rows of other claims or outcomes are never matched)
            if self.collection.find_one({"_id": job.id}, {"_id": 1}) is not None:
                self.history_collection.delete_one(match)
            raise

    def _update_owned(
        self,
        job: Job,
        fields: dict[str, Any],
        *,
        inc: dict[str, int] | None = None,
        then: Status | None = None,
        after: writes.Write | None = None,
    ) -> None:
        """Update ``job`` only while this claim still owns it (after the write ``after``).

        ``then`` is the status the update sets: a retry after a lost reply (the server did
        apply it) finds the job already there under our claim and succeeds again.
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
        planned = [*([after] if after else []), writes.Update(self.collection, owned, update)]
        matched = writes.run(self.db, planned, together=self._fuse and len(planned) > 1)[-1]
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

    # -- inspecting -----------------------------------------------------------------------

    @unavailable_as_error
    def queue_count(self) -> int:
        """Jobs waiting to be claimed (the seed's count)."""
        return self.collection.count_documents({"status": Status.WAITING.value})

    @unavailable_as_error
    def counts(self, *, warn: bool = True) -> dict[str, int]:
        """Jobs per status, plus ``lost``: jobs evicted from the capped collection unfinished.

        done/failed come from history (which outlives the ring buffer) plus seed-written
        finished jobs still in the queue. When ``lost`` grows, a DataLossWarning names the
        caller's line (``warn=False``: displays, which show ``lost`` themselves). Its cost
        does not grow with history (live views call it twice a second): history's size is
        collection metadata, which a mongod may misstate after an unclean shutdown until the
        collection is validated.
        """
        counts = dict.fromkeys(STATUSES, 0)
        unfinished_ours = 0
        # Read the queue before history: a job finishing in between is then counted twice
        # (harmless), never zero times (which would look like a loss).
        for row in self.collection.aggregate(
            [
                {
                    "$group": {
                        "_id": {"status": "$status", "ours": PUBLISHED_BY_US},
                        "n": {"$sum": 1},
                    }
                }
            ]
        ):
            status, ours = row["_id"]["status"], row["_id"]["ours"]
            if status in FINISHED and ours:
                continue  # counted from history below
            if status in counts:
                counts[status] += row["n"]
            if ours and status not in FINISHED:
                unfinished_ours += row["n"]
        # History holds only finished jobs: its size (collection metadata) less the failed
        # ones (an index range) is the done ones, at a cost that does not grow with history.
        finished_ours = self.history_collection.estimated_document_count()
        failed = self.history_collection.count_documents({"status": Status.FAILED.value})
        counts[Status.FAILED.value] += failed
        counts[Status.DONE.value] += finished_ours - failed
        meta = self._meta.find_one({"_id": "counters"}) or {}
        lost = max(0, int(meta.get("published", 0)) - unfinished_ours - finished_ours)
        counts["lost"] = lost
        if warn and lost > self._lost_reported:
            self._lost_reported = lost
            warn_at_caller(
                f"{lost} job(s) in {self.db.name}.{self.name} were evicted from the capped "
                "collection before they finished: it is too small for the backlog "
                "(raise max_jobs/size_bytes)",
                DataLossWarning,
            )
        return counts

    @unavailable_as_error
    def jobs(
        self,
        status: str | None = None,
        limit: int = 20,
        query: Mapping[str, Any] | None = None,
    ) -> JobList:
        """The newest jobs, newest first, optionally of one status and matching ``query`` (a
        MongoDB filter); a list that shows as a table in a notebook.

        Finished jobs leave the ring for history (see ``_sweep_finished``), so both are read;
        a job in both shows once, in its latest state.
        """
        match = {**(query or {})}
        if status is not None:
            match["status"] = Status(status).value
        latest: dict[Any, dict[str, Any]] = {}
        for collection in (self.history_collection, self.collection):
            for doc in collection.find(match, sort=[("_id", DESCENDING)], limit=limit):
                held = latest.get(doc["_id"])
                if held is None or _attempts(doc) > _attempts(held):
                    latest[doc["_id"]] = doc  # on a tie, history's copy is the final one
        newest = sorted(latest, key=_id_order, reverse=True)[:limit]
        return JobList(Job(latest[job_id]) for job_id in newest)

    @unavailable_as_error
    def get(self, job_id: ObjectId) -> Job | None:
        """The job's current document: from the queue, else from history."""
        doc = self.collection.find_one({"_id": job_id}) or self.history_collection.find_one(
            {"_id": job_id}
        )
        return None if doc is None else Job(doc)

    @unavailable_as_error
    def clear_queue(self) -> None:
        """Drop the queue, its history and counters, and start again empty.

        The seed only dropped the collection; its next ``pub`` then made a plain, uncapped
        one. A collection that is not capped is not a queue of ours and is left alone.
        """
        self._require_capped()
        options = self.collection.options()
        self._wakeup.close()
        for collection in (self.collection, self.history_collection, self._meta):
            collection.drop()
        self._ensure_collection(options.get("max"), options["size"])
        self._wakeup = Wakeup(self.collection)
        self._lost_reported = 0

    @unavailable_as_error
    def history(
        self,
        since: Any = None,
        until: Any = None,
        status: str | Iterable[str] | None = None,
        query: Mapping[str, Any] | None = None,
        fields: Iterable[str] | None = None,
        limit: int | str | None = "auto",
    ) -> pd.DataFrame:
        """Job history as a pandas DataFrame, one row per job (see ``history.load``).

        Filters run in MongoDB; the frame has the ``.mjq``
        accessor (``.mjq.summary(by="data.kind")``, ``.mjq.plot_latency()``). By default at
        most the newest ``history.DEFAULT_LIMIT`` jobs (1,000,000), with a warning when there
        are more; ``limit=None`` loads them all.
        """
        from .analysis.history import load

        return load(self, since, until, status, query, fields, limit)

    @unavailable_as_error
    def stats(
        self,
        since: Any = None,
        until: Any = None,
        by: str | list[str] | None = None,
        query: Mapping[str, Any] | None = None,
        exact: bool = False,
    ) -> pd.DataFrame:
        """``summary(self.history(...), by)`` computed inside MongoDB: for huge histories.

        Percentiles are approximate on MongoDB 7.0+ unless ``exact=True``.
        """
        from .analysis.stats import stats

        return stats(self, since, until, by, query, exact)

    # -- notebook widgets (mjq_notebook.widgets; imported on use) -------------------------

    def tail(self, limit: int = 50) -> Tail:
        """A live table of the newest ``limit`` jobs: filter, search, inspect, requeue."""
        from .notebook.widgets import Tail

        return Tail(self, limit=limit)

    def publisher(self) -> Publisher:
        """A form that publishes jobs from JSON, with priority, delay and copies."""
        from .notebook.widgets import Publisher

        return Publisher(self)

    def dashboard(self) -> Dashboard:
        """Counters, throughput, latency, the live tail and the publish form in one view."""
        from .notebook.widgets import Dashboard

        return Dashboard(self)

    def explore(self) -> Explorer:
        """A history explorer: time range, status and grouping -> summary table and plot."""
        from .notebook.widgets import Explorer

        return Explorer(self)

    @display_timeout
    def __repr__(self) -> str:
        try:
            counts = self.counts(warn=False)
            state = ", ".join(f"{k}={v}" for k, v in counts.items() if v or k != "lost")
        except Exception as exc:  # a repr must not raise; the message carries no URI
            state = f"unavailable: {type(exc).__name__}"
        return f"<JobQueue {self.db.name}.{self.name} {state}>"

    def _repr_html_(self) -> str:
        from .notebook.display import queue_html  # display sits above this layer: import on use

        return queue_html(self)


def _id_order(value: Any) -> tuple[int, Any]:
    """A sort key for ``_id`` values as MongoDB orders them: by BSON type, then by value
    (numbers < strings < ObjectIds; hand-written jobs may have any of them)."""
    if isinstance(value, ObjectId):
        return 3, value
    if isinstance(value, str):
        return 2, value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return 1, value
    return 0, str(value)


def _duplicate_key(exc: Exception) -> bool:
    """True for a duplicate-key error, of a plain write or in a client bulkWrite."""
    if isinstance(exc, DuplicateKeyError):
        return True
    errors = getattr(exc, "write_errors", None) or []
    return any(error.get("code") == 11000 for error in errors)


def _attempts(doc: Mapping[str, Any]) -> int:
    return int(doc.get("attempts") or 0)
