"""The read side of a queue: counts by status, the newest jobs, one job by id.

Finished jobs leave the ring for history (``sweep.py``), so every read merges the two; a job
in both shows once, in its latest state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pymongo import DESCENDING

from ...errors import DataLossWarning, warn_at_caller
from ..job import FINISHED, IN_HISTORY, PUBLISHED_BY_US, STATUSES, Job, JobList, Status, id_order
from ..names import COUNTERS_ID

if TYPE_CHECKING:
    from pymongo.collection import Collection


# the ring's jobs by status, published by us or not, and finished by us (so in history) or not
BY_STATUS = {
    "_id": {
        "status": "$status",
        "ours": PUBLISHED_BY_US,
        "marked": {"$eq": [f"${IN_HISTORY}", True]},
    },
    "n": {"$sum": 1},
}


class Reads:
    """Reads one queue's ring, history and counters together."""

    def __init__(self, queue: Collection, history: Collection, meta: Collection) -> None:
        self.queue, self.history, self.meta = queue, history, meta
        self.lost_reported = 0  # the ``lost`` count last warned about

    def counts(self, *, warn: bool = True) -> dict[str, int]:
        """Jobs per status, plus ``lost`` (see ``JobQueue.counts``).

        Finished jobs are counted from history, and from the ring those another program
        finished that are not in history yet: each job once. The ring holds few of them
        once swept (``sweep.py``), so their ids are read and looked up in history by
        ``_id``; when only other programs consume, up to the ring's size.
        """
        counts = dict.fromkeys(STATUSES, 0)
        found_ours = 0  # jobs we published found in the ring, in history or pruned
        # The publish counter first (it is written after the jobs): every job it counts is
        # then in the ring, in history, or lost. Read last, a publish in between looked lost.
        counters = self.meta.find_one({"_id": COUNTERS_ID}, {"published": 1}) or {}
        published = int(counters.get("published", 0))
        # The queue before history: a job finishing in between is then counted twice
        # (harmless), never zero times (which would look like a loss). Finishes we wrote
        # went to history first (IN_HISTORY): counted there, or as pruned.
        others_finished = 0
        for row in self.queue.aggregate([{"$group": BY_STATUS}]):
            status, ours, marked = (row["_id"].get(key) for key in ("status", "ours", "marked"))
            if status not in FINISHED:
                if status in counts:  # else none, or not ours to count: not a job's
                    counts[status] += row["n"]
                found_ours += row["n"] if ours else 0
            elif not marked:
                others_finished += row["n"]
        if others_finished:  # finished by others: two more reads, whatever their number
            found_ours += self._count_others_finished(counts)
        # History holds only finished jobs: its size (collection metadata) less the failed
        # and cancelled ones (index ranges) is the done ones, at a cost that does not grow
        # with history.
        in_history_total = self.history.estimated_document_count()
        for status in (Status.FAILED.value, Status.CANCELLED.value):
            counts[status] += (n := self.history.count_documents({"status": status}))
            counts[Status.DONE.value] -= n
        counts[Status.DONE.value] += in_history_total
        # Jobs pruned from history (retention.py) finished too. Read after history: a prune
        # counts a batch before it deletes it, so a row gone from history is counted here.
        counters = self.meta.find_one({"_id": COUNTERS_ID}, {"pruned": 1}) or {}
        found_ours += in_history_total + int(counters.get("pruned", 0))
        # Jobs other programs published count in history too, so they make lost read low,
        # never high.
        lost = max(0, published - found_ours)
        counts["lost"] = lost
        if warn and lost > self.lost_reported:
            self.lost_reported = lost
            where = f"{self.queue.database.name}.{self.queue.name}"
            warn_at_caller(
                f"{lost} job(s) in {where} were evicted from the capped collection before "
                "they finished: it is too small for the backlog (q.resize() grows it)",
                DataLossWarning,
            )
        return counts

    def _count_others_finished(self, counts: dict[str, int]) -> int:
        """Count by status the finished jobs in the ring that history lacks (finished by
        another program, not swept yet); return how many of them we published."""
        ours = 0
        finished = {"status": {"$in": list(FINISHED)}}  # an index range: few once swept
        found = self.queue.find(finished, {"status": 1, "max_attempts": 1, IN_HISTORY: 1})
        ring = {doc["_id"]: doc for doc in found if doc.get(IN_HISTORY) is not True}
        swept = self.history.find({"_id": {"$in": list(ring)}}, {"_id": 1})
        in_history = {doc["_id"] for doc in swept}
        for job_id, doc in ring.items():
            if job_id not in in_history:
                counts[doc["status"]] += 1
                ours += "max_attempts" in doc
        return ours

    def jobs(self, status: str | None, limit: int, query: Mapping[str, Any] | None) -> JobList:
        """The newest ``limit`` jobs, newest first, of ``status`` and matching ``query``."""
        match = {**(query or {})}
        if status is not None:
            match["status"] = Status(status).value
        found = (
            collection.find(match, sort=[("_id", DESCENDING)], limit=limit)
            for collection in (self.history, self.queue)
        )
        return newest_once(found, limit)

    def get(self, job_id: Any) -> Job | None:
        """The job's current document: from the queue, else from history."""
        doc = self.queue.find_one({"_id": job_id}) or self.history.find_one({"_id": job_id})
        return None if doc is None else Job(doc)


def newest_once(found: Iterable[Iterable[dict[str, Any]]], limit: int) -> JobList:
    """The newest ``limit`` jobs of ``found`` (history's documents first, then the ring's),
    newest first, each once in its latest state: the copy with more attempts, else history's
    (the final one)."""
    latest: dict[Any, dict[str, Any]] = {}
    for docs in found:
        for doc in docs:
            held = latest.get(doc["_id"])
            if held is None or _attempts(doc) > _attempts(held):
                latest[doc["_id"]] = doc
    newest = sorted(latest, key=id_order, reverse=True)[:limit]
    return JobList(Job(latest[job_id]) for job_id in newest)


def _attempts(doc: Mapping[str, Any]) -> int:
    return int(doc.get("attempts") or 0)
