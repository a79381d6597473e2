"""A queue's job changes as a log, for ``mjq tail``: each change of any job (not only the
newest ones) once, in the order it happened, with the time it happened.

Where the server has change streams, each change is an event of a stream filtered on the
server to inserts, status changes and progress (lease renewals never cross the network) and
stamped with the event's own time (``wallTime``, else ``clusterTime`` to the second). The
little a line needs of a job is kept per job as its events go by; a job the log has not met
(an old one retried, say) is read once, by ``_id``, with the others of its batch: the cost is a
read per job met, never per event, and the queue is never re-read. Elsewhere (a standalone
mongod) the log polls: the newest jobs, the working ones and those that stopped working, every
``POLL_S``, a few reads however many jobs go by; a change is then stamped when it was *seen*,
and a waiting job outside the newest ones shows from its claim on. A server that goes away is
a warning, and the log goes on once it is back.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pymongo.errors import OperationFailure, PyMongoError

from ..core.job import id_order
from ..core.outage import failure_reason

if TYPE_CHECKING:
    from ..core.queue import JobQueue

log = logging.getLogger("mjq_notebook")

POLL_S = 0.5  # polling: how often the log looks
RETRY_S = 1.0  # the server away: how often to try again
AWAIT_MS = 500  # change streams: the longest wait for an event (a stop is seen this soon)
BATCH = 500  # events read before the jobs among them not met yet are looked up at once
WORKING_MOST = 1000  # polling: working jobs read per look
KEPT_MOST = 10_000  # jobs whose state is kept (the least recently changed go first)
# what a line shows of a job, read for a job the log has not met
FIELDS = {
    "data": 1, "status": 1, "worker": 1, "attempts": 1, "max_attempts": 1, "progress": 1,
    "error.type": 1, "error.message": 1, "ts": 1,
}  # fmt: skip
# the events a line comes of: new jobs, status changes, progress; no lease renewals
STREAM_PIPELINE: list[dict[str, Any]] = [
    {
        "$match": {
            "$or": [
                {"operationType": {"$in": ["insert", "replace"]}},
                {"updateDescription.updatedFields.status": {"$exists": True}},
                {"updateDescription.updatedFields.progress": {"$exists": True}},
            ]
        }
    },
]
_NEVER = dt.datetime.min.replace(tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class JobChange:
    """One line of the log: ``job`` (what is known of it after the change: status, worker,
    attempts, progress, error, data) changed at ``at`` from ``previous`` (None: the first the
    log knows of it); ``error`` when this change recorded one (a failure)."""

    at: dt.datetime
    job: Mapping[str, Any]
    previous: str | None
    error: Mapping[str, Any] | None = None


class JobLog:
    """``JobLog(queue, limit=50)``: iterate ``changes(duration)``; ``mode`` says how it follows
    the queue ("change stream" or "polling", "" before it started)."""

    def __init__(self, queue: JobQueue, *, limit: int = 50) -> None:
        self.queue = queue
        self.limit = limit
        self.mode = ""
        self._jobs: OrderedDict[Any, dict[str, Any]] = OrderedDict()  # id -> what a line shows
        # jobs read when their first event came: as they are *now*, so their status is not
        # what they changed from; each is the start of its job's next line
        self._met: dict[Any, dict[str, Any]] = {}
        self._last = _NEVER  # the time of the last change given: never go back
        self._stopped: Callable[[], bool] = lambda: False

    def changes(
        self,
        duration: float | None = None,
        on_follow: Callable[[str], None] | None = None,
        stopped: Callable[[], bool] = lambda: False,
    ) -> Iterator[JobChange]:
        """The newest ``limit`` jobs, each at its latest change in time order, then every
        change as it comes, for ``duration`` seconds (None: until closed) or until
        ``stopped()`` (seen within ``AWAIT_MS``). ``on_follow(mode)`` is called once the log
        follows the queue, after the newest jobs."""
        end = None if duration is None else time.monotonic() + duration
        self._stopped = stopped
        stream = self._open_stream()  # before the head: a change while it is read is not lost
        try:
            yield from self._head()
        except BaseException:  # closed (or failed) while the head was given
            if stream is not None:
                stream.close()
            raise
        if on_follow is not None:
            on_follow(self.mode)
        if stream is None:
            yield from self._poll(end)
        else:
            yield from self._follow(stream, end)

    def _going(self, end: float | None) -> bool:
        return not self._stopped() and (end is None or time.monotonic() < end)

    # -- the head: the newest jobs as they are ---------------------------------------------

    def _head(self) -> Iterator[JobChange]:
        jobs = sorted(self.queue.jobs(limit=self.limit), key=lambda j: (_latest(j), id_order(j.id)))
        for job in jobs:
            self._keep(job.id, _shown(job))
            yield self._stamped(_latest(job), self._jobs[job.id], None)

    # -- change streams --------------------------------------------------------------------

    def _open_stream(self) -> Any:
        try:
            stream = self.queue.collection.watch(STREAM_PIPELINE, max_await_time_ms=AWAIT_MS)
        except OperationFailure:  # a standalone mongod (code 40573): no change streams
            self.mode = "polling"
            return None
        self.mode = "change stream"
        return stream

    def _follow(self, stream: Any, end: float | None) -> Iterator[JobChange]:
        try:
            while self._going(end):
                try:
                    events = _batch(stream, end)
                except (PyMongoError, ConnectionError) as exc:
                    stream = self._resume(stream, exc, end)
                    if stream is None:
                        return
                    continue
                if not events and not stream.alive:
                    return
                with contextlib.suppress(PyMongoError, ConnectionError):  # the next read says
                    self._meet(_unmet(events, self._jobs))  # lines then show what events say
                for event in events:
                    change = self._apply(event)
                    if change is not None:
                        yield change
        finally:
            if stream is not None:
                stream.close()

    def _resume(self, stream: Any, exc: Exception, end: float | None) -> Any:
        """A stream again after the server went away: where the last one stopped (its resume
        token), so no change is missed while the server keeps them; else from now, saying so.
        None when ``end`` came first."""
        token = stream.resume_token
        stream.close()
        log.warning("mjq: %s; following again when the server is back", failure_reason(exc))
        while self._going(end):
            time.sleep(RETRY_S)
            try:
                return self.queue.collection.watch(
                    STREAM_PIPELINE, max_await_time_ms=AWAIT_MS, resume_after=token
                )
            except OperationFailure as refused:  # too long away: its changes are gone
                log.warning("mjq: changes while away are missed (%s)", refused.code)
                token = None
            except (PyMongoError, ConnectionError):
                continue
        return None

    def _apply(self, event: Mapping[str, Any]) -> JobChange | None:
        """The line of one event, or None when it changes nothing a line shows."""
        key = event.get("documentKey") or {}
        if "_id" not in key:
            return None
        job_id, kind = key["_id"], event.get("operationType")
        before = self._jobs.get(job_id)
        base = self._met.pop(job_id, None) if before is None else None
        if kind in ("insert", "replace"):
            after = _shown(event.get("fullDocument") or {"_id": job_id})
            error = None
        elif kind == "update":
            fields = (event.get("updateDescription") or {}).get("updatedFields") or {}
            after = _updated(before or base or {"_id": job_id}, fields)
            error = _error(fields.get("error")) if "error" in fields else None
        else:
            return None
        self._keep(job_id, after)
        if before is not None and _same(before, after):
            return None
        previous = None if before is None else before.get("status")
        return self._stamped(_event_time(event), after, previous, error)

    # -- polling ---------------------------------------------------------------------------

    def _poll(self, end: float | None) -> Iterator[JobChange]:
        working: set[Any] = {i for i, job in self._jobs.items() if job.get("status") == "working"}
        while self._going(end):
            time.sleep(POLL_S if end is None else max(0.0, min(POLL_S, end - time.monotonic())))
            seen = dt.datetime.now(dt.timezone.utc)
            try:
                docs = self._look(working)
            except (PyMongoError, ConnectionError) as exc:
                log.warning("mjq: %s; looking again", failure_reason(exc))
                time.sleep(RETRY_S)
                continue
            working = {i for i, doc in docs.items() if doc.get("status") == "working"}
            for job_id in sorted(docs, key=id_order):
                before, after = self._jobs.get(job_id), _shown(docs[job_id])
                self._keep(job_id, after)
                if before is None or not _same(before, after):
                    failed = _failure(before, after)
                    previous = None if before is None else before.get("status")
                    yield self._stamped(seen, after, previous, failed)

    def _look(self, working: set[Any]) -> dict[Any, Mapping[str, Any]]:
        """Polling: the newest jobs, the working ones, and those of ``working`` that stopped."""
        docs: dict[Any, Mapping[str, Any]] = {
            job.id: job for job in self.queue.jobs(limit=self.limit)
        }
        running = self.queue.collection.find({"status": "working"}, FIELDS, limit=WORKING_MOST)
        docs.update((doc["_id"], doc) for doc in running)
        docs.update(self._read(working - set(docs)))
        return docs

    # -- the jobs met ----------------------------------------------------------------------

    def _meet(self, ids: set[Any]) -> None:
        """Read the jobs of ``ids`` the log has not met, at once (the ring, else history):
        what their lines show beside what the events say (data, attempts...)."""
        self._met = {
            job_id: {**_shown(doc), "status": None} for job_id, doc in self._read(ids).items()
        }

    def _read(self, ids: Iterable[Any]) -> dict[Any, Mapping[str, Any]]:
        wanted = list(ids)
        if not wanted:
            return {}
        found: dict[Any, Mapping[str, Any]] = {
            d["_id"]: d for d in self.queue.collection.find({"_id": {"$in": wanted}}, FIELDS)
        }
        rest = [job_id for job_id in wanted if job_id not in found]
        if rest:
            query = {"_id": {"$in": rest}}
            found.update((d["_id"], d) for d in self.queue.history_collection.find(query, FIELDS))
        return found

    def _keep(self, job_id: Any, shown: dict[str, Any]) -> None:
        self._jobs[job_id] = shown
        self._jobs.move_to_end(job_id)
        while len(self._jobs) > max(KEPT_MOST, 10 * self.limit):
            self._jobs.popitem(last=False)

    def _stamped(
        self,
        at: dt.datetime,
        job: Mapping[str, Any],
        previous: str | None,
        error: Mapping[str, Any] | None = None,
    ) -> JobChange:
        """A change at ``at``, or at the last change given if that is later (a clock that
        stepped back between two servers' events): the log never goes back in time."""
        self._last = max(self._last, at)
        return JobChange(self._last, job, previous, error)


def _batch(stream: Any, end: float | None) -> list[Mapping[str, Any]]:
    """The events ready now (up to ``BATCH``), after waiting up to ``AWAIT_MS`` for one."""
    events: list[Mapping[str, Any]] = []
    while len(events) < BATCH:
        if end is not None and time.monotonic() >= end:
            break
        event = stream.try_next()
        if event is None:
            break
        events.append(event)
    return events


def _unmet(events: list[Mapping[str, Any]], known: Mapping[Any, Any]) -> set[Any]:
    """The jobs ``events`` update that are neither ``known`` nor inserted by an event before."""
    seen, unmet = set(known), set()
    for event in events:
        job_id = (event.get("documentKey") or {}).get("_id")
        if event.get("operationType") in ("insert", "replace"):
            seen.add(job_id)
        elif event.get("operationType") == "update" and job_id not in seen:
            unmet.add(job_id)
    return unmet


def _shown(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What a line shows of a job document."""
    shown = {key: doc.get(key) for key in FIELDS if "." not in key}
    shown["_id"] = doc.get("_id")
    shown["error"] = _error(doc.get("error"))
    return shown


def _updated(before: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """``before`` with an update event's ``updatedFields`` (dotted paths of ``ts`` included)."""
    after = dict(before)
    for path, value in fields.items():
        top, _, rest = path.partition(".")
        if top == "error":
            after["error"] = _error(value) if not rest else after.get("error")
        elif top in FIELDS and not rest:
            after[top] = value
        elif top == "ts" and rest:
            after["ts"] = {**(after.get("ts") or {}), rest: value}
    return after


def _error(value: Any) -> dict[str, Any] | None:
    """An error's type and message (no traceback: a line shows the message's first line)."""
    if not isinstance(value, Mapping):
        return None
    return {"type": value.get("type"), "message": value.get("message")}


def _failure(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> Any:
    """Polling: the error a change recorded, when it was a failure (to failed, or from
    working back to waiting for a retry)."""
    was, status = None if before is None else before.get("status"), after.get("status")
    if (status == "failed" and was != "failed") or (was == "working" and status == "waiting"):
        return after.get("error")
    return None


def _same(before: Mapping[str, Any], after: Mapping[str, Any]) -> bool:
    """Nothing a line shows changed: status, attempts, worker and progress alike."""
    keys = ("status", "attempts", "worker", "progress")
    return all(before.get(key) == after.get(key) for key in keys)


def _event_time(event: Mapping[str, Any]) -> dt.datetime:
    """When the server applied the change: ``wallTime`` (MongoDB 6.0+), else the cluster
    time (whole seconds)."""
    wall = event.get("wallTime")
    if isinstance(wall, dt.datetime):
        return wall if wall.tzinfo else wall.replace(tzinfo=dt.timezone.utc)
    cluster = event.get("clusterTime")
    if cluster is not None and hasattr(cluster, "as_datetime"):
        return cluster.as_datetime()
    return dt.datetime.now(dt.timezone.utc)


def _latest(job: Mapping[str, Any]) -> dt.datetime:
    """The time of a job's latest change by its own times (the latest of created, started,
    done), for the jobs the log starts with."""
    ts = job.get("ts")
    times = (
        [t for t in ts.values() if isinstance(t, dt.datetime)] if isinstance(ts, Mapping) else []
    )
    aware = [t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc) for t in times]
    return max(aware, default=_NEVER)
