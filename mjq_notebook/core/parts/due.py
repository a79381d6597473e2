"""The due clock: how long a consumer with nothing to claim may wait for an insert.

A delayed or retried job, or an expired lease, becomes claimable without an insert to wake
anyone, so an idle consumer waits no longer than until the next one is due. That is read
from the server at most once a second (so at most a second late for what other processes
schedule); what this queue object schedules itself is known at once (``expect``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..job import Status, utcnow

if TYPE_CHECKING:
    from pymongo.collection import Collection

CHECK_EVERY_S = 1.0  # the server is asked what is due next at most this often
WAIT_MAX_S = 1.0  # and an idle consumer claims again at least this often


class DueClock:
    """When the next waiting job or lease of one queue becomes due, as far as known."""

    def __init__(self, collection: Collection) -> None:
        self.collection = collection
        self._due = self._checked = 0.0  # monotonic times

    def idle_wait(self) -> float:
        """Seconds an idle consumer may wait for an insert before it claims again."""
        now = time.monotonic()
        if now >= self._checked + CHECK_EVERY_S:
            self._checked = now
            self._due = now + self.seconds_until_due()
        due_in = self._due - now
        if due_in <= 0:  # it was due, yet nothing could be claimed: someone else took it
            due_in = self._checked + CHECK_EVERY_S - now
        return min(max(due_in, 0.0), WAIT_MAX_S)

    def expect(self, seconds: float) -> None:
        """Note that something this object scheduled becomes claimable in ``seconds``."""
        self._due = min(self._due, time.monotonic() + seconds)

    def seconds_until_due(self) -> float:
        """Seconds until a waiting job's delay or a working job's lease runs out (inf: none)."""
        now = utcnow()
        waiting, working = Status.WAITING.value, Status.WORKING.value
        due_at = {"$cond": [{"$eq": ["$status", waiting]}, "$available_at", "$lease_until"]}
        pending = {
            "$or": [
                {"status": waiting, "available_at": {"$gt": now}},
                {"status": working, "lease_until": {"$gt": now}},
            ]
        }
        rows = list(
            self.collection.aggregate(
                [{"$match": pending}, {"$group": {"_id": None, "due": {"$min": due_at}}}]
            )
        )
        if not rows or rows[0]["due"] is None:
            return float("inf")
        return max(0.0, (rows[0]["due"] - now).total_seconds())
