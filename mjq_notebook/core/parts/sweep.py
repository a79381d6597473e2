"""The sweep: finished jobs leave the ring once history holds that same finish.

The ring then holds only unfinished jobs, so it evicts a waiting job only when the backlog
outgrows it, and servers that pay per document in a capped collection stay fast as jobs go
through. The newest document stays, done or not: the consumers' tailable wake-up cursors
stand on it, and an empty capped collection can hold none.

Finishes of this package went to history first and say so (``IN_HISTORY``); one whose
history row is gone was pruned (``retention.py``) and is not copied back. A job finished by
another program (pymjq's ``next()`` or iterator, a script) has no history row, or one of an
earlier finish (pymjq overwrites whole documents, also one we just finished): the sweep
copies its document to history as it is, times and all, and only then deletes it from the
ring, on condition that it still is that same finish (``_id``, status, ``ts.done``,
attempts). A document changed in between stays for the next sweep.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Any

from bson.errors import InvalidDocument
from pymongo import DESCENDING
from pymongo.errors import DuplicateKeyError, PyMongoError

from ..job import FINISHED, IN_HISTORY, utcnow
from ..minutes import note_late
from ..retries import retried
from ..wakeup import last_inserted

if TYPE_CHECKING:
    from pymongo.collection import Collection

log = logging.getLogger("mjq_notebook")

SWEEP_EVERY_S = 1.0  # finishing sweeps finished jobs out of the ring at most this often...
SWEEP_AFTER = 50  # ...or after this many finishes by this queue object
BATCH = 500  # finished documents looked at per sweep
FINISH = {"_id": 1, "status": 1, "ts.done": 1, "attempts": 1}  # what makes one finish
# Filters on _id beside null conditions name its index: some servers (SecantusDB) would
# plan them as a scan of the whole collection.
ID_INDEX = "_id_"


class Sweeper:
    """Sweeps one queue's ring after finishes, at most every ``SWEEP_EVERY_S`` or
    ``SWEEP_AFTER`` finishes (read when used, so they can be changed at run time)."""

    def __init__(self, collection: Collection, history: Collection) -> None:
        self.collection, self.history = collection, history
        self.next_at = 0.0  # monotonic time from which the next finish sweeps
        self.finished = 0  # finishes since the last sweep

    def after_finish(self) -> None:
        """Count a finish; sweep when enough have gone by (after it, so no one waits on it)."""
        self.finished += 1
        if self.finished >= SWEEP_AFTER or time.monotonic() >= self.next_at:
            self.sweep()

    def when_idle(self) -> None:
        """Sweep other programs' finishes if the last sweep is ``SWEEP_EVERY_S`` old: a
        consumer with nothing to do moves them to history (one indexed read if none)."""
        if time.monotonic() >= self.next_at:
            self.sweep(others_only=True)

    def sweep(self, *, others_only: bool = False) -> None:
        """Move finished jobs from the ring to history; errors wait for the next sweep."""
        self.next_at = time.monotonic() + SWEEP_EVERY_S
        self.finished = 0
        try:
            self._sweep(others_only)
        except (PyMongoError, InvalidDocument) as exc:  # finished all the same: the next one tries
            log.debug("could not sweep finished jobs from %s: %s", self.collection.name, exc)

    def sweep_all(self, before: dt.datetime) -> None:
        """Sweep every job finished before ``before`` out of the ring, but the newest
        document (kept for the wake-up cursors) and any changed while being swept:
        ``prune_history`` does this first, so history holds every finish it may delete.
        Errors are raised. Bounded: finishes arriving meanwhile can't keep it going."""
        older = {"ts.done": {"$lt": before}}
        passes = self.collection.count_documents(older) // max(BATCH - 2, 1) + 2
        for _ in range(passes):
            if not self._sweep(others_only=False, older=older):
                return  # nothing more could go

    def _sweep(self, others_only: bool, older: dict[str, Any] | None = None) -> int:
        """One batch; how many finished documents it deleted from the ring."""
        finished = {"status": {"$in": list(FINISHED)}, **(older or {})}  # few once swept
        ring = list(self.collection.find(finished, {**FINISH, IN_HISTORY: 1}, limit=BATCH))
        others = [doc for doc in ring if doc.get(IN_HISTORY) is not True]
        if not (others if others_only else ring):
            return 0
        # The last document inserted, and the one with the newest id (the same but for
        # publishers in other processes within a second, or with other clocks).
        newest = self.collection.find_one({}, {"_id": 1}, sort=[("_id", DESCENDING)])
        keep = {doc["_id"] for doc in (last_inserted(self.collection, {"_id": 1}), newest) if doc}
        ring = [doc for doc in ring if doc["_id"] not in keep]
        if not ring:
            return 0
        ids = [doc["_id"] for doc in ring]
        written: list[Any] = []  # the ts.done of history rows written, and replaced
        held = {row["_id"]: row for row in self.history.find({"_id": {"$in": ids}}, FINISH)}
        # ours went to history first: a missing row was pruned since, not to be copied back
        copied = [
            doc
            for doc in ring
            if (doc.get(IN_HISTORY) is True and doc["_id"] not in held)
            or self._in_history(doc, held.get(doc["_id"]), written)
        ]
        note_late(self.collection, written, utcnow())
        if not copied:
            return 0
        each = {"$or": [finish_of(doc) for doc in copied]}
        among = {"$in": [doc["_id"] for doc in copied]}
        deleted = retried(  # safe to repeat: only these very finishes match
            lambda again: self.collection.delete_many({"_id": among, **each}, hint=ID_INDEX),
            "a sweep",
        )
        return deleted.deleted_count

    def _in_history(
        self, finish: dict[str, Any], row: dict[str, Any] | None, written: list[Any]
    ) -> bool:
        """True once history holds ``finish``: copy the ring's document there if it holds
        none or another finish (conditionally on the row read, so a finish written since
        is not overwritten; the finishes' times go to ``written``); False if the document
        changed meanwhile."""
        if row is not None and finish_of(row) == finish_of(finish):
            return True
        doc = self.collection.find_one({"_id": finish["_id"]})
        if doc is None or finish_of(doc) != finish_of(finish):
            return False  # changed (or gone) since it was read: the next sweep looks again
        try:
            if row is None:
                self.history.insert_one(doc)
                written.append(finish_of(doc)["ts.done"])
                return True
            replaced = self.history.replace_one(finish_of(row), doc, hint=ID_INDEX)
            if replaced.matched_count:
                written.extend((finish_of(doc)["ts.done"], finish_of(row)["ts.done"]))
            return replaced.matched_count == 1
        except DuplicateKeyError:
            return False  # a row arrived meanwhile: the next sweep compares it


def finish_of(doc: dict[str, Any]) -> dict[str, Any]:
    """The fields that tell one finish of a job from another, as a filter matching it."""
    ts = doc.get("ts")
    return {
        "_id": doc["_id"],
        "status": doc.get("status"),
        "ts.done": ts.get("done") if isinstance(ts, dict) else None,
        "attempts": doc.get("attempts"),
    }
