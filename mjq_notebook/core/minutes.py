"""What a queue did minute by minute, counted from its documents: the rollups' source.

``count(ring, history, attempts, lo, hi)`` reads what happened from ``lo`` up to ``hi`` (range
reads, none of which grows with what came before ``lo`` or after ``hi``) and returns one
``Minute`` per UTC minute; ``windows`` counts a long stretch one ``WINDOW`` at a time, each
minute as one pass over the whole stretch counts it (what is counted in a minute is found by
that minute's time: a job created in one window and finished in another is created in the
first, done in the second):

- ``done``, ``failed``, ``cancelled``: history rows by status, in the minute of ``ts.done``;
  the ``wait`` (``ts.started - ts.created``) and ``run`` (``ts.done - ts.started``) of each
  done or failed row go into that minute's sketches (a cancelled job never started). For a
  job that was retried, ``started`` is its last attempt's, so its wait includes the earlier
  attempts and their back-off: how long it waited for the run that finished it.
- ``created``: jobs (ring and history, each once) by ``ts.created``.
- ``started``: attempts by their start, each once: the ended attempts' records
  (``<queue>.attempts``), the attempts running now (ring) and the last attempt of each
  history row (pymjq's attempts have no record), told apart by (job, start time). A claim
  handed back unused (``release``, a stopping worker) leaves no trace and is not counted.
- ``retried``: attempts that ended ``failed`` or ``lost`` and were followed by another, in the
  minute they ended: every such record except the one that is its job's final failure (the
  job in history as failed with that many attempts). A failed job requeued later
  (``q.retry``) turns its last failure into a retry if that minute is rolled again (the
  requeue notes it: ``note_late``).

The ring is read by id (``ID_SLACK`` either side of the minutes read) and its working jobs by
status; a job whose times lie further from its id's (another program's clock) is read once
per long pass (``strays``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from pymongo.errors import PyMongoError

from .job import Status
from .sketch import Sketch

if TYPE_CHECKING:
    from pymongo.collection import Collection

log = logging.getLogger("mjq_notebook")

MINUTE = dt.timedelta(minutes=1)
COUNTS = ("created", "started", "done", "failed", "cancelled", "retried")
# jobs' ids carry their creation second (the publisher's clock, as ts.created): the ring is
# read from lo less this, so a job whose id was made a little before its ts.created is seen
ID_SLACK = dt.timedelta(minutes=1)
STATE_ID = "metrics"  # the rollups' state in <queue>.meta: their lease, how far rolled
LATE_FROM = "late_from"  # in it: the oldest minute a late write changed, for the next pass
LATE = dt.timedelta(minutes=5)  # a write this far behind its ts.done is noted (note_late)
WINDOW = dt.timedelta(hours=1)  # a long pass counts and writes this much at a time
_LOOKUP = 100  # ids per $in (SecantusDB takes a long $in in more than linear time)
_RETRIED = ("failed", "lost")
_OUTCOMES = (Status.DONE.value, Status.FAILED.value, Status.CANCELLED.value)


def floor(when: dt.datetime) -> dt.datetime:
    """The UTC minute ``when`` falls in (naive datetimes are taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).replace(second=0, microsecond=0)


@dataclass
class Minute:
    """One minute's counts and sketches."""

    created: int = 0
    started: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    retried: int = 0
    wait: Sketch = field(default_factory=Sketch)
    run: Sketch = field(default_factory=Sketch)

    def empty(self) -> bool:
        return not any(getattr(self, name) for name in COUNTS) and not self.wait.count

    def fields(self) -> dict[str, Any]:
        """The stored fields (``metrics.py`` adds ``_id``, ``at``, ``rolled_at``...)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in COUNTS}
        out["wait"], out["run"] = self.wait.to_doc(), self.run.to_doc()
        return out


def count(
    ring: Collection,
    history: Collection,
    attempts: Collection,
    lo: dt.datetime,
    hi: dt.datetime | None = None,
    *,
    first: dt.datetime | None = None,
    strays: Iterable[tuple[Any, Any]] = (),
) -> dict[dt.datetime, Minute]:
    """The minutes from ``lo`` (a minute) up to ``hi`` (None: on to now), as the documents
    say now: only minutes with something in them.

    ``first``: the first minute of the pass this window belongs to (default ``lo``): a
    window counts what one pass from ``first`` would count in its minutes, so a pass in
    windows (``windows``) writes the same minutes as one pass. ``strays``: the ring's jobs
    such a pass reads apart (``strays()``). Memory: the ids of the jobs created and of the
    attempts started in the window, not those of the pass."""
    first = lo if first is None else first
    minutes: dict[dt.datetime, Minute] = defaultdict(Minute)
    created: dict[dt.datetime, set[Any]] = defaultdict(set)
    started: dict[dt.datetime, set[tuple[Any, dt.datetime]]] = defaultdict(set)

    def inside(when: dt.datetime) -> bool:
        return when >= lo and (hi is None or when < hi)

    def note(job_id: Any, ts: Any) -> None:
        ts = ts if isinstance(ts, Mapping) else {}
        made, began = _time(ts.get("created")), _time(ts.get("started"))
        if made is not None and inside(made):
            created[floor(made)].add(job_id)
        if began is not None and inside(began):
            started[floor(began)].add((job_id, began))

    for doc in history.find({"ts.done": _window(lo, hi)}, {"status": 1, "ts": 1}):
        note(doc["_id"], doc.get("ts"))
        _finish(minutes, doc, lo)
    # finished outside the window (after it, or before it within the pass: clocks), created
    # or started in it: one pass read them by ts.done, a window reads them by those times
    for by in ("ts.created", "ts.started"):
        for done in _outside("ts.done", lo, hi, first):
            for doc in history.find({by: _window(lo, hi), **done}, {"ts": 1}):
                note(doc["_id"], doc.get("ts"))
    fields = {"job": 1, "attempt": 1, "started": 1, "ended": 1, "outcome": 1}
    failures: list[tuple[Any, int, dt.datetime]] = []
    for doc in attempts.find({"kind": "attempt", "ended": _window(lo, hi)}, fields):
        began, ended = _time(doc.get("started")), _time(doc.get("ended"))
        if began is not None and inside(began):
            started[floor(began)].add((doc.get("job"), began))
        if doc.get("outcome") in _RETRIED and ended is not None:
            failures.append((doc.get("job"), int(doc.get("attempt") or 0), floor(ended)))
    for ended_outside in _outside("ended", lo, hi, first):
        began_in = {"kind": "attempt", "started": _window(lo, hi), **ended_outside}
        for doc in attempts.find(began_in, {"job": 1, "started": 1}):
            began = _time(doc["started"])  # in the window: a time
            started[floor(began)].add((doc.get("job"), began))  # type: ignore[arg-type]
    final = _final_failures(history, {job for job, _, _ in failures}, first)
    for job, attempt, minute in failures:
        if (job, attempt) not in final:
            minutes[minute].retried += 1
    for doc in _ring(ring, lo, hi):
        note(doc["_id"], doc.get("ts"))
    for job_id, ts in strays:
        note(job_id, ts)
    for minute, ids in created.items():
        minutes[minute].created = len(ids)
    for minute, pairs in started.items():
        minutes[minute].started = len(pairs)
    return dict(minutes)


def windows(
    ring: Collection,
    history: Collection,
    attempts: Collection,
    lo: dt.datetime,
    until: dt.datetime,
    first: dt.datetime | None = None,
    stands: Collection | None = None,
) -> Iterator[tuple[dt.datetime, dt.datetime | None, dict[dt.datetime, Minute]]]:
    """``count`` from ``lo`` in windows of ``WINDOW``, oldest first, as ``(lo, hi, minutes)``;
    the last one, from the window that reaches ``until`` on, is open (``hi`` None). Each is
    read only when asked for, so a caller writes one before the next is read: memory holds
    one window's ids, whatever the pass's length. ``first``: the pass's first minute, if it
    began before ``lo`` (it stopped, and goes on from ``lo``). ``stands``: the minute
    documents; a window holding one is read even if nothing else is in it (it is rewritten)."""
    first = lo if first is None else min(first, lo)
    extra = strays(ring, first) if lo + WINDOW <= until else []
    low = lo
    while low + WINDOW <= until:
        high = low + WINDOW
        found = count(ring, history, attempts, low, high, first=first, strays=extra)
        yield low, high, found
        low = high
        if not found:  # skip to the window of the next event, keeping the alignment (a
            # pymjq job of 2016 and one of today are a few windows apart, not 90,000)
            nxt = _next_event(ring, history, attempts, stands, low, extra)
            ahead = (min(nxt, until) if nxt is not None else until) - low
            low += max(ahead, dt.timedelta(0)) // WINDOW * WINDOW
    yield low, None, count(ring, history, attempts, low, first=first, strays=extra)


_EVENTS = (("history", "ts.done"), ("history", "ts.created"), ("history", "ts.started"),
           ("attempts", "ended"), ("attempts", "started"), ("stands", "at"))  # fmt: skip


def _next_event(
    ring: Collection,
    history: Collection,
    attempts: Collection,
    stands: Collection | None,
    since: dt.datetime,
    strays: Iterable[tuple[Any, Any]],
) -> dt.datetime | None:
    """The earliest time from ``since`` on at which a window would count something (or a
    minute document stands, in ``stands``, that a window would rewrite); None if none. One
    indexed find per field (the window indexes), the ring by id and its working jobs."""
    found: list[dt.datetime] = []
    where = {"history": history, "attempts": attempts, "stands": stands}
    for name, path in _EVENTS:
        collection = where[name]
        if collection is None:
            continue
        doc = collection.find_one({path: {"$gte": since}}, {path: 1}, sort=[(path, 1)])
        value: Any = doc
        for key in path.split("."):
            value = value.get(key) if isinstance(value, Mapping) else None
        if _time(value) is not None:
            found.append(_time(value))  # type: ignore[arg-type]  # not None, checked
    after = {"_id": {"$gte": ObjectId.from_datetime(since - ID_SLACK)}}
    earliest = ring.find_one(after, {"_id": 1}, sort=[("_id", 1)])
    if earliest is not None and isinstance(earliest["_id"], ObjectId):
        found.append(max(since, earliest["_id"].generation_time - ID_SLACK))
    working = ring.find({"status": Status.WORKING.value}, {"ts": 1})
    for ts in [*(doc.get("ts") for doc in working), *(ts for _, ts in strays)]:
        ts = ts if isinstance(ts, Mapping) else {}
        found.extend(t for t in map(_time, ts.values()) if t is not None and t >= since)
    return min(found) if found else None


def strays(ring: Collection, first: dt.datetime) -> list[tuple[Any, Any]]:
    """The ring's jobs one pass from ``first`` reads (``_ring``) whose creation or start is
    more than ``ID_SLACK`` away from their id's time (another program's clock or local
    times, an attempt long after the job's publication that no record holds): a window
    reads the ring by id, so a pass in windows reads these once, first. Working jobs are
    read by every window."""
    out = []
    for doc in ring.find({"_id": {"$gte": ObjectId.from_datetime(first - ID_SLACK)}}, {"ts": 1}):
        ts = doc.get("ts") if isinstance(doc.get("ts"), Mapping) else {}
        times = [_time(ts.get(name)) for name in ("created", "started")]
        if any(when is not None and not _near(doc["_id"], floor(when)) for when in times):
            out.append((doc["_id"], ts))
    return out


def _near(job_id: Any, minute: dt.datetime) -> bool:
    """Whether a window holding ``minute`` reads ``job_id`` from the ring (``_ring``)."""
    low = ObjectId.from_datetime(minute - ID_SLACK)
    return isinstance(job_id, ObjectId) and low <= job_id < ObjectId.from_datetime(
        minute + MINUTE + ID_SLACK
    )


def note_late(ring: Collection, done: Iterable[Any], now: dt.datetime) -> None:
    """Say in the rollups' state (``<queue>.meta`` beside ``ring``) that history changed
    only ``now`` in the minutes of ``done`` (``ts.done`` times): if one is ``LATE`` or more
    behind, the next pass rolls again from its minute (its trailing ``TRAIL`` might not
    reach it). For writes other than a finish's own (the sweep copying other programs'
    finishes, a requeue taking a failure back): one update, and only for late ones."""
    times = [when for when in map(_time, done) if when is not None and when <= now - LATE]
    if not times:
        return
    meta = ring.database[f"{ring.name}.meta"]
    try:  # the write it follows is done: a failed note costs a recount, not that write
        meta.update_one({"_id": STATE_ID}, {"$min": {LATE_FROM: floor(min(times))}})
    except PyMongoError as exc:
        log.warning("%s: the rollups miss a late change until a rebuild: %s", ring.name, exc)


def _window(lo: dt.datetime, hi: dt.datetime | None) -> dict[str, Any]:
    return {"$gte": lo} if hi is None else {"$gte": lo, "$lt": hi}


def _outside(
    field: str, lo: dt.datetime, hi: dt.datetime | None, first: dt.datetime
) -> list[dict[str, Any]]:
    """Filters on ``field`` for the times from ``first`` on that are not in [lo, hi): one per
    range (an ``$or`` of them, or a hint, makes some servers (SecantusDB) scan the index)."""
    before = [{field: {"$gte": first, "$lt": lo}}] if first < lo else []
    return before + ([{field: {"$gte": hi}}] if hi is not None else [])


def _final_failures(history: Collection, jobs: set[Any], first: dt.datetime) -> set[Any]:
    """(job, attempts) of those of ``jobs`` in history as failed for good (since ``first``):
    their last failure ended the job, it was no retry."""
    final, ids = set(), list(jobs)
    failed = {"status": Status.FAILED.value, "ts.done": {"$gte": first}}
    for i in range(0, len(ids), _LOOKUP):
        batch = {"_id": {"$in": ids[i : i + _LOOKUP]}, **failed}
        for doc in history.find(batch, {"attempts": 1}):
            final.add((doc["_id"], int(doc.get("attempts") or 0)))
    return final


def _ring(ring: Collection, lo: dt.datetime, hi: dt.datetime | None) -> Iterable[Mapping[str, Any]]:
    """The ring's jobs published around [lo, hi) (by id, ``ID_SLACK`` either side) and those
    working now (ids and times)."""
    projection = {"ts": 1}
    ids = {"$gte": ObjectId.from_datetime(lo - ID_SLACK)}
    if hi is not None:
        ids["$lt"] = ObjectId.from_datetime(hi + ID_SLACK)
    seen = set()
    for doc in ring.find({"_id": ids}, projection):
        seen.add(doc["_id"])
        yield doc
    for doc in ring.find({"status": Status.WORKING.value}, projection):
        if doc["_id"] not in seen:
            yield doc


def _finish(minutes: dict[dt.datetime, Minute], doc: Mapping[str, Any], lo: dt.datetime) -> None:
    ts = doc.get("ts") if isinstance(doc.get("ts"), Mapping) else {}
    done = _time(ts.get("done"))  # type: ignore[union-attr]  # a Mapping, checked above
    status = doc.get("status")
    if done is None or done < lo or status not in _OUTCOMES:
        return
    minute = minutes[floor(done)]
    setattr(minute, status, getattr(minute, status) + 1)
    if status == Status.CANCELLED.value:
        return
    made, began = _time(ts.get("created")), _time(ts.get("started"))  # type: ignore[union-attr]
    if began is not None:
        if made is not None:
            minute.wait.add((began - made).total_seconds())
        minute.run.add((done - began).total_seconds())


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.timezone.utc)
