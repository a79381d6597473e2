"""What a queue did minute by minute, counted from its documents: the rollups' source.

``count(ring, history, attempts, lo)`` reads what happened from ``lo`` on (three range reads,
none of which grows with what came before ``lo``) and returns one ``Minute`` per UTC minute:

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
  (``q.retry``) turns its last failure into a retry if that minute is rolled again.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bson import ObjectId

from .job import Status
from .sketch import Sketch

if TYPE_CHECKING:
    from pymongo.collection import Collection

MINUTE = dt.timedelta(minutes=1)
COUNTS = ("created", "started", "done", "failed", "cancelled", "retried")
# jobs' ids carry their creation second (the publisher's clock, as ts.created): the ring is
# read from lo less this, so a job whose id was made a little before its ts.created is seen
ID_SLACK = dt.timedelta(minutes=1)
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
    ring: Collection, history: Collection, attempts: Collection, lo: dt.datetime
) -> dict[dt.datetime, Minute]:
    """The minutes from ``lo`` (a minute) on, as the documents say now: only minutes with
    something in them."""
    minutes: dict[dt.datetime, Minute] = defaultdict(Minute)
    created: dict[dt.datetime, set[Any]] = defaultdict(set)
    started: dict[dt.datetime, set[tuple[Any, dt.datetime]]] = defaultdict(set)
    final_failures: set[tuple[Any, int]] = set()

    def note(job_id: Any, ts: Any) -> None:
        ts = ts if isinstance(ts, Mapping) else {}
        made, began = _time(ts.get("created")), _time(ts.get("started"))
        if made is not None and made >= lo:
            created[floor(made)].add(job_id)
        if began is not None and began >= lo:
            started[floor(began)].add((job_id, began))

    projection = {"status": 1, "ts": 1, "attempts": 1}
    for doc in history.find({"ts.done": {"$gte": lo}}, projection):
        note(doc["_id"], doc.get("ts"))
        _finish(minutes, doc, lo)
        if doc.get("status") == Status.FAILED.value:
            final_failures.add((doc["_id"], int(doc.get("attempts") or 0)))
    since_id = ObjectId.from_datetime(lo - ID_SLACK)
    for doc in _ring(ring, since_id):
        note(doc["_id"], doc.get("ts"))
    ended_since = {"kind": "attempt", "ended": {"$gte": lo}}
    fields = {"job": 1, "attempt": 1, "started": 1, "ended": 1, "outcome": 1}
    for doc in attempts.find(ended_since, fields):
        began, ended = _time(doc.get("started")), _time(doc.get("ended"))
        if began is not None and began >= lo:
            started[floor(began)].add((doc.get("job"), began))
        last = (doc.get("job"), int(doc.get("attempt") or 0)) in final_failures
        if doc.get("outcome") in _RETRIED and ended is not None and not last:
            minutes[floor(ended)].retried += 1
    for minute, ids in created.items():
        minutes[minute].created = len(ids)
    for minute, pairs in started.items():
        minutes[minute].started = len(pairs)
    return dict(minutes)


def _ring(ring: Collection, since_id: ObjectId) -> Iterable[Mapping[str, Any]]:
    """The ring's jobs published since ``since_id`` and those working now (ids and times)."""
    projection = {"ts": 1}
    seen = set()
    for doc in ring.find({"_id": {"$gte": since_id}}, projection):
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
