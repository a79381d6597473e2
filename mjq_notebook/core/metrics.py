"""Rollups: a queue's counts and latency sketches per minute in ``<queue>.metrics``, and per
hour in ``<queue>.metrics_hours`` (``hours.py``), kept ``METRICS_DAYS`` (90) days and
surviving ``prune_history``.

One document per UTC minute: ``_id`` (and ``at``, the TTL index's field) = the minute;
``created, started, done, failed, cancelled, retried``; ``wait`` and ``run``
(``Sketch.to_doc()``, 1% relative error); ``oldest_wait_s`` (the age of the oldest due
waiting job, the largest sampled while that minute was current; absent when none waited);
``rolled_at``; ``fence`` (the roller's lease token). What each count means: ``minutes.py``.

Who writes them: a *roller*, never the finishes themselves. An ``$inc`` per finish would count
a finish twice when its write is sent again after a fault; instead ``roll`` counts whole
minutes from the documents (history, the ring, the attempts' log) and ``$set``s whole minute
documents, so rolling is idempotent and a rebuild writes the same documents. Anyone may roll:
each ``Worker`` every ``ROLL_EVERY_S`` (30 s, on a thread of its own, skipped when another
rolled within that time), ``q.metrics()`` before it reads, ``q.prune_history`` before it
deletes, the dashboard.

- One roller at a time: a lease document (``{"_id": "metrics"}`` in ``<queue>.meta``) taken
  with one conditional update; its ``token`` grows with every taking, and each minute write
  is conditional on the document's ``fence`` being no newer, so a roller that stalled past its
  lease and wakes up can't overwrite a later roller's minutes with older counts.
- What a pass rolls: from the lease's ``rolled_to`` (the minute the last pass was in), or
  ``TRAIL`` (10 minutes) back if that is later, up to now, the current minute included (so
  rolling now covers every job that ``prune_history`` could delete). Re-rolling the trailing
  10 minutes counts a finish written a little after its ``ts.done``. Writes to history later
  than that which are not a finish's own say so (``minutes.note_late``: the sweep copying
  another program's finish ``LATE``, 5 minutes, or more after its ``ts.done``, a requeue
  taking a failure back): the lease's ``late_from``, which the next pass takes, moving
  ``rolled_to`` back to it. A finish of ours written late (sent again long after, a worker's
  clock far behind the roller's) is not noted: it is left out until ``rebuild_metrics``.
- The first pass on a queue rolls from its oldest job (as ``rebuild_metrics()`` would); any
  pass longer than ``minutes.WINDOW`` (an hour: the first, a rebuild, one after rollers
  stopped for a while) rolls in windows of it, each counted, written and recorded
  (``rolled_to``, the lease renewed) before the next is read, so memory holds one window's
  ids and a pass that stops (a crash, a lost lease) is taken up from there by the next one,
  counting as the pass it was (``pass_from``). A window's reads are index ranges on both
  sides (history by ``ts.done``, ``ts.created`` and ``ts.started``; the attempts by
  ``ended`` and ``started``; the ring by id), so n windows cost about one pass; the first
  long pass makes those indexes (``ensure_window_indexes``).
- ``prune_history`` rolls first, then *freezes* the minutes up to its cut-off's
  (``frozen_before``): their history is going, so no later pass nor rebuild recounts them. A
  prune whose cut-off is in the current minute (an age under a minute) freezes that minute:
  jobs finishing in the rest of it are not counted.
- ``oldest_wait_s`` is a sample, not recomputable from the documents: each pass measures it
  once (``oldest_waiting_age``) and keeps the largest per minute; a rebuild leaves it alone.
- Hours: after writing its minutes a pass derives every hour its window touches from the
  stored minute documents (never from jobs: the same hours again on a rebuild, and after a
  prune), under the same lease and fence (``hours.py``: a pending mark covers a pass that
  stops in between; a deployment from before hours derives them all on its first pass). A
  normal pass touches one or two hours and reads their minutes (up to 120 small documents).
- Reads (``read``): given the boundaries of the periods it will be merged into, the window's
  whole hours come as hour documents when every boundary inside them is on the hour (steps
  of whole hours, days, weeks, months), the partial hours at its edges as minutes; 90 days
  are ~2,200 documents, not 129,600. The ranges go through the TTL index on ``at`` (equal to
  ``_id``): SecantusDB scans the collection for an ``_id`` range.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from ..errors import JobQueueError
from . import hours, minutes
from .job import Status, utcnow
from .minutes import LATE_FROM, MINUTE, STATE_ID, Minute, floor

if TYPE_CHECKING:
    from pymongo.collection import Collection

    from .queue_base import QueueBase

__all__ = [
    "METRICS_DAYS",
    "ROLL_EVERY_S",
    "SUFFIX",
    "TRAIL",
    "Roller",
    "collection",
    "oldest_waiting_age",
    "read",
    "rebuild",
    "roll",
]

log = logging.getLogger("mjq_notebook")

SUFFIX = ".metrics"
METRICS_DAYS = 90  # the TTL index's age: minute documents go 90 days after their minute
TRAIL = dt.timedelta(minutes=10)  # rolled again on every pass: late finishes are counted
ROLL_EVERY_S = 30.0  # a Worker's rolls (at most one per queue in that time among all rollers)
LEASE_S = 60.0  # a roller's lease, renewed between batches
BATCH = 500  # minute documents per bulk write


def collection(queue: QueueBase) -> Collection:
    """``<queue>.metrics``, the minute documents."""
    return queue.db[f"{queue.name}{SUFFIX}"]


def ensure_indexes(queue: QueueBase) -> None:
    """The TTL index on ``at`` and the attempts' ``ended`` index the passes read (each pass
    asks: the collections may have been dropped by ``clear_queue`` since)."""
    collection(queue).create_index([("at", ASCENDING)], expireAfterSeconds=METRICS_DAYS * 86_400)
    hours.ensure_index(queue, METRICS_DAYS)
    queue.attempts_collection.create_index([("ended", ASCENDING)])


def ensure_window_indexes(queue: QueueBase) -> None:
    """The indexes a long pass reads its windows by (``minutes.windows``): the attempts'
    ``started``, history's ``ts.created`` and ``ts.started``. Made by the first long pass
    only: each costs every finish an index entry (``benchmarks/RESULTS.md``), which a queue
    whose passes stay short never pays."""
    queue.attempts_collection.create_index([("started", ASCENDING)])
    for field in ("ts.created", "ts.started"):
        queue.history_collection.create_index([(field, ASCENDING)])


def roll(
    queue: QueueBase,
    *,
    every: float = 0.0,
    wait: float = 10.0,
    since: dt.datetime | None = None,
    freeze_before: dt.datetime | None = None,
) -> int:
    """Bring ``queue``'s rollups up to now; returns how many minute documents were written.

    ``every``: do nothing (0) when a pass ended less than that many seconds ago. ``wait``:
    seconds to wait for another roller's lease; then 0 if it is still held, or
    ``JobQueueError`` when ``freeze_before`` is given (``prune_history`` must not delete what
    was not rolled). ``since``: roll from that minute (``rebuild``). ``freeze_before``: after
    rolling, no later pass recounts the minutes up to that time's.
    """
    meta = queue._meta
    state = meta.find_one({"_id": STATE_ID}) or {}
    rolled_at = state.get("rolled_at")
    if every and rolled_at is not None and utcnow() - rolled_at < dt.timedelta(seconds=every):
        return 0
    lease = _Lease.take(meta, wait)
    if lease is None:
        if freeze_before is not None:
            raise JobQueueError(
                f"another process is rolling up {queue.db.name}.{queue.name}'s metrics; "
                "nothing was pruned, try again"
            )
        return 0
    try:
        ensure_indexes(queue)
        try:
            written = _pass(queue, lease, since)
        except _Fenced as exc:  # a later roller took over: its counts stand
            log.warning("rolling up %s stopped: %s", queue.name, exc)
            return 0
        if freeze_before is not None:
            frozen = floor(freeze_before) + MINUTE
            lease.set({"frozen_before": max(frozen, lease.state.get("frozen_before") or frozen)})
        return written
    finally:
        lease.give_back()


def rebuild(queue: QueueBase, since: dt.datetime | None = None) -> int:
    """Roll every minute from ``since`` (default: the queue's oldest job) again from the
    documents: the same documents a roll wrote. Minutes frozen by a prune are left alone."""
    return roll(queue, wait=60.0, since=since or _oldest(queue) or utcnow())


def read(
    queue: QueueBase,
    since: dt.datetime,
    until: dt.datetime,
    cuts: Sequence[dt.datetime] | None = None,
) -> list[dict[str, Any]]:
    """The minute documents from ``since``'s minute to before ``until``, oldest first.

    ``cuts``: the boundaries of the periods the documents will be merged into; then each
    whole hour of the window comes as its hour document (``hours.span``: one read of the
    state first) when every cut inside those hours is on the hour."""
    lo = floor(since)
    state = None if cuts is None else queue._meta.find_one({"_id": STATE_ID})
    whole = None if state is None else hours.span(lo, until, cuts or (), state)
    if whole is None:
        return _find(collection(queue), lo, until)
    a, b = whole
    return [*_find(collection(queue), lo, a), *_find(hours.collection(queue), a, b),
            *_find(collection(queue), b, until)]  # fmt: skip


def _find(documents: Collection, lo: dt.datetime, until: dt.datetime) -> list[dict[str, Any]]:
    """By ``at`` (= ``_id``), through the TTL index: SecantusDB scans for an ``_id`` range."""
    if lo >= until:
        return []
    return list(documents.find({"at": {"$gte": lo, "$lt": until}}).sort("at", ASCENDING))


def oldest_waiting_age(queue: QueueBase) -> float | None:
    """Seconds the oldest due waiting job (by id) has been due, now; None if none waits.

    Per priority, the first due waiting job along the claim's (status, priority, _id) index:
    one indexed find for each priority that has waiting jobs, and one to find each priority.
    """
    ring, now = queue.collection, utcnow()
    waiting: dict[str, Any] = {"status": Status.WAITING.value}
    due = {"available_at": {"$not": {"$gt": now}}}
    ages: list[float] = []
    while True:
        top = ring.find_one(waiting, {"priority": 1}, sort=[("priority", DESCENDING)])
        if top is None:
            break
        priority = top.get("priority")
        first = ring.find_one(
            {**waiting, "priority": priority, **due},
            {"available_at": 1, "ts.created": 1},
            sort=[("priority", DESCENDING), ("_id", ASCENDING)],
        )
        if first is not None:
            since = first.get("available_at") or (first.get("ts") or {}).get("created")
            if isinstance(since, dt.datetime):
                ages.append(max(0.0, (now - _aware(since)).total_seconds()))
        if priority is None:
            break
        waiting = {"status": Status.WAITING.value, "priority": {"$lt": priority}}
    return max(ages) if ages else None


# -- a pass ---------------------------------------------------------------------------------


def _pass(queue: QueueBase, lease: _Lease, since: dt.datetime | None) -> int:
    now = utcnow()
    current = floor(now)
    frozen = lease.state.get("frozen_before")
    rolled_to = _take_late(lease)
    if since is not None:
        lo = floor(since)
    elif rolled_to is not None:
        lo = min(rolled_to, current - TRAIL)
    else:
        lo = floor(_oldest(queue) or now)
    if frozen is not None:
        lo = max(lo, frozen)
    lo = min(lo, current + MINUTE)
    # a pass that stopped goes on from rolled_to, counting as the pass it was (from first)
    first = min(lo, lease.state.get("pass_from") or lo)
    if lo + minutes.WINDOW <= current:  # a long pass: its indexes, and where it began
        ensure_window_indexes(queue)
        lease.renew()
        lease.set({"pass_from": first})
    age = oldest_waiting_age(queue)
    metrics = collection(queue)
    lease.set({"hours_from": min(lo, lease.state.get("hours_from") or lo)})  # hours.py
    written = 0
    parts = queue.collection, queue.history_collection, queue.attempts_collection
    for low, high, found in minutes.windows(*parts, lo, current, first, metrics):
        window = {"$gte": low} if high is None else {"$gte": low, "$lt": high}
        # by at (= _id): SecantusDB scans the collection for a range of _id
        existing = {d["_id"] for d in metrics.find({"at": window}, {"_id": 1})}
        keys = {m for m, minute in found.items() if not minute.empty()} | existing
        if age is not None and high is None and current >= low:
            keys.add(current)
        ops: list[UpdateOne] = []
        for minute in sorted(keys):
            fields = found.get(minute, Minute()).fields()
            fields.update(at=minute, rolled_at=now, fence=lease.token)
            update: dict[str, Any] = {"$set": fields}
            if minute == current and age is not None:
                update["$max"] = {"oldest_wait_s": age}
            fence = {"fence": {"$not": {"$gt": lease.token}}}  # no newer (an $or: a scan)
            ops.append(UpdateOne({"_id": minute, **fence}, update, upsert=True))
            if len(ops) >= BATCH:
                written += _write(metrics, ops, lease)
                ops = []
        written += _write(metrics, ops, lease)
        if high is not None:  # a pass stopped here resumes from the next window
            lease.renew()
            lease.set({"rolled_to": high})
    _derive_hours(queue, lease, lo, now)
    rolled = {"rolled_to": max(current, rolled_to or current), "rolled_at": utcnow()}
    lease.set({**rolled, "pass_from": None})
    return written


def _derive_hours(queue: QueueBase, lease: _Lease, lo: dt.datetime, now: dt.datetime) -> int:
    """The hours from ``lo``'s (and any a stopped pass left pending) derived from their
    minutes; every hour once when they never were (``hours.py``)."""
    state = lease.state
    since = None if state.get("hours") != hours.VERSION else min(lo, state.get("hours_from") or lo)
    written = hours.derive(queue, since, lease.token, now, lambda c, ops: _write(c, ops, lease))
    lease.set({"hours": hours.VERSION, "hours_from": None})
    return written


def _take_late(lease: _Lease) -> dt.datetime | None:
    """The lease's ``rolled_to``, moved back to the oldest minute a late write noted
    (``note_late``), that note taken: a pass stopped after it resumes from there."""
    for _ in range(5):  # a note arriving meanwhile changes it: read again
        late = lease.state.get(LATE_FROM)
        if late is None:
            break
        rolled = lease.state.get("rolled_to")
        change: dict[str, Any] = {"$unset": {LATE_FROM: ""}}
        if rolled is not None:  # else the first pass rolls from the oldest job anyway
            change["$min"] = {"rolled_to": late}
        if lease.meta.update_one({**lease._mine(), LATE_FROM: late}, change).matched_count:
            lease.state.pop(LATE_FROM)
            lease.state["rolled_to"] = None if rolled is None else min(rolled, late)
            break
        lease.state = lease.meta.find_one(lease._mine()) or lease.state
    return lease.state.get("rolled_to")


def _write(metrics: Collection, ops: Sequence[UpdateOne], lease: _Lease) -> int:
    if not ops:
        return 0
    lease.renew()
    try:
        metrics.bulk_write(list(ops), ordered=True)
    except BulkWriteError as exc:
        if any(e.get("code") == 11000 for e in exc.details.get("writeErrors", [])):
            raise _Fenced from None
        raise
    return len(ops)


class _Fenced(JobQueueError):
    """A later roller wrote these minutes: this (stale) pass stops."""


def _oldest(queue: QueueBase) -> dt.datetime | None:
    """The creation time of the queue's oldest job (ring or history, by id), or None."""
    times = []
    for coll in (queue.collection, queue.history_collection):
        first = coll.find_one({}, {"_id": 1}, sort=[("_id", ASCENDING)])
        if first is not None and isinstance(first["_id"], ObjectId):
            times.append(first["_id"].generation_time)
    done = queue.history_collection.find_one({}, {"ts.done": 1}, sort=[("ts.done", ASCENDING)])
    when = ((done or {}).get("ts") or {}).get("done")
    if isinstance(when, dt.datetime):
        times.append(_aware(when))
    return min(times) - MINUTE if times else None


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)


# -- the lease --------------------------------------------------------------------------------


class _Lease:
    """One roller's hold on a queue's rollups (the ``metrics`` document in ``<queue>.meta``)."""

    def __init__(self, meta: Collection, me: str, state: dict[str, Any]) -> None:
        self.meta, self.me, self.state = meta, me, state
        self.token = int(state.get("token") or 0)

    @classmethod
    def take(cls, meta: Collection, wait: float) -> _Lease | None:
        me, deadline = str(ObjectId()), time.monotonic() + wait
        while True:
            now = utcnow()
            free = {"$or": [{"holder": None}, {"until": {"$lt": now}}]}
            try:
                state = meta.find_one_and_update(
                    {"_id": STATE_ID, **free},
                    {"$set": {"holder": me, "until": _until()}, "$inc": {"token": 1}},
                    upsert=True,
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:  # held by another
                state = None
            if state is not None:
                return cls(meta, me, state)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.05)

    def _mine(self) -> dict[str, Any]:
        return {"_id": STATE_ID, "holder": self.me, "token": self.token}

    def renew(self) -> None:
        if not self.meta.update_one(self._mine(), {"$set": {"until": _until()}}).matched_count:
            raise _Fenced("the metrics lease was lost (a pass longer than its lease)")

    def set(self, fields: dict[str, Any]) -> None:
        self.meta.update_one(self._mine(), {"$set": fields})
        self.state.update(fields)

    def give_back(self) -> None:
        self.meta.update_one(self._mine(), {"$set": {"holder": None, "until": None}})


def _until() -> dt.datetime:
    return utcnow() + dt.timedelta(seconds=LEASE_S)


# -- the Worker's roller --------------------------------------------------------------------


class Roller:
    """Rolls up a worker's queues every ``ROLL_EVERY_S`` on a thread of its own (a long first
    roll must not hold back the heartbeat's lease extensions): ``kick()`` from a clock."""

    def __init__(self, queues: Iterable[QueueBase]) -> None:
        self.queues = list(queues)
        self._thread: threading.Thread | None = None

    def kick(self) -> None:
        """Start a pass over the queues unless one is still running."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._run, name="mjq-metrics", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for queue in self.queues:
            try:
                roll(queue, every=ROLL_EVERY_S * 0.9, wait=0)
            except Exception as exc:  # a failed pass waits for the next one
                log.warning("rolling up metrics of %s: %s: %s", queue.name, type(exc).__name__, exc)
