"""The rollups' hourly tier: per queue and UTC hour, the merge of that hour's minute documents
in ``<queue>.metrics_hours``, so a long window reads ~60x fewer documents.

An hour document has the minutes' fields: ``_id`` and ``at`` = the hour, the six counts
summed, ``wait`` and ``run`` merged (bucket counts add: exact), ``oldest_wait_s`` the largest
(absent when no minute has one), ``minutes`` (how many minute documents it merges),
``rolled_at`` and ``fence``. It is derived ONLY from the stored minute documents, never from
jobs, so deriving it again gives the same document, and minutes frozen by ``prune_history``
give the same hours. Its TTL index keeps it ``METRICS_DAYS`` days after its last minute's.

The roll pass (``metrics.py``) derives them under its lease and fence: it marks the state's
``hours_from`` before writing minutes, then derives every hour from that minute's on and
clears the mark (``derive``); a pass that stops in between leaves the mark, so readers read
those hours' minutes and the next pass derives them. The state's ``hours`` (``VERSION``) says
every hour has been derived once; until then (a deployment from before hours) readers read
minutes only and the next pass derives every hour from the minutes.

Readers (``span``) use an hour document for each whole hour of their window when no boundary
of the periods they merge into falls inside it, and minute documents for the rest.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING, UpdateOne

from .minutes import COUNTS, floor
from .sketch import Sketch

if TYPE_CHECKING:
    from pymongo.collection import Collection

    from .queue_base import QueueBase

__all__ = ["HOUR", "SUFFIX", "VERSION", "collection", "derive", "floor_hour", "span"]

SUFFIX = ".metrics_hours"
HOUR = dt.timedelta(hours=1)
VERSION = 1  # the state's ``hours`` once every hour was derived from the minutes
BATCH = 168  # hour documents per bulk write: the lease is renewed every week of minutes read
FENCE_FIELDS = ("rolled_at", "fence")

Write = Callable[["Collection", Sequence[UpdateOne]], int]


def collection(queue: QueueBase) -> Collection:
    """``<queue>.metrics_hours``, the hour documents."""
    return queue.db[f"{queue.name}{SUFFIX}"]


def ensure_index(queue: QueueBase, days: int) -> None:
    """The TTL index: an hour goes ``days`` days after its last minute (as that minute)."""
    collection(queue).create_index([("at", ASCENDING)], expireAfterSeconds=days * 86_400 + 3600)


def floor_hour(when: dt.datetime) -> dt.datetime:
    """The UTC hour ``when`` falls in."""
    return floor(when).replace(minute=0)


def derive(
    queue: QueueBase, since: dt.datetime | None, token: int, now: dt.datetime, write: Write
) -> int:
    """Derive again every hour from ``since``'s on (None: every hour) from the stored minute
    documents, read once in ``_id`` order; returns the hour documents written. ``write``
    sends a batch under the roller's lease (``_Fenced`` when a later roller took over)."""
    minutes = queue.db[f"{queue.name}.metrics"]
    # by ``at`` (= ``_id``), through the TTL index: SecantusDB scans for an ``_id`` range
    query = {} if since is None else {"at": {"$gte": floor_hour(since)}}
    hours, ops, written = collection(queue), [], 0
    hour: _Hour | None = None
    for doc in minutes.find(query, batch_size=2000).sort("at", ASCENDING):
        at = floor_hour(doc["_id"])
        if hour is None or at != hour.at:
            if hour is not None:
                ops.append(hour.op(token, now))
            if len(ops) >= BATCH:
                written += write(hours, ops)
                ops = []
            hour = _Hour(at)
        hour.add(doc)
    if hour is not None:
        ops.append(hour.op(token, now))
    return written + write(hours, ops)


def span(
    since: dt.datetime, until: dt.datetime, cuts: Sequence[dt.datetime], state: Mapping[str, Any]
) -> tuple[dt.datetime, dt.datetime] | None:
    """The hours [a, b) of the window [``since``'s minute, ``until``) to read as hour
    documents, or None (minutes only): every whole hour of the window, before a pass's
    pending mark (``state``: the rollups' state document), when every boundary of the periods
    (``cuts``) between a and b is on the hour, and every hour was derived once."""
    if state.get("hours") != VERSION:
        return None
    start = floor(since)
    a = floor_hour(start) + (HOUR if start.minute else dt.timedelta(0))
    b = floor_hour(until)
    pending = state.get("hours_from")
    if isinstance(pending, dt.datetime):
        b = min(b, floor_hour(pending))
    if b <= a:
        return None
    for cut in cuts:
        at = _utc(cut).astimezone(dt.timezone.utc)
        if a < at < b and (at.minute or at.second or at.microsecond):
            return None
    return a, b


class Merged:
    """Rollup documents (minutes or hours) merged: the counts summed, the sketches merged,
    the largest oldest-wait sample. An hour here; a period of ``q.metrics()`` above."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(COUNTS, 0)
        self.wait, self.run = Sketch(), Sketch()
        self.oldest: float | None = None

    def add(self, doc: Mapping[str, Any]) -> None:
        for name in COUNTS:
            self.counts[name] += int(doc.get(name) or 0)
        self.wait.merge_doc(doc.get("wait"))
        self.run.merge_doc(doc.get("run"))
        age = doc.get("oldest_wait_s")
        if age is not None and (self.oldest is None or age > self.oldest):
            self.oldest = float(age)


class _Hour(Merged):
    """One hour's minutes merged."""

    def __init__(self, at: dt.datetime) -> None:
        super().__init__()
        self.at, self.minutes = at, 0

    def add(self, doc: Mapping[str, Any]) -> None:
        self.minutes += 1
        super().add(doc)

    def op(self, token: int, now: dt.datetime) -> UpdateOne:
        fields: dict[str, Any] = dict(self.counts)
        fields.update(wait=self.wait.to_doc(), run=self.run.to_doc(), minutes=self.minutes)
        fields.update(at=self.at, rolled_at=now, fence=token)
        update: dict[str, Any] = {"$set": fields}
        if self.oldest is None:
            update["$unset"] = {"oldest_wait_s": ""}
        else:
            fields["oldest_wait_s"] = self.oldest
        # no newer fence (or none): an upsert that finds a newer one fails on the duplicate
        # _id. ``$not``, not ``$or`` with ``$exists``: SecantusDB scans the collection per
        # update for that ``$or`` (16.8 ms an update among 3,000 documents, 0.28 ms so)
        fence = {"fence": {"$not": {"$gt": token}}}
        return UpdateOne({"_id": self.at, **fence}, update, upsert=True)


def _utc(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)
