"""Retention: delete finished jobs from a queue's history once they are old enough, and say so.

History keeps every finished job until asked otherwise. ``prune`` deletes the rows whose
``ts.done`` is before a cut-off, in batches along the ``ts.done`` index (so one call never
holds the server for long, and its work can be seen going by), and adds each batch's exact
count to ``pruned`` on the ``{"_id": "counters"}`` document of ``<queue>.meta``.

Why a call and not a TTL index on ``ts.done``: ``counts()`` tells a job lost to the capped
ring's eviction from one that finished by comparing what was published with what the ring
and history hold, so every deletion from history has to be counted somewhere. A TTL monitor
deletes silently, on its own schedule (about once a minute), and every job it removed would
read as lost. A call also says how many went, and runs when (and as often as) its caller
chooses: ``JobQueue.prune_history`` and ``mjq prune --older-than 30d``.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pymongo import ASCENDING
from pymongo.errors import PyMongoError

if TYPE_CHECKING:
    from pymongo.collection import Collection

__all__ = ["BATCH", "COUNTERS_ID", "prune"]

BATCH = 1000  # rows per delete: a short hold on the server, few round trips
COUNTERS_ID = "counters"  # the meta document with ``published`` and ``pruned``


def prune(history: Collection, meta: Collection, before: dt.datetime, *, batch: int = BATCH) -> int:
    """Delete the rows of ``history`` (a queue's ``<name>.history``) finished before
    ``before`` (a timezone-aware datetime); return how many went.

    Oldest first, ``batch`` rows at a time: the ids of the next batch from the ``ts.done``
    index, then one delete of those ids that still matches the cut-off (so a row another
    process pruned meanwhile is neither deleted nor counted twice). After every batch,
    ``pruned`` on ``meta``'s counters document grows by what that batch deleted, so the
    counter stays exact if the call is stopped half-way. Running it again with the same
    cut-off deletes nothing and returns 0. A naive ``before`` raises ``ValueError`` before
    anything is written: whose clock it meant can't be told.
    """
    cutoff = _check(before, batch)
    match = {"ts.done": {"$lt": cutoff}}
    total = 0
    while True:
        ids = [
            doc["_id"]
            for doc in history.find(match, {"_id": 1}, sort=[("ts.done", ASCENDING)], limit=batch)
        ]
        if not ids:
            return total
        try:
            deleted = history.delete_many({"_id": {"$in": ids}, **match}).deleted_count
        except PyMongoError:
            # A delete cut short may still have removed part of the batch: count what is
            # gone, so those jobs don't read as lost, then let the error out.
            gone = len(ids) - history.count_documents({"_id": {"$in": ids}})
            _count(meta, gone)
            raise
        _count(meta, deleted)
        total += deleted
        if len(ids) < batch:
            return total


def _check(before: dt.datetime, batch: int) -> dt.datetime:
    if not isinstance(before, dt.datetime):
        raise TypeError(f"before must be a datetime, not {type(before).__name__}")
    if before.tzinfo is None or before.utcoffset() is None:
        raise ValueError(
            f"before must be timezone-aware ({before.isoformat()} has no time zone): "
            "use datetime.now(timezone.utc) - timedelta(days=30), say"
        )
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a whole number >= 1, not {batch!r}")
    return before.astimezone(dt.timezone.utc)


def _count(meta: Collection, deleted: int) -> None:
    if deleted:
        meta.update_one({"_id": COUNTERS_ID}, {"$inc": {"pruned": deleted}}, upsert=True)
