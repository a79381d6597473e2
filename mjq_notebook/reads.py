"""The read side of a queue: counts by status, the newest jobs, one job by id.

Finished jobs leave the ring for history (``sweep.py``), so every read merges the two; a job
in both shows once, in its latest state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from pymongo import DESCENDING

from .errors import DataLossWarning, warn_at_caller
from .job import FINISHED, PUBLISHED_BY_US, STATUSES, Job, JobList, Status

if TYPE_CHECKING:
    from pymongo.collection import Collection


class Reads:
    """Reads one queue's ring, history and counters together."""

    def __init__(self, queue: Collection, history: Collection, meta: Collection) -> None:
        self.queue, self.history, self.meta = queue, history, meta
        self.lost_reported = 0  # the ``lost`` count last warned about

    def counts(self, *, warn: bool = True) -> dict[str, int]:
        """Jobs per status, plus ``lost`` (see ``JobQueue.counts``)."""
        counts = dict.fromkeys(STATUSES, 0)
        unfinished_ours = 0
        # The publish counter first (it is written after the jobs): every job it counts is
        # then in the ring, in history, or lost. Read last, a publish in between looked lost.
        counters = self.meta.find_one({"_id": "counters"}, {"published": 1}) or {}
        published = int(counters.get("published", 0))
        # The queue before history: a job finishing in between is then counted twice
        # (harmless), never zero times (which would look like a loss).
        by_status = {"_id": {"status": "$status", "ours": PUBLISHED_BY_US}, "n": {"$sum": 1}}
        for row in self.queue.aggregate([{"$group": by_status}]):
            status, ours = row["_id"]["status"], row["_id"]["ours"]
            if status in FINISHED and ours:
                continue  # counted from history below
            if status in counts:
                counts[status] += row["n"]
            if ours and status not in FINISHED:
                unfinished_ours += row["n"]
        # History holds only finished jobs: its size (collection metadata) less the failed
        # and cancelled ones (index ranges) is the done ones, at a cost that does not grow
        # with history.
        finished_ours = self.history.estimated_document_count()
        for status in (Status.FAILED.value, Status.CANCELLED.value):
            counts[status] += (n := self.history.count_documents({"status": status}))
            counts[Status.DONE.value] -= n
        counts[Status.DONE.value] += finished_ours
        # Jobs pruned from history (retention.py) finished too. Read after history: a prune
        # counts a batch before it deletes it, so a row gone from history is counted here.
        counters = self.meta.find_one({"_id": "counters"}, {"pruned": 1}) or {}
        finished_ours += int(counters.get("pruned", 0))
        lost = max(0, published - unfinished_ours - finished_ours)
        counts["lost"] = lost
        if warn and lost > self.lost_reported:
            self.lost_reported = lost
            where = f"{self.queue.database.name}.{self.queue.name}"
            warn_at_caller(
                f"{lost} job(s) in {where} were evicted from the capped collection before "
                "they finished: it is too small for the backlog (raise max_jobs/size_bytes)",
                DataLossWarning,
            )
        return counts

    def jobs(self, status: str | None, limit: int, query: Mapping[str, Any] | None) -> JobList:
        """The newest ``limit`` jobs, newest first, of ``status`` and matching ``query``."""
        match = {**(query or {})}
        if status is not None:
            match["status"] = Status(status).value
        latest: dict[Any, dict[str, Any]] = {}
        for collection in (self.history, self.queue):
            for doc in collection.find(match, sort=[("_id", DESCENDING)], limit=limit):
                held = latest.get(doc["_id"])
                if held is None or _attempts(doc) > _attempts(held):
                    latest[doc["_id"]] = doc  # on a tie, history's copy is the final one
        newest = sorted(latest, key=id_order, reverse=True)[:limit]
        return JobList(Job(latest[job_id]) for job_id in newest)

    def get(self, job_id: Any) -> Job | None:
        """The job's current document: from the queue, else from history."""
        doc = self.queue.find_one({"_id": job_id}) or self.history.find_one({"_id": job_id})
        return None if doc is None else Job(doc)


def id_order(value: Any) -> tuple[int, Any]:
    """A sort key for ``_id`` values as MongoDB orders them: by BSON type, then by value
    (numbers < strings < ObjectIds; hand-written jobs may have any of them)."""
    if isinstance(value, ObjectId):
        return 3, value
    if isinstance(value, str):
        return 2, value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return 1, value
    return 0, str(value)


def _attempts(doc: Mapping[str, Any]) -> int:
    return int(doc.get("attempts") or 0)
