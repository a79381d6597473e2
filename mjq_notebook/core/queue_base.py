"""The base of JobQueue: publish into a capped collection, claim atomically, finish into
history, read counts and jobs.

The work is done by helpers it owns in ``parts/``, one job each: ``leases`` (claim, reclaim
expired leases), ``owned`` (writes under a claim, the finish), ``reads``, ``due``, ``sweep``,
``ring``, ``control`` (pause), ``progress`` and ``room`` (a publish evicts no unfinished job).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bson import ObjectId
from bson.codec_options import CodecOptions
from pymongo import WriteConcern
from pymongo.errors import ConnectionFailure

from ..errors import Empty, InvalidQueueError, PublishError
from .job import Job, JobList, Status, error_document, new_documents, result_size, utcnow
from .names import check_queue_name
from .outage import Backoff, OutageLog, unavailable_as_error
from .parts import attempts, writes
from .parts.control import CHECK_S as PAUSED_CHECK_S
from .parts.control import Control
from .parts.counters import count_published
from .parts.due import DueClock
from .parts.leases import Reclaimer, claim_one
from .parts.owned import OwnedWrites
from .parts.progress import ProgressWriter
from .parts.reads import Reads
from .parts.ring import ensure_ring, made_by_another, warn_if_small
from .parts.room import Room
from .parts.sweep import Sweeper
from .registry import new_worker_id
from .wakeup import Wakeup

if TYPE_CHECKING:
    from pymongo.database import Database


log = logging.getLogger("mjq_notebook")


class QueueBase:
    """A queue's life: its collections and the helpers it owns, publishing, claiming,
    finishing and reading. :class:`~mjq_notebook.core.queue.JobQueue` adds what operators do
    and what a queue shows; use that."""

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
        create: bool = True,
        naive_tz: str | None = None,
    ) -> None:
        check_queue_name(db.name, name)  # before anything is created or even read
        codec = CodecOptions(tz_aware=True, tzinfo=dt.timezone.utc, document_class=dict)
        # every write of the queue (publish, claim, finish, requeue) is acknowledged under
        # write_concern; None: the database's (the client's, or the URI's ?w=&journal=)
        self.db = db.with_options(codec_options=codec, write_concern=write_concern)
        self.name = name
        self.lease = float(lease)
        self.max_attempts = int(max_attempts)
        self.backoff = float(backoff)
        self.naive_tz = None if naive_tz is None else ZoneInfo(naive_tz)
        self.worker_id = new_worker_id()
        self.collection = self.db[name]
        self.history_collection = self.db[f"{name}.history"]
        self._meta = self.db[f"{name}.meta"]
        self.attempts_collection = self.db[f"{name}{attempts.SUFFIX}"]  # every ended attempt
        # create=False (JobQueue.open): a reader that writes nothing, not even an index
        adopted = create and made_by_another(self.db, name)  # pymjq's: say if it is small
        self._capped = (
            ensure_ring(self.db, name, max_jobs, size_bytes) if create else _is_capped(db, name)
        )
        if adopted and self._capped:
            warn_if_small(self.db, name, max_jobs, size_bytes)
        if create and self._capped:  # never beside a collection that is no queue
            attempts.ensure_index(self.attempts_collection)
        log_ = self.attempts_collection
        self._owned = OwnedWrites(self.db, self.collection, self.history_collection, log_)
        self._fuse = writes.supports_client_bulk_write(self.db)  # see writes.py
        self._wakeup = Wakeup(self.collection)
        self.outage = OutageLog(log, f"queue {self.db.name}.{name}")  # said once per outage
        # the helpers it owns, one job each
        self._due = DueClock(self.collection)  # when an idle consumer claims again
        # expired leases -> waiting
        self._reclaimer = Reclaimer(self.collection, self.lease, self.naive_tz, log_)
        self._sweeper = Sweeper(self.collection, self.history_collection)  # finished -> history
        self._room = Room(self.collection, self._sweeper)  # publishes evict nothing unfinished
        self._reads = Reads(self.collection, self.history_collection, self._meta)
        self._control = Control(self._meta)  # the pause flag

    @property
    def _fuse(self) -> bool:
        """Writes that go together are sent as one client bulkWrite (MongoDB 8.0+)."""
        return self._owned.fuse

    @_fuse.setter
    def _fuse(self, value: bool) -> None:
        self._owned.fuse = value

    # -- set-up ---------------------------------------------------------------------------

    @unavailable_as_error
    def valid(self) -> bool:
        """True when the collection exists and is capped (pymjq's check)."""
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
        evict: bool = False,
    ) -> ObjectId:
        """Publish one job; returns its id. Higher ``priority`` is claimed first; a ``delay``
        in seconds keeps it unclaimable until then. PublishError, nothing written, when the
        ring would have to evict unfinished jobs for it (``room.py``); ``evict=True`` allows
        that (a lossy ring: ``counts()["lost"]`` tells)."""
        [doc] = self._documents([data], priority, delay, max_attempts)
        self._insert([doc], delay, evict)
        return doc["_id"]

    @unavailable_as_error
    def pub_many(
        self,
        items: Iterable[Any],
        *,
        priority: int = 0,
        delay: float = 0,
        max_attempts: int | None = None,
        evict: bool = False,
    ) -> list[ObjectId]:
        """Publish many jobs in one round trip; all are checked before any is written, and
        that they fit in the ring beside its unfinished jobs, as ``pub``."""
        docs = self._documents(list(items), priority, delay, max_attempts)
        if docs:
            self._insert(docs, delay, evict)
        return [doc["_id"] for doc in docs]

    def _documents(
        self, items: list[Any], priority: int, delay: float, max_attempts: int | None
    ) -> list[dict[str, Any]]:
        self._require_capped()
        attempts = self.max_attempts if max_attempts is None else int(max_attempts)
        return new_documents(items, priority=priority, delay=delay, max_attempts=attempts)

    def _insert(self, docs: list[dict[str, Any]], delay: float, evict: bool) -> None:
        if evict:
            self._room.forget()  # the room it found is used up by whatever this publishes
        else:
            self._room.check(docs)
        # A running total of published jobs lets counts() tell jobs evicted unfinished from
        # jobs that finished; it is written after the jobs, once however often it is sent
        # (counters.py). A single job shares its round trip with it; a batch goes as
        # insert_many, which servers take faster than a bulkWrite of as many single inserts.
        jobs = writes.Insert(self.collection, docs, moved_to=self.history_collection)
        count = count_published(self._meta, docs[0]["_id"], len(docs))
        writes.run(self.db, [jobs, count], together=self._fuse and len(docs) == 1)
        if delay:
            self._due.expect(delay)

    # -- claiming -------------------------------------------------------------------------

    def next(self, timeout: float | None = 0) -> Job:
        """Claim the next job (highest priority, then oldest): it becomes ``working`` with a
        lease. With no job, raises ``Empty`` at once, as pymjq did; ``timeout`` waits up to
        that many seconds first (None: forever)."""
        return self._next_as(self.worker_id, timeout)

    @unavailable_as_error
    def _next_as(self, worker_id: str, timeout: float | None) -> Job:
        """``next()``, the claim recorded under ``worker_id``: a ``Worker`` claims under its
        own id from the queues it was given, which other threads may share."""
        self._require_capped()
        deadline = None if timeout is None else time.monotonic() + timeout
        backoff = Backoff()
        while True:
            try:
                job = self._claim(worker_id)
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
            paused = self._control.paused()
            if remaining is not None and remaining <= 0:
                waited = f" within {timeout:g}s" if timeout else ""
                why = " (the queue is paused: q.resume() or `mjq resume`)" if paused else ""
                raise Empty(f"no job waiting in {self.db.name}.{self.name}{waited}{why}")
            wait = self.idle_wait()
            self._wakeup.wait(wait if remaining is None else min(remaining, wait))

    def idle_wait(self) -> float:
        """Seconds an idle consumer may wait for an insert before it claims again: until a
        delayed job or a lease is due (at most a second), or less while paused."""
        return PAUSED_CHECK_S if self._control.paused() else self._due.idle_wait()

    def _claim(self, worker_id: str) -> Job | None:
        """Claim one job, first handing abandoned jobs (expired leases) back to waiting;
        none while the queue is paused. Finding none, sweep other programs' finishes."""
        if self._control.paused():
            return None
        self._reclaimer.reclaim_if_due()
        job = self._claim_one(worker_id)
        if job is None:
            self._sweeper.when_idle()
        return job

    def _claim_one(self, worker_id: str) -> Job | None:
        """Claim the best due job (``leases.claim_one``); fail those out of attempts."""
        while True:
            doc = claim_one(self.collection, worker_id, self.lease)
            if doc is None:
                return None
            job = Job(doc)
            if job.attempts <= self._max_attempts(job):
                self._due.expect(self.lease)
                job._progress = ProgressWriter(self._owned, job)
                return job
            # Its last worker vanished mid-job (the lease expired) and no attempts are left.
            reason = f"the worker of attempt {job.attempts - 1} was lost (its lease expired)"
            self._finish(job, Status.FAILED, {"error": error_document(reason)})

    def wait(self, timeout: float) -> bool:
        """Block until a job is published (True) or ``timeout`` seconds pass (False)."""
        return self._wakeup.wait(timeout)

    def _max_attempts(self, job: Job) -> int:
        return int(job.get("max_attempts") or self.max_attempts)

    def __iter__(self) -> Iterator[Job]:
        """pymjq's API: yield jobs forever; a job is marked done when the loop asks for the next.

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
            try:
                self.done(job, job.get("result"))
            except PublishError as exc:  # a result it can't store: the job fails with why
                job.pop("result", None)
                self.fail(job, exc)
                raise

    # -- finishing ------------------------------------------------------------------------

    @unavailable_as_error
    def done(self, job: Job, result: Any = None) -> None:
        """working -> done, with ``ts.done`` and an optional ``result``. PublishError (nothing
        written) when the result can't be stored with the job: ``fail`` it with that error."""
        result_size(job, result)
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
        self._owned.retry_later(  # the failed attempt recorded first (attempts.py)
            job,
            {
                "status": Status.WAITING.value,
                "available_at": utcnow() + dt.timedelta(seconds=delay),
                "error": err,
                "lease_until": None,
            },
        )
        self._due.expect(delay)
        return True

    @unavailable_as_error
    def release(self, job: Job) -> None:
        """working -> waiting without using up an attempt (the worker is stopping)."""
        self._owned.release(job)

    @unavailable_as_error
    def touch(self, job: Job, lease: float | None = None) -> None:
        """Extend the job's lease (a heartbeat for long jobs); LeaseLostError if it was lost."""
        until = utcnow() + dt.timedelta(seconds=self.lease if lease is None else lease)
        self._owned.update(job, {"lease_until": until})

    def _finish(self, job: Job, status: Status, fields: dict[str, Any]) -> None:
        self._owned.finish(job, status, fields)
        self._sweeper.after_finish()  # after the finish, not before a claim: no one waits

    # -- inspecting -----------------------------------------------------------------------

    @unavailable_as_error
    def queue_count(self) -> int:
        """Jobs waiting to be claimed (pymjq's count)."""
        return self.collection.count_documents({"status": Status.WAITING.value})

    @unavailable_as_error
    def counts(self, *, warn: bool = True) -> dict[str, int]:
        """Jobs per status, plus ``lost``: jobs evicted from the capped collection unfinished.

        done/failed come from history (which outlives the ring buffer) plus jobs another
        program (pymjq) finished that the sweep has not copied there yet, each job once.
        ``lost`` counts jobs this package published; those another program published make
        it read low once in history, never high. When ``lost`` grows, a DataLossWarning names the
        caller's line (``warn=False``: displays, which show ``lost`` themselves). Its cost
        does not grow with history (live views call it twice a second): history's size is
        collection metadata, which a mongod may misstate after an unclean shutdown until the
        collection is validated.
        """
        return self._reads.counts(warn=warn)

    @unavailable_as_error
    def jobs(
        self,
        status: str | None = None,
        limit: int = 20,
        query: Mapping[str, Any] | None = None,
    ) -> JobList:
        """The newest jobs, newest first, optionally of one status and matching ``query`` (a
        MongoDB filter); a list that shows as a table in a notebook.

        Finished jobs leave the ring for history (see ``sweep.py``), so both are read;
        a job in both shows once, in its latest state.
        """
        return self._reads.jobs(status, limit, query)

    @unavailable_as_error
    def clear_queue(self) -> None:
        """Drop the queue, its history and counters, and start again empty.

        pymjq only dropped the collection; its next ``pub`` then made a plain, uncapped
        one. A collection that is not capped is not a queue of ours and is left alone. The
        worker registry and the audit (who did what) stay; the attempts go with history, the
        rollups (``<queue>.metrics`` and ``.metrics_hours``) too.
        """
        self._require_capped()
        options = self.collection.options()
        self._wakeup.close()
        log_ = self.attempts_collection
        rollups = self.db[f"{self.name}.metrics"]  # metrics.py; re-indexed on its next roll
        hourly = self.db[f"{self.name}.metrics_hours"]  # hours.py, likewise
        for coll in (self.collection, self.history_collection, self._meta, log_, rollups, hourly):
            coll.drop()
        self._capped = ensure_ring(self.db, self.name, options.get("max"), options["size"])
        attempts.ensure_index(log_, again=True)
        self._wakeup = Wakeup(self.collection)
        self._reads.lost_reported = 0


def _is_capped(db: Database, name: str) -> bool:
    """Whether the existing collection ``name`` is capped (one listCollections)."""
    info = next(iter(db.list_collections(filter={"name": name})), None)
    if info is None:
        raise InvalidQueueError(
            f"no queue {db.name}.{name}: the database has no collection of that name "
            "(JobQueue(db, name) creates one)"
        )
    return bool((info.get("options") or {}).get("capped"))
