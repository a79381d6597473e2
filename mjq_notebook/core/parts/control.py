"""Pausing a queue: a flag beside it that every claim looks at, in every process.

The flag lives in ``<queue>.meta`` (``{"_id": "control", "paused": ...}``). A claim reads it
at most every ``CHECK_S``, so within a second of ``pause()`` no process takes a job, and a
consumer waiting on a paused queue looks again at least that often, so it starts within a
second of ``resume()``. Publishing is never paused. pymjq's own consumers don't know the flag.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..job import utcnow

if TYPE_CHECKING:
    from pymongo.collection import Collection

CHECK_S = 0.4  # claims read the flag at most this often; paused consumers look this often
CONTROL_ID = "control"


class Control:
    """The pause flag of one queue, as this process last read it."""

    def __init__(self, meta: Collection) -> None:
        self.meta = meta
        self._paused = False
        self._read_at = float("-inf")  # monotonic

    def set_paused(self, paused: bool, by: str) -> None:
        fields: dict[str, Any] = {"paused": paused, "changed": utcnow(), "by": by}
        self.meta.update_one({"_id": CONTROL_ID}, {"$set": fields}, upsert=True)
        self._paused, self._read_at = paused, time.monotonic()

    def paused(self, *, fresh: bool = False) -> bool:
        """Whether the queue is paused: read from the server when ``fresh`` or when the last
        read is over ``CHECK_S`` old."""
        if fresh or time.monotonic() - self._read_at >= CHECK_S:
            doc = self.meta.find_one({"_id": CONTROL_ID}, {"paused": 1}) or {}
            self._paused, self._read_at = bool(doc.get("paused")), time.monotonic()
        return self._paused
