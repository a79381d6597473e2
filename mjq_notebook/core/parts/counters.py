"""The running total of published jobs, which ``counts()`` compares with what the ring and
history hold to tell a job evicted unfinished (``lost``) from one that finished.

Each publish adds its count once, however often its update is sent: the update carries the
publish's token (its first job's id) and adds nothing when that token is among the last
``RECENT`` recorded. So a publish sent again after a fault (``retries.py``) counts once, as
long as fewer than ``RECENT`` other publishes to the queue land between its first attempt and
the one that gets through (a second or so); beyond that it would count twice and ``lost``
would read low by its size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..names import COUNTERS_ID
from . import writes

if TYPE_CHECKING:
    from pymongo.collection import Collection

RECENT = 200  # publish tokens remembered (about 3.4 KB of ObjectIds)


def count_published(meta: Collection, token: Any, jobs: int) -> writes.Update:
    """The update that adds ``jobs`` to ``published`` unless the publish ``token`` is among
    those recorded (one conditional update: atomic, and safe to repeat)."""
    return writes.Update(
        meta,
        {"_id": COUNTERS_ID, "recent_publishes": {"$ne": token}},
        {
            "$inc": {"published": jobs},
            "$push": {"recent_publishes": {"$each": [token], "$slice": -RECENT}},
        },
        upsert=True,
        done_if_unmatched=True,  # a duplicate key: the counter is there with the token in it
    )
