"""What a queue's live charts draw, read from the server: jobs created and finished per second
over the last ten minutes, and the wait and run times of the newest finished jobs.

Everything is counted in MongoDB from indexed ranges (``_id`` for creation, ``ts.done`` in
``<queue>.history`` for finishes), so a read costs the same however many jobs went by or
sit in history, and it counts every job finished in the window — also those finished before
a view opened, and never one job twice. Each read counts again only the last SETTLE_S
seconds (jobs are stamped by their clients just before they are written), and the whole span
every RECOUNT_S, so writes stamped long before they land (a big ``pub_many`` on a slow server,
a client's slow clock) are counted within a minute.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from pymongo import DESCENDING

from ..core.job import FINISHED, IN_HISTORY

if TYPE_CHECKING:
    from ..core.queue import JobQueue

SPAN_S = 600  # the charts reach back ten minutes, one count a second
SETTLE_S = 10  # seconds this recent are counted again on each read (writes stamped before)
RECOUNT_S = 60  # and the whole span this often: late writes (a long batch, a slow clock)
LATENCY_JOBS = 1000  # the histogram's newest finished jobs
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Activity:
    """Per-second counts over the SPAN_S seconds before ``end`` (epoch seconds), oldest first,
    and the wait/run seconds of the newest LATENCY_JOBS finished jobs (newest first)."""

    end: int
    created: tuple[int, ...]
    finished: tuple[int, ...]
    wait_s: tuple[float, ...]
    run_s: tuple[float, ...]

    @property
    def total_finished(self) -> int:
        return sum(self.finished)


EMPTY = Activity(0, (0,) * SPAN_S, (0,) * SPAN_S, (), ())


class ActivityReader:
    """Keeps one queue's ``Activity`` current with a few small aggregations per read."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self._created: dict[int, int] = {}  # epoch second -> jobs
        self._finished: dict[int, int] = {}
        self._final_before: int | None = None  # seconds before this one are counted
        self._recount_at = 0.0  # epoch seconds of the next count of the whole span
        self._latency: dict[Any, tuple[Any, float, float]] = {}  # _id -> (done, wait, run)
        self._latency_key: tuple[int, int] | None = None

    def read(self, now: float) -> Activity:
        """Count what happened since the last read (all of the span on the first)."""
        end = int(now) + 1
        start = end - SPAN_S
        since = start
        if self._final_before is not None and now < self._recount_at:
            since = max(start, self._final_before - SETTLE_S)
        else:
            self._recount_at = now + RECOUNT_S
        since_time = _EPOCH + dt.timedelta(seconds=since)
        finished = _per_second(
            self.queue.history_collection, {"ts.done": {"$gte": since_time}}, "$ts.done"
        )
        # Created: unfinished jobs (and pymjq's finishes, until the sweep copies them) from
        # the ring, the finished ones from history, so a job in both counts once. The ring is
        # read first: a job finishing in between counts twice until the next read, never
        # zero times.
        ids = {"_id": {"$gte": ObjectId.from_datetime(since_time)}}
        theirs = {"max_attempts": None, IN_HISTORY: {"$ne": True}}  # finished, no history row
        ring = {**ids, "$or": [{"status": {"$nin": list(FINISHED)}}, theirs]}
        created = _per_second(self.queue.collection, ring, {"$toDate": "$_id"})
        for second, n in _per_second(
            self.queue.history_collection, ids, {"$toDate": "$_id"}
        ).items():
            created[second] = created.get(second, 0) + n
        for bins, fresh in ((self._created, created), (self._finished, finished)):
            for second in [s for s in bins if s < start or s >= since]:
                del bins[second]
            bins.update((s, n) for s, n in fresh.items() if start <= s < end)
        self._final_before = end
        key = (sum(self._finished.values()), max(self._finished, default=0))
        if key != self._latency_key:
            self._latency_key = key
            self._read_latency(whole=since == start)
        newest = sorted(self._latency.values(), key=lambda row: row[0], reverse=True)
        return Activity(
            end=end,
            created=tuple(self._created.get(s, 0) for s in range(start, end)),
            finished=tuple(self._finished.get(s, 0) for s in range(start, end)),
            wait_s=tuple(row[1] for row in newest),
            run_s=tuple(row[2] for row in newest),
        )

    def _read_latency(self, whole: bool) -> None:
        """Wait and run seconds of the newest finished jobs, computed by the server: all
        LATENCY_JOBS of them on a whole recount, else only those finished since the newest
        held (less SETTLE_S, for late writes)."""
        match: dict[str, Any] = {}
        if self._latency and not whole:
            newest = max(row[0] for row in self._latency.values())
            match = {"ts.done": {"$gte": newest - dt.timedelta(seconds=SETTLE_S)}}
        else:
            self._latency.clear()
        rows = self.queue.history_collection.find(
            match,
            {
                "d": "$ts.done",
                "w": {"$subtract": ["$ts.started", "$ts.created"]},
                "r": {"$subtract": ["$ts.done", "$ts.started"]},
            },
            sort=[("ts.done", DESCENDING)],
            limit=LATENCY_JOBS,
        )
        for row in rows:
            if isinstance(row.get("d"), dt.datetime):
                self._latency[row["_id"]] = (row["d"], _seconds(row["w"]), _seconds(row["r"]))
        if len(self._latency) > LATENCY_JOBS:
            keep = sorted(self._latency.items(), key=lambda item: item[1][0], reverse=True)
            self._latency = dict(keep[:LATENCY_JOBS])


def _per_second(collection: Any, match: dict[str, Any], when: Any) -> dict[int, int]:
    """How many documents matching ``match`` fall in each epoch second of ``when``."""
    second = {"$floor": {"$divide": [{"$subtract": [when, _EPOCH]}, 1000]}}
    rows = collection.aggregate([{"$match": match}, {"$group": {"_id": second, "n": {"$sum": 1}}}])
    return {int(row["_id"]): int(row["n"]) for row in rows if row["_id"] is not None}


def _seconds(milliseconds: Any) -> float:
    return milliseconds / 1000 if isinstance(milliseconds, (int, float)) else float("nan")
