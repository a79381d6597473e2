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

from . import writes

if TYPE_CHECKING:
    from pymongo.collection import Collection

COUNTERS_ID = "counters"  # the meta document with ``published`` (and ``pruned``)
RECENT = 1000  # publish tokens remembered (about 17 KB of ObjectIds)


def count_published(meta: Collection, token: Any, jobs: int) -> writes.Update:
    """The update that adds ``jobs`` to ``published`` unless the publish ``token`` is
    recorded already (one pipeline update: atomic, and safe to repeat)."""
    seen = {"$ifNull": ["$recent_publishes", []]}
    counted = {"$in": [token, seen]}
    update = {
        "$set": {
            "published": {
                "$cond": [counted, "$published", {"$add": [{"$ifNull": ["$published", 0]}, jobs]}]
            },
            "recent_publishes": {
                "$cond": [
                    counted,
                    "$recent_publishes",
                    {"$slice": [{"$concatArrays": [seen, [token]]}, -RECENT]},
                ]
            },
        }
    }
    return writes.Update(meta, {"_id": COUNTERS_ID}, [update], upsert=True)
