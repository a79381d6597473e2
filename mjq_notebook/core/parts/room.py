"""Room in the ring: whether a publish fits without evicting unfinished jobs; growing the ring.

A capped collection makes room for an insert by evicting its oldest documents, in insertion
order, whatever their status. The sweep (``sweep.py``) keeps finished jobs out of the ring, so
it holds the unfinished backlog plus its newest document: an insert past its size or its
maximum count evicts waiting or working jobs. A publish refuses that (``PublishError``, nothing
written) unless it is told to evict (a lossy ring, on purpose).

The check costs one metadata read (``collStats``) and only when that says the jobs would not
fit, a sweep and a walk of the ring in insertion order. The read is skipped while this object
publishes no more than ``HEADROOM`` of the room a read found less than ``CHECK_EVERY_S`` ago:
what other processes publish is seen within that time, and only a burst of theirs that fills
the other part of that room within it could evict unnoticed (``counts()`` still reports it as
``lost``). Near a full ring every publish reads.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import bson
from pymongo.errors import OperationFailure

from ...errors import JobQueueError, PublishError
from ...text import format_bytes, jobs_text
from ..job import FINISHED
from ..outage import failure_reason

if TYPE_CHECKING:
    from pymongo.collection import Collection

    from .sweep import Sweeper

CHECK_EVERY_S = 1.0  # a read of the ring's use is trusted this long...
HEADROOM = 0.5  # ...for this share of the room it found

_WHAT_TO_DO = (
    "grow the ring (q.resize(size_bytes=..., max_jobs=...) or `mjq resize`), publish fewer or "
    "smaller jobs, or allow evicting them (pub(..., evict=True), `mjq pub --evict`)"
)


@dataclass(frozen=True)
class Limits:
    """What a ring holds at most: ``size_bytes`` of documents and ``max_jobs`` (None: any
    number) documents, as the server has them."""

    size_bytes: int
    max_jobs: int | None

    def fit(self, jobs: int, size: float, share: float = 1.0) -> bool:
        """Whether ``jobs`` documents of ``size`` bytes in all fit in ``share`` of the ring."""
        return size <= self.size_bytes * share and (
            self.max_jobs is None or jobs <= self.max_jobs * share
        )

    def __str__(self) -> str:
        jobs = "any number of jobs" if self.max_jobs is None else f"{self.max_jobs:,} jobs"
        return f"{format_bytes(self.size_bytes)} and {jobs}"


def use_of(collection: Collection) -> tuple[Limits, int, int]:
    """The ring's limits, and the documents and bytes in it now: collection metadata on a real
    server, in one ``collStats`` (``$collStats`` where a server has dropped that deprecated
    command); the limits from the collection's options where the reply lacks them."""
    try:
        stats = collection.database.command("collStats", collection.name)
    except OperationFailure as exc:
        if exc.code != 59:  # CommandNotFound
            raise
        [row] = collection.aggregate([{"$collStats": {"storageStats": {}}}])
        stats = row["storageStats"]
    if stats.get("maxSize"):
        limits = Limits(int(stats["maxSize"]), int(stats.get("max") or 0) or None)
    else:
        limits = limits_of(collection)
    return limits, int(stats.get("count") or 0), int(stats.get("size") or 0)


def limits_of(collection: Collection) -> Limits:
    """The ring's limits as the server has them now (its collection options)."""
    options = collection.options()
    return Limits(int(options.get("size") or 0), int(options.get("max") or 0) or None)


class Room:
    """Checks that publishes into one ring evict no unfinished job (see the module's notes)."""

    def __init__(self, collection: Collection, sweeper: Sweeper) -> None:
        self.collection = collection
        self.sweeper = sweeper
        self._limits: Limits | None = None
        self._limits_until = -float("inf")  # monotonic time until which _limits are trusted
        # what this object may still publish without reading (HEADROOM of the room the last
        # read found), until the monotonic time _until
        self._spare_jobs = self._spare_bytes = 0.0
        self._until = -float("inf")

    def limits(self) -> Limits:
        """The ring's limits, read from the server at most every ``CHECK_EVERY_S``."""
        if self._limits is None or time.monotonic() >= self._limits_until:
            self._limits = limits_of(self.collection)
            self._limits_until = time.monotonic() + CHECK_EVERY_S
        return self._limits

    def forget(self) -> None:
        """Read the limits and the use afresh next time (after a resize, or a publish that
        was not checked)."""
        self._limits, self._until = None, -float("inf")
        self._limits_until = self._until

    def check(self, docs: Sequence[dict[str, Any]]) -> None:
        """Return when ``docs`` fit in the ring beside its unfinished jobs; else PublishError
        with the numbers, before anything is written."""
        jobs, size = len(docs), sum(len(bson.encode(doc)) for doc in docs)
        if (
            time.monotonic() < self._until
            and jobs <= self._spare_jobs
            and size <= self._spare_bytes
        ):
            self._spare_jobs -= jobs  # plenty of room a moment ago: no read
            self._spare_bytes -= size
            return
        limits, used_jobs, used_bytes = use_of(self.collection)
        if not limits.fit(used_jobs + jobs, used_bytes + size):
            self.sweeper.sweep()  # finished jobs leave first; then look at what is left
            used_jobs, used_bytes = self._check_closely(limits, jobs, size)
        free_jobs = float("inf") if limits.max_jobs is None else limits.max_jobs - used_jobs
        self._spare_jobs = (free_jobs - jobs) * HEADROOM
        self._spare_bytes = (limits.size_bytes - used_bytes - size) * HEADROOM
        self._until = self._limits_until = time.monotonic() + CHECK_EVERY_S
        self._limits = limits

    def _check_closely(self, limits: Limits, jobs: int, size: int) -> tuple[int, int]:
        """Walk the ring oldest first, as eviction would, and refuse when it would reach an
        unfinished job; returns the ring's use. A server that can't size documents in an
        aggregation (``$bsonSize``, MongoDB 4.4+) has every document counted as unfinished."""
        ring = self._walk()
        if ring is None:
            _, used_jobs, used_bytes = use_of(self.collection)
            ring = [(False, used_bytes / max(used_jobs, 1))] * used_jobs
        kept, kept_bytes = len(ring), sum(doc_size for _, doc_size in ring)
        for finished, doc_size in ring:  # evicted oldest first, until the new jobs fit
            if limits.fit(kept + jobs, kept_bytes + size):
                break
            if not finished:
                self._refuse(limits, ring, jobs, size)
            kept, kept_bytes = kept - 1, kept_bytes - doc_size
        if not limits.fit(kept + jobs, kept_bytes + size):  # they would evict each other
            self._refuse(limits, ring, jobs, size)
        return len(ring), int(sum(doc_size for _, doc_size in ring))

    def _walk(self) -> list[tuple[bool, float]] | None:
        """(finished, BSON size) of every document in the ring, in insertion order (a pipeline
        with no match or sort scans the collection: in its natural order, on a capped one);
        None when the server can't tell sizes."""
        pipeline = [
            {
                "$project": {
                    "_id": 0,
                    "f": {"$in": ["$status", list(FINISHED)]},
                    "b": {"$bsonSize": "$$ROOT"},
                }
            }
        ]
        try:
            rows = self.collection.aggregate(pipeline)
            return [(bool(row["f"]), float(row["b"])) for row in rows]
        except OperationFailure:
            return None

    def _refuse(self, limits: Limits, ring: list[tuple[bool, float]], jobs: int, size: int) -> None:
        unfinished = [doc_size for finished, doc_size in ring if not finished]
        total_jobs, total_bytes = len(ring) + jobs, sum(s for _, s in ring) + size
        over = []  # what eviction would have to bring down: one of them at least
        if limits.max_jobs is not None and total_jobs > limits.max_jobs:
            over.append(f"{total_jobs:,} jobs are over its {limits.max_jobs:,}")
        if total_bytes > limits.size_bytes:
            held, most = format_bytes(total_bytes), format_bytes(limits.size_bytes)
            over.append(f"{held} is over its {most}")
        where = f"{self.collection.database.name}.{self.collection.name}"
        raise PublishError(
            f"publishing {jobs_text(jobs)} ({format_bytes(size)}) into {where} would evict "
            f"unfinished jobs, oldest first: its ring holds at most {limits}, and it holds "
            f"{len(unfinished):,} unfinished ({format_bytes(sum(unfinished))}) and "
            f"{len(ring) - len(unfinished):,} finished, so with the new ones "
            f"{' and '.join(over)}; nothing was written. To publish: {_WHAT_TO_DO}"
        )


def resize(collection: Collection, size_bytes: int | None, max_jobs: int | None) -> Limits:
    """Grow (or shrink, not below what it holds) the ring in place with ``collMod``
    (MongoDB 6.0+); the limits as read back. JobQueueError when the server refuses or does
    not apply it, saying what to do instead."""
    if size_bytes is None and max_jobs is None:
        raise ValueError("resize needs size_bytes, max_jobs or both")
    for name, value in (("size_bytes", size_bytes), ("max_jobs", max_jobs)):
        if value is not None and (isinstance(value, bool) or int(value) < 1):
            raise ValueError(f"{name} must be 1 or more, not {value!r}")
    where = f"{collection.database.name}.{collection.name}"
    before = limits_of(collection)  # as read back after: both from the options
    _, jobs, used = use_of(collection)
    if (size_bytes is not None and size_bytes < used) or (max_jobs is not None and max_jobs < jobs):
        raise JobQueueError(
            f"{where} holds {jobs:,} jobs ({format_bytes(used)}) now: it can't shrink below that "
            "(finish or cancel jobs first); nothing was changed"
        )
    change: dict[str, Any] = {"cappedSize": size_bytes} if size_bytes is not None else {}
    change |= {"cappedMax": max_jobs} if max_jobs is not None else {}
    if not collection.write_concern.is_server_default:  # the queue's, as for its other writes
        change["writeConcern"] = collection.write_concern.document
    try:
        collection.database.command("collMod", collection.name, **change)
    except OperationFailure as exc:
        raise JobQueueError(
            f"the server refused to resize {where} ({failure_reason(exc)}): {_RESIZE_INSTEAD}"
        ) from None
    after = limits_of(collection)
    if not (_took(size_bytes, before.size_bytes, after.size_bytes)
            and _took(max_jobs, before.max_jobs, after.max_jobs)):  # fmt: skip
        raise JobQueueError(
            f"the server answered the resize of {where} but did not apply it (it still holds "
            f"at most {after}): it can't resize a capped collection in place (MongoDB 6.0+ "
            f"can); {_RESIZE_INSTEAD}"
        )
    return after


_RESIZE_INSTEAD = (
    "instead, create a queue of the size you want (JobQueue(db, NEW_NAME, size_bytes=..., "
    "max_jobs=...)), publish the waiting jobs' data there, and point publishers and workers "
    "at it"
)


def _took(asked: int | None, before: int | None, after: int | None) -> bool:
    """Whether a limit read back after ``collMod`` is the one asked for (or the server's
    rounding of it: mongod keeps sizes in multiples of 256 bytes)."""
    if asked is None or asked == before:
        return True
    return after is not None and after != before and asked <= after < asked + 4096
