"""JobQueue, the entry point: publish, claim and finish (``queue_base.py``), and here what
operators do to a queue (pause, cancel, promote, release, requeue, resize, prune) and what a
queue shows of itself (workers, history, stats, audit, widgets, reprs).

The operators' actions are done by helpers in ``parts/`` (``steer``, ``requeue``, ``room``,
``retention``, ``leases``); what a queue shows reaches up into the analysis and notebook
layers when called (the pandas accessor pattern), so importing the core imports neither
pandas nor ipywidgets; those imports are the layers contract's named exceptions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from bson import ObjectId

from . import metrics as rollups
from .job import Job, JobList, Status, job_id, utcnow
from .outage import display_timeout, unavailable_as_error
from .parts import attempts, bulk, steer
from .parts.bulk import Progress, Query
from .parts.find import count_matches, find_jobs
from .parts.leases import reclaim_one
from .parts.requeue import KEEP, requeue_edited
from .parts.retention import prune_queue
from .parts.room import Limits, resize
from .queue_base import QueueBase
from .registry import WorkerList, read_workers, worker_of

if TYPE_CHECKING:
    import pandas as pd
    from pymongo.database import Database

    from ..analysis.errors import ErrorList
    from ..notebook.widgets import Dashboard, Explorer, Publisher, Tail
    from .audit import AuditList


class JobQueue(QueueBase):
    """A job queue in a capped MongoDB collection, compatible with pymjq's ``JobQueue(db)``.

    Claims are single atomic ``find_one_and_update`` calls, so competing workers never hold
    the same job; a claim is a lease, and a job whose worker vanished comes back when the lease
    expires. Finished jobs are copied to ``<name>.history`` so the ring buffer's evictions never
    lose them. ``write_concern`` (e.g. ``WriteConcern(w=1, j=True)`` on a standalone mongod)
    is what every acknowledgement of the queue waits for; by default the database's.
    ``JobQueue(db, name)`` creates the queue if missing; ``JobQueue.open(db, name)`` opens one
    that exists and creates nothing. A name that can't be a queue's (a companion's such as
    ``orders.history``, ``system.*``, too long) is refused first: ``QueueNameError``.
    ``naive_tz`` (e.g. ``"Asia/Tokyo"``): the time zone in
    which other programs wrote naive local times (pymjq's ``datetime.now()``), for
    ``history()`` and for bringing back their abandoned jobs; by default they are read as UTC.
    A method taking a job takes a ``Job``, its ``ObjectId`` or its id as 24 hex digits
    (``job.job_id``; ``JobIdError`` for a string that is none).
    """

    # -- steering -------------------------------------------------------------------------

    @classmethod
    def open(cls, db: Database, name: str = "jobqueue", **options: Any) -> JobQueue:
        """The existing queue ``name``, creating nothing (no collection, no index): what
        reading tools use, so a typo in a name is an error, not a new empty queue.
        ``InvalidQueueError`` when the database has no collection of that name;
        ``mjq_notebook.queues(db)`` lists the queues it has."""
        return cls(db, name, create=False, **options)

    @unavailable_as_error
    def pause(self) -> None:
        """Stop every process taking jobs from this queue (within a second); running jobs
        finish and publishing goes on. pymjq's own consumers don't know the flag."""
        self._control.set_paused(True, by=self.worker_id)

    @unavailable_as_error
    def resume(self) -> None:
        """Let claims go on after ``pause()``; waiting consumers start within a second."""
        self._control.set_paused(False, by=self.worker_id)
        self._due.expect(0)

    @property
    @unavailable_as_error
    def paused(self) -> bool:
        """True while the queue is paused (read from the server)."""
        return self._control.paused(fresh=True)

    @unavailable_as_error
    def cancel(self, job: Mapping[str, Any] | ObjectId | str) -> bool:
        """A waiting or delayed job becomes ``cancelled``: final, in history, never claimed.
        False when it is not waiting (claimed first, say, or finished)."""
        self._require_capped()
        if not steer.cancel(self.collection, self.history_collection, job_id(job)):
            return False
        self._sweeper.after_finish()
        return True

    @unavailable_as_error
    def promote(self, job: Mapping[str, Any] | ObjectId | str) -> bool:
        """A delayed job, or a retry waiting out its back-off, becomes due now. False when it
        is not waiting for its time (already due, claimed or finished)."""
        self._require_capped()
        if not steer.promote(self.collection, job_id(job)):
            return False
        self._due.expect(0)
        return True

    @unavailable_as_error
    def reclaim(self, job: Mapping[str, Any] | ObjectId | str) -> bool:
        """A working job back to waiting now, as when its lease runs out ("Release now" for
        the job of a lost worker). Only that attempt's claim is ended: if its worker was only
        paused and comes back, it finds the job gone. False when it is not working (or is
        held by a later claim than the ``job`` given)."""
        self._require_capped()
        doc = dict(job) if isinstance(job, Mapping) else None
        working = {"_id": job_id(job), "status": Status.WORKING.value}
        doc = doc or self.collection.find_one(working)
        if doc is None or not reclaim_one(self.collection, doc, self.attempts_collection):
            return False
        self._due.expect(0)
        return True

    @unavailable_as_error
    def limits(self) -> Limits:
        """What the ring holds at most, as the server has it: ``.size_bytes`` and
        ``.max_jobs`` (None: any number). Read at most once a second."""
        self._require_capped()
        return self._room.limits()

    @unavailable_as_error
    def resize(self, size_bytes: int | None = None, max_jobs: int | None = None) -> Limits:
        """Grow the ring in place (``collMod``, MongoDB 6.0+), or shrink it to no less than it
        holds; returns the new limits. JobQueueError, saying what to do instead, when the
        server refuses or does not apply it."""
        self._require_capped()
        try:
            return resize(self.collection, size_bytes, max_jobs)
        finally:
            self._room.forget()

    @unavailable_as_error
    def prune_history(self, older_than: float | dt.timedelta) -> int:
        """Delete the jobs finished more than ``older_than`` (seconds or a timedelta) ago,
        from history and the ring alike; returns how many went. ``counts()`` and
        ``history()`` then agree: neither shows them, and they never count as lost; the
        rollups (``metrics.py``) count them first and keep them. History keeps everything
        until asked (see retention.py for why a call, not a TTL)."""
        age = (
            older_than if isinstance(older_than, dt.timedelta) else dt.timedelta(seconds=older_than)
        )
        if not age >= dt.timedelta(0):
            raise ValueError(f"older_than must be 0 or more, not {older_than!r}")

        def counted(cutoff: dt.datetime) -> None:  # once history holds every finish to go
            rollups.roll(self, wait=rollups.LEASE_S + 5, freeze_before=cutoff)

        return prune_queue(self._sweeper, self._meta, utcnow() - age, counted)

    # -- requeueing -----------------------------------------------------------------------

    @unavailable_as_error
    def retry(
        self, job: Mapping[str, Any] | ObjectId | str, data: Any = KEEP, *, by: Any = None
    ) -> bool:
        """A failed job back to waiting, with ``max_attempts`` more attempts; its last error
        stays on it. False when it is not failed (already requeued, say, or done). ``data``:
        it runs with that instead (edit and retry; PublishError, nothing written, when it
        can't be stored), the data it had kept in its ``timeline()`` with ``by`` (who)."""
        if data is KEEP:
            return self.retry_failed({"_id": job_id(job)}) == 1
        self._require_capped()
        log, more = self.attempts_collection, self.max_attempts
        edited = requeue_edited(
            self.collection, self.history_collection, log, job_id(job), data, more, by
        )
        if edited:
            self._due.expect(0)
        return edited

    @unavailable_as_error
    def retry_failed(self, query: Mapping[str, Any] | str | None = None) -> int:
        """Every failed job matching ``query`` back to waiting: ``retry_all(query or {})``."""
        return self.retry_all(query or {})

    # -- acting on every match of a query (parts/bulk.py) ---------------------------------

    @unavailable_as_error
    def retry_all(self, query: Query, *, progress: Progress | None = None,
                  changed: list[Any] | None = None) -> int:  # fmt: skip
        """Every *failed* job matching ``query`` (query text such as ``"data.kind:email"``, or
        a MongoDB filter) back to waiting, as ``retry``; returns how many. Only failed jobs,
        whatever the query says of status. ``progress(done, total)`` follows long runs;
        ``changed`` (a list) receives the ids changed."""
        return bulk.act(self, "retry", query, progress, changed)

    @unavailable_as_error
    def cancel_all(self, query: Query, *, progress: Progress | None = None,
                   changed: list[Any] | None = None) -> int:  # fmt: skip
        """Every *waiting* (or delayed) job matching ``query`` cancelled, as ``cancel``;
        returns how many. Only waiting jobs, whatever the query says of status."""
        return bulk.act(self, "cancel", query, progress, changed)

    @unavailable_as_error
    def promote_all(self, query: Query, *, progress: Progress | None = None,
                    changed: list[Any] | None = None) -> int:  # fmt: skip
        """Every *delayed* job (or retry in back-off) matching ``query`` due now, as
        ``promote``; returns how many. Only delayed jobs, whatever the query says of status."""
        return bulk.act(self, "promote", query, progress, changed)

    @unavailable_as_error
    def count_matches(self, query: Query | None, action: str | None = None) -> int:
        """How many jobs match ``query`` (ring and history, each once); with ``action``
        ("retry", "cancel", "promote"), how many ``<action>_all`` would change now."""
        if action is None:
            return count_matches(self, query or {}, all=True)
        return bulk.would_change(self, action, query)

    # -- inspecting -----------------------------------------------------------------------

    @unavailable_as_error
    def find(self, query: str | Mapping[str, Any], limit: int = 100, all: bool = False) -> JobList:
        """The newest ``limit`` jobs matching ``query``, newest first, ring and history each job
        once: a query text (README "Finding jobs": ``status:failed data.customer:42``) or a
        MongoDB filter. Only the newest 100,000 jobs are looked at unless ``all=True``."""
        return find_jobs(self, query, limit=limit, all=all)

    @unavailable_as_error
    def get(self, job: Mapping[str, Any] | ObjectId | str) -> Job | None:
        """The job's current document: from the queue, else from history (None: neither has
        it). Its display also says whether a working job's worker is alive, as the registry
        says now, and shows its attempts (``story``)."""
        found = self._reads.get(job_id(job))
        if found is not None:
            found._worker = worker_of(self, found)
            found._story = attempts.rows(self.attempts_collection, found)
        return found

    @unavailable_as_error
    def story(self, job: Mapping[str, Any] | ObjectId | str) -> list[dict[str, Any]]:
        """``timeline(job)`` as plain rows (dicts), oldest first: what displays show."""
        return attempts.story(self._reads.get, self.attempts_collection, job)

    @unavailable_as_error
    def timeline(self, job: Mapping[str, Any] | ObjectId | str) -> pd.DataFrame:
        """A job's whole story, one row per attempt (worker, times, outcome, error, last
        progress) and per edit, newest last; the attempt it is in or waits for last."""
        from ..analysis.timeline import timeline

        return timeline(self.story(job))

    @unavailable_as_error
    def workers(self) -> WorkerList:
        """The workers registered beside this queue, newest first: running, stopping, stopped
        or lost (no heartbeat for three intervals); a table in a notebook."""
        return read_workers(self)

    @unavailable_as_error
    def history(
        self,
        since: Any = None,
        until: Any = None,
        status: str | Iterable[str] | None = None,
        query: Mapping[str, Any] | None = None,
        fields: Iterable[str] | None = None,
        limit: int | Literal["auto"] | None = "auto",
    ) -> pd.DataFrame:
        """Job history as a pandas DataFrame, one row per job (see ``history.load``).

        Filters run in MongoDB; the frame has the ``.mjq``
        accessor (``.mjq.summary(by="data.kind")``, ``.mjq.plot_latency()``). By default at
        most the newest ``history.DEFAULT_LIMIT`` jobs (1,000,000), with a warning when there
        are more; ``limit=None`` loads them all.
        """
        from ..analysis.history import load

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
        from ..analysis.stats import stats

        return stats(self, since, until, by, query, exact)

    @unavailable_as_error
    def errors(self, since: Any = None, query: str | Mapping[str, Any] | None = None) -> ErrorList:
        """Failed jobs grouped by error (type, message with its ids and numbers normalised,
        innermost frame), in MongoDB: count, first and last seen, per-hour sparkline, workers,
        an example (``analysis/errors.py``). ``since`` as ``history``'s, on the failure's time;
        ``query`` a job query or a MongoDB filter."""
        from ..analysis.errors import errors

        return errors(self, since, query)

    @unavailable_as_error
    def metrics(
        self, since: Any = None, until: Any = None, every: str = "1min", *, roll: bool = True
    ) -> pd.DataFrame:
        """Counts, wait/run p50/p90/p99, the oldest waiting job's age and the error rate per
        ``every`` (a pandas offset alias, "1min" to "1D"), default the last hour, from the
        per-minute rollups (``analysis/metrics.py``); rolled up to now first unless
        ``roll=False``. ``since``/``until`` as ``history``'s. ``.mjq.plot_metrics()`` draws it."""
        from ..analysis.metrics import load

        return load(self, since, until, every, roll)

    @unavailable_as_error
    def rebuild_metrics(self, since: dt.datetime | dt.timedelta | None = None) -> int:
        """Count the rollups again from history from ``since`` (a time, or how long ago;
        default the oldest job): for queues older than them. Idempotent (the same documents);
        minutes pruned are kept as they are. Returns the minute documents written."""
        start = utcnow() - since if isinstance(since, dt.timedelta) else since
        return rollups.rebuild(self, start)

    # -- notebook widgets (mjq_notebook.notebook.widgets; imported on use) ----------------

    def tail(self, limit: int = 50) -> Tail:
        """A live table of the newest ``limit`` jobs: filter, search, inspect, requeue."""
        from ..notebook.widgets import Tail

        return Tail(self, limit=limit)

    def publisher(self) -> Publisher:
        """A form that publishes jobs from JSON, with priority, delay and copies."""
        from ..notebook.widgets import Publisher

        return Publisher(self)

    def dashboard(self) -> Dashboard:
        """Counters, throughput, latency, the live tail and the publish form in one view."""
        from ..notebook.widgets import Dashboard

        return Dashboard(self)

    def explore(self) -> Explorer:
        """A history explorer: time range, status and grouping -> summary table and plot."""
        from ..notebook.widgets import Explorer

        return Explorer(self)

    @unavailable_as_error
    def audit(self, limit: int = 100) -> AuditList:
        """Who did what to this queue from a page, a widget or ``mjq``, newest first."""
        from .audit import read  # above this layer: import on use

        return read(self, limit)

    @display_timeout
    def __repr__(self) -> str:
        try:
            counts = self.counts(warn=False)
            state = ", ".join(f"{k}={v}" for k, v in counts.items() if v or k != "lost")
        except Exception as exc:  # a repr must not raise; the message carries no URI
            state = f"unavailable: {type(exc).__name__}"
        return f"<JobQueue {self.db.name}.{self.name} {state}>"

    def _repr_html_(self) -> str:
        from ..notebook.display import queue_html  # display sits above this layer: import on use

        return queue_html(self)
