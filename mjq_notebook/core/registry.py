"""The worker registry: who works a queue, from where, on what, and whether it is alive.

Every ``Worker`` keeps one record in ``<queue>.workers`` (a plain collection beside the queue)
for each queue it takes jobs from, keyed by its worker id: the id its claims write into a
job's ``worker`` field, so a working job leads to the record of the worker running it. The
worker's heartbeat thread rewrites the record every ``interval`` seconds; a clean stop writes
"stopped". A worker that vanished (``kill -9``, a lost host) writes nothing more, so "lost"
is not stored but read: a running or stopping record whose heartbeat is older than
``LOST_AFTER`` intervals. Records expire on their own: a TTL index on ``expires_at``, which
each write sets a day (``KEEP_S``) ahead, so live workers stay and the dead go a day later.

Times are the workers' clocks (UTC), as for leases: hosts are assumed to keep time.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import ConnectionFailure, OperationFailure

from .._version import __version__
from ..errors import ServerUnavailable
from ..text import format_ago, format_seconds, int_or_none, printable, text_table
from .job import Job, utcnow
from .outage import unavailable_as_error
from .retries import retried

if TYPE_CHECKING:
    import pandas as pd
    from pymongo.collection import Collection

    from .queue import JobQueue

HEARTBEAT_S = 5.0  # a worker's default heartbeat interval
LOST_AFTER = 3  # heartbeat intervals without one before a worker reads as lost
KEEP_S = 86_400.0  # a record outlives its last write by this much (then TTL deletes it)

log = logging.getLogger("mjq_notebook.worker")


class State(str, Enum):
    """A worker's state; the values are the strings stored (``lost`` only ever derived)."""

    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    LOST = "lost"


ALIVE = (State.RUNNING.value, State.STOPPING.value)  # the stored states of a worker that runs


def new_worker_id() -> str:
    """A fresh worker id, "host:pid:6 hex digits": the host and process a job's ``worker``
    field leads to, unique among the workers of one process."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def workers_collection(queue: JobQueue) -> Collection:
    """``<queue>.workers``, with the queue's codec (tz-aware UTC datetimes)."""
    return queue.db[f"{queue.name}.workers"]


class Registration:
    """One worker's record in one queue's registry: written at start, on each heartbeat and
    at its stop, by one thread at a time (a lock), and never again once it says stopped."""

    def __init__(
        self,
        queue: JobQueue,
        worker_id: str,
        *,
        name: str,
        queues: Sequence[str],
        concurrency: int,
        interval: float,
        keep: float = KEEP_S,
    ) -> None:
        self.queue = queue
        self.collection = workers_collection(queue)
        self.keep = max(keep, 2 * LOST_AFTER * interval)  # a live record never expires
        self.fields: dict[str, Any] = {
            "_id": worker_id,
            "name": name,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "concurrency": concurrency,
            "version": __version__,
            "queues": list(queues),
            "started": utcnow(),
            "interval": float(interval),
        }
        self._lock = threading.Lock()
        self._indexed = False
        self.closed = False

    def write(
        self,
        state: State,
        running: Iterable[Mapping[str, Any]],
        counts: Mapping,
        last: Mapping[str, Any] | None = None,
    ) -> None:
        """Replace the record: ``state``, the jobs running now (``{"id", "since", "attempt"}``),
        ``counts`` (done, failed, retried, released, busy_s) and ``last``, the job it took last
        (kept after it finished, so a stopped or lost worker says what it ran); heartbeat =
        now."""
        with self._lock:
            if self.closed:
                return
            if not self._indexed:
                ensure_indexes(self.collection)
                self._indexed = True
            now = utcnow()
            doc = {
                **self.fields,
                "state": State(state).value,
                "heartbeat": now,
                "running": [dict(job) for job in running],
                **counts,
                "last": None if last is None else dict(last),
                "expires_at": now + dt.timedelta(seconds=self.keep),
            }
            # sent again after a fault (retries.py): the last one, "stopped", above all, or
            # the worker would read as lost
            retried(
                lambda again: self.collection.replace_one({"_id": doc["_id"]}, doc, upsert=True),
                f"a record in {self.collection.name}",
            )
            self.closed = state is State.STOPPED


class WorkerRecords:
    """A worker's records, one per queue it takes from (the same record in each registry but
    for what concerns that queue: its running jobs, counts and busy time)."""

    def __init__(
        self,
        queues: Sequence[JobQueue],
        worker_id: str,
        name: str,
        concurrency: int,
        interval: float,
    ) -> None:
        names = [q.name for q in queues]
        self.registrations = [
            Registration(
                q, worker_id, name=name, queues=names, concurrency=concurrency, interval=interval
            )
            for q in queues
        ]

    def write(
        self,
        state: State,
        running: Iterable[tuple[int, Job, float]],
        counts: Sequence[Mapping[str, Any]],
        last: Sequence[Job | None] = (),
    ) -> None:
        """Write every record: ``running`` holds (queue index, job, monotonic start),
        ``counts`` each queue's done/failed/retried/released/busy_s (finished jobs only) and
        ``last`` the job each queue gave it last (None: none yet).
        A failed write is logged (once per outage while the server is away), never raised:
        the next heartbeat writes the whole record again."""
        now, clock = utcnow(), time.monotonic()
        running = list(running)
        for index, registration in enumerate(self.registrations):
            mine = [(job, since) for i, job, since in running if i == index]
            busy = float(counts[index].get("busy_s") or 0.0) + sum(clock - s for _, s in mine)
            listed = [] if state is State.STOPPED else [_entry(job, now) for job, _ in mine]
            took = last[index] if index < len(last) else None
            entry = None if took is None else _entry(took, now)
            try:
                registration.write(
                    state, listed, {**counts[index], "busy_s": round(busy, 3)}, entry
                )
            except (ConnectionFailure, ServerUnavailable) as exc:
                registration.queue.outage.away(exc, "writing to the worker registry")
            except Exception as exc:  # a registry write must never end the heartbeats
                log.warning("worker registry %s: %s", registration.collection.name, exc)


def _entry(job: Job, now: dt.datetime) -> dict[str, Any]:
    """A running job as the registry lists it: its id, since when, which attempt."""
    since = (job.get("ts") or {}).get("started") or now
    return {"id": job.id, "since": since, "attempt": job.attempts}


def ensure_indexes(collection: Collection) -> None:
    """The TTL index that deletes records after ``expires_at``, and the listing order's.

    A server that refuses them (say, an index of that name with other options made by hand)
    is told once in the log; the records are written all the same. A server that could not
    be reached raises (``ConnectionFailure``), so the next write tries again."""
    try:
        collection.create_index([("expires_at", ASCENDING)], expireAfterSeconds=0)
        collection.create_index([("started", DESCENDING)])
    except OperationFailure as exc:
        log.warning("worker registry %s: no TTL index (%s)", collection.name, exc)


# -- reading --------------------------------------------------------------------------------


@unavailable_as_error
def read_workers(queue: JobQueue) -> WorkerList:
    """Every worker recorded beside ``queue``, newest first, with ``state`` as read now (a
    silent one is ``lost``) and ``busy``, the fraction of its threads' time spent on jobs."""
    now = utcnow()
    records = {"state": {"$type": "string"}}  # not what else others put there (jobs, say)
    order = [("started", DESCENDING), ("_id", ASCENDING)]
    docs = workers_collection(queue).find(records, sort=order)
    return WorkerList(as_read(doc, now) for doc in docs)


def worker_of(queue: JobQueue, job: Mapping[str, Any]) -> dict[str, Any] | None:
    """The record of the worker running ``job``, its state as of now (one read); None when the
    job is not working or its consumer never registered (a bare ``next()``, pymjq)."""
    if job.get("status") != "working" or not job.get("worker"):
        return None
    return workers_by_id(queue, [job["worker"]]).get(job["worker"])


def workers_by_id(queue: JobQueue, ids: Iterable[Any]) -> dict[Any, dict[str, Any]]:
    """The records of the workers ``ids`` (say, those of the working jobs a view shows), each
    with its state as of now: one read by ``_id``, the registry's own index. Workers that
    never registered are missing; so is everything for a user who may read the queue but not
    its registry (the jobs still show, without their workers' state)."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    try:
        docs = list(workers_collection(queue).find({"_id": {"$in": wanted}}))
    except OperationFailure:
        return {}
    now = utcnow()
    return {doc["_id"]: as_read(doc, now) for doc in docs}


def as_read(doc: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    """A record with its state as of ``now`` and its busy fraction."""
    row = dict(doc)
    interval = float(row.get("interval") or HEARTBEAT_S)
    beat, started = row.get("heartbeat"), row.get("started")
    silent = (now - beat).total_seconds() if isinstance(beat, dt.datetime) else float("inf")
    alive = row.get("state") in ALIVE
    if alive and silent > LOST_AFTER * interval:
        row["state"] = State.LOST.value
    row["busy"] = None
    if isinstance(beat, dt.datetime) and isinstance(started, dt.datetime):
        span = (beat - started).total_seconds() * max(int(row.get("concurrency") or 1), 1)
        if span > 0:
            row["busy"] = min(max(float(row.get("busy_s") or 0.0) / span, 0.0), 1.0)
    return row


class WorkerList(list):
    """Worker records (dicts) as a plain ``list`` for code: a table in a notebook, text in a
    terminal, ``to_frame()`` for pandas."""

    def by_id(self) -> dict[str, dict[str, Any]]:
        """Records by worker id: what a job's ``worker`` field names."""
        return {row["_id"]: row for row in self}

    def lost(self) -> list[str]:
        """Ids of the workers that read as lost."""
        return [row["_id"] for row in self if row.get("state") == State.LOST.value]

    def __repr__(self) -> str:
        return workers_text(self)

    def _repr_html_(self) -> str:
        from ..notebook.display import workers_html  # display sits above this layer

        return workers_html(self)

    def to_frame(self) -> pd.DataFrame:
        """One row per worker: id, name, state, host, pid, ..., running as a job count, and the
        id of the job it took last (``last_ran``; None before its first)."""
        import pandas as pd

        columns = [*ROW_FIELDS, "jobs_running", "running", "last_ran"]
        rows = [
            {
                **{k: row.get(k) for k in ROW_FIELDS},
                "jobs_running": len(row.get("running") or []),
                "running": [job.get("id") for job in row.get("running") or []],
                "last_ran": (row.get("last") or {}).get("id"),
            }
            for row in self
        ]
        frame = pd.DataFrame(rows, columns=columns)
        for column in ("started", "heartbeat"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame


ROW_FIELDS = (
    "_id", "name", "state", "host", "pid", "queues", "concurrency", "version", "started",
    "heartbeat", "interval", "done", "failed", "retried", "released", "busy_s", "busy",
)  # fmt: skip


# -- plain text -----------------------------------------------------------------------------

# The columns of a worker, in the order tables show them; the terminal's table leaves out
# "jobs/min", which needs two reads of the registry apart (the notebook panels have them).
# "job": what it runs now ("…f73 for 4 s", "idle"), or once stopped or lost what it ran last
COLUMNS = ("state", "worker", "host:pid", "job", "done", "failed", "jobs/min", "busy",
           "heartbeat")  # fmt: skip
TEXT_COLUMNS = tuple(c for c in COLUMNS if c != "jobs/min")


def worker_cells(
    row: Mapping[str, Any], now: dt.datetime, per_minute: float | None = None
) -> dict[str, str]:
    """One worker as the plain text of each column (NOT escaped: the HTML tables escape it):
    the one row builder of ``mjq workers``, ``q.workers()`` and the notebook panels."""
    busy = row.get("busy")
    beat = row.get("heartbeat")
    beat = min(beat, now) if isinstance(beat, dt.datetime) else None  # a skewed clock: "0 ms ago"
    return {
        "state": printable(row.get("state")),
        "worker": printable(row.get("name") or row.get("_id")),
        "host:pid": printable(f"{row.get('host')}:{row.get('pid')}"),
        "job": job_text(row, now),
        "done": f"{int_or_none(row.get('done')) or 0:,}",
        "failed": f"{int_or_none(row.get('failed')) or 0:,}",
        "jobs/min": "—" if per_minute is None else f"{per_minute:.1f}",
        "busy": f"{busy:.0%}" if isinstance(busy, (int, float)) else "—",
        "heartbeat": format_ago(beat, now),
    }


def job_text(row: Mapping[str, Any], now: dt.datetime) -> str:
    """What a worker runs now ("<id> for 4 s (+1 more)", "idle"), or, once it is stopped or
    lost, what it ran last ("last ran <id>"): ``job_parts`` joined."""
    return "".join(job_parts(row, now))


def job_parts(row: Mapping[str, Any], now: dt.datetime) -> tuple[str, str, str]:
    """``job_text`` as (the words before the job id, the id, the words after), so the HTML
    tables can set only the id as code: a lost worker's jobs may have finished on another
    worker since, so once stopped or lost it says "last ran <id>", never "for 10 min"."""
    running = [job for job in row.get("running") or [] if isinstance(job, Mapping)]
    alive = row.get("state") in ALIVE
    more = f" (+{len(running) - 1} more)" if len(running) > 1 else ""
    if alive and running:
        first = running[0]
        since = format_seconds(_since(first.get("since"), now))
        return "", printable(first.get("id")), f" for {since}{more}"
    if row.get("state") == State.RUNNING.value:
        return "idle", "", ""
    last = running[0] if running else row.get("last")
    if not isinstance(last, Mapping):
        return "—", "", ""
    return "last ran ", printable(last.get("id")), more


def _since(when: Any, now: dt.datetime) -> float | None:
    return (now - when).total_seconds() if isinstance(when, dt.datetime) else None


def workers_text(workers: Sequence[Mapping[str, Any]], now: dt.datetime | None = None) -> str:
    """A plain table, one line per worker (``mjq workers``, ``repr(q.workers())``)."""
    if not workers:
        return "no workers"
    now = now or utcnow()
    rows = [worker_cells(row, now) for row in workers]
    return "\n".join(text_table([TEXT_COLUMNS, *([r[c] for c in TEXT_COLUMNS] for r in rows)]))
