"""The sweep: finished jobs leave the ring, since history holds them already.

The ring then holds only unfinished jobs, so it evicts a waiting job only when the backlog
outgrows it, and servers that pay per document in a capped collection stay fast as jobs go
through. The newest document stays, done or not: the consumers' tailable wake-up cursors
stand on it, and an empty capped collection can hold none. pymjq's finished jobs stay too
(they have no history row).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from pymongo import DESCENDING
from pymongo.errors import PyMongoError

from .job import FINISHED
from .retries import retried

if TYPE_CHECKING:
    from pymongo.collection import Collection

log = logging.getLogger("mjq_notebook")

SWEEP_EVERY_S = 1.0  # finishing sweeps finished jobs out of the ring at most this often...
SWEEP_AFTER = 50  # ...or after this many finishes by this queue object


class Sweeper:
    """Sweeps one queue's ring after finishes, at most every ``SWEEP_EVERY_S`` or
    ``SWEEP_AFTER`` finishes (read when used, so they can be changed at run time)."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        self.next_at = 0.0  # monotonic time from which the next finish sweeps
        self.finished = 0  # finishes since the last sweep

    def after_finish(self) -> None:
        """Count a finish; sweep when enough have gone by (after it, so no one waits on it)."""
        self.finished += 1
        if self.finished >= SWEEP_AFTER or time.monotonic() >= self.next_at:
            self.sweep()

    def sweep(self) -> None:
        """Delete from the ring the jobs this package finished; errors wait for the next."""
        self.next_at = time.monotonic() + SWEEP_EVERY_S
        self.finished = 0
        try:
            self._delete_finished()
        except PyMongoError as exc:  # the job is finished all the same; the next sweep tries
            log.debug("could not sweep finished jobs from %s: %s", self.collection.name, exc)

    def _delete_finished(self) -> None:
        # The last document inserted, and the one with the newest id (the same but for
        # clock differences between publishers; not all servers honour $natural).
        keep = [
            doc["_id"]
            for order in ("$natural", "_id")
            if (doc := self.collection.find_one({}, {"_id": 1}, sort=[(order, DESCENDING)]))
        ]
        finished = {
            "status": {"$in": list(FINISHED)},
            "max_attempts": {"$exists": True},  # finished by us: in history first
            "_id": {"$nin": keep},
        }
        if keep:
            retried(lambda again: self.collection.delete_many(finished), "a sweep")
