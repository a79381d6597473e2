"""Retention: delete finished jobs from a queue's history once they are old enough, and say so.

History keeps every finished job until asked otherwise. ``prune`` deletes the rows whose
``ts.done`` is before a cut-off, in batches along the ``ts.done`` index (so one call never
holds the server for long), and counts each batch in ``pruned`` on the ``{"_id": "counters"}``
document of ``<queue>.meta``: ahead of its delete, then put right to what it deleted.

Why a call and not a TTL index on ``ts.done``: ``counts()`` tells a job lost to the capped
ring's eviction from one that finished by comparing what was published with what the ring
and history hold, so every deletion from history has to be counted somewhere. A TTL monitor
deletes silently, on its own schedule (about once a minute), and every job it removed would
read as lost. A call also says how many went, and runs when (and as often as) its caller
chooses: ``JobQueue.prune_history`` and ``mjq prune --older-than 30d``.

``prune_queue`` (what ``prune_history`` calls) first sweeps the ring (``sweep.py``) of every
job finished before the cut-off: ours are in history already, other programs' (pymjq) are
copied there, and both leave the ring, so the prune covers them and ``counts()``,
``history()`` and the rollups agree right after it. The ring's newest document stays, done or
not (the wake-up cursors stand on it): if it is our finish, every read skips it as in
history (``IN_HISTORY``), pruned or not; if another program's, it is counted and shown from
the ring, as any unswept finish of theirs, and goes to history (and a later prune) once a
newer job arrives.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pymongo import ASCENDING
from pymongo.errors import PyMongoError

from ..names import COUNTERS_ID

if TYPE_CHECKING:
    from pymongo.collection import Collection

    from .sweep import Sweeper

__all__ = ["BATCH", "prune", "prune_queue"]

BATCH = 1000  # rows per delete: a short hold on the server, few round trips


def prune_queue(sweeper: Sweeper, meta: Collection, before: dt.datetime) -> int:
    """``prune`` of the queue ``sweeper`` sweeps: its ring's jobs finished before ``before``
    first go to history (copied if another program finished them), then history's go."""
    cutoff = _check(before, BATCH)  # a naive time writes nothing, not even the sweep
    sweeper.sweep_all(cutoff)
    return prune(sweeper.history, meta, cutoff)


def prune(history: Collection, meta: Collection, before: dt.datetime, *, batch: int = BATCH) -> int:
    """Delete the rows of ``history`` (a queue's ``<name>.history``) finished before
    ``before`` (a timezone-aware datetime); return how many went.

    Oldest first, ``batch`` rows at a time: the ids of the next batch from the ``ts.done``
    index, then one delete of those ids that still match the cut-off. Each batch is counted
    in ``pruned`` on ``meta``'s counters document *before* its delete, and the count put
    right after it (rows another process deleted meanwhile are not ours to count): a
    ``counts()`` that reads history and then ``pruned`` never sees a pruned job as lost, at
    worst a batch in flight as already gone. The counter is exact once a batch is done, so
    also when the call is stopped half-way. Running it again with the same cut-off deletes
    nothing and returns 0. A naive ``before`` raises ``ValueError`` before anything is
    written: whose clock it meant can't be told.
    """
    cutoff = _check(before, batch)
    match = {"ts.done": {"$lt": cutoff}}
    total = 0
    while True:
        found = history.find(match, {"_id": 1}, sort=[("ts.done", ASCENDING)], limit=batch)
        ids = [doc["_id"] for doc in found]
        if not ids:
            return total
        _count(meta, len(ids))
        try:
            deleted = history.delete_many({"_id": {"$in": ids}, **match}).deleted_count
        except PyMongoError:
            # A delete cut short may have removed part of the batch: take back the count of
            # what is still there, then let the error out.
            _count(meta, -history.count_documents({"_id": {"$in": ids}}))
            raise
        _count(meta, deleted - len(ids))
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
