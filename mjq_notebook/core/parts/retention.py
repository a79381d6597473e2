"""Retention: delete finished jobs from a queue's history once they are old enough, and say so.

History keeps every finished job until asked otherwise. ``prune`` deletes the rows whose
``ts.done`` is before a cut-off, in batches along the ``ts.done`` index (so one call never
holds the server for long), and counts each batch in ``pruned`` on the ``{"_id": "counters"}``
document of ``<queue>.meta``, and by outcome in ``pruned_by.done``/``.failed``/``.cancelled``
(so finished totals, ``mjq metrics``' counters, never fall): ahead of its delete, then put
right to what it deleted.

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
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from pymongo import ASCENDING
from pymongo.errors import PyMongoError

from ..job import FINISHED, Status
from ..names import COUNTERS_ID

if TYPE_CHECKING:
    from pymongo.collection import Collection

    from .sweep import Sweeper

__all__ = ["BATCH", "prune", "prune_queue"]

BATCH = 1000  # rows per delete: a short hold on the server, few round trips


def prune_queue(
    sweeper: Sweeper,
    meta: Collection,
    before: dt.datetime,
    counted: Callable[[dt.datetime], object] = lambda cutoff: None,
) -> int:
    """``prune`` of the queue ``sweeper`` sweeps: its ring's jobs finished before ``before``
    first go to history (copied if another program finished them), ``counted(cutoff)`` (the
    rollups, which count finishes from history) runs, then history's go."""
    cutoff = _check(before, BATCH)  # a naive time writes nothing, not even the sweep
    sweeper.sweep_all(cutoff)
    counted(cutoff)
    return prune(sweeper.history, meta, cutoff)


def prune(history: Collection, meta: Collection, before: dt.datetime, *, batch: int = BATCH) -> int:
    """Delete the rows of ``history`` (a queue's ``<name>.history``) finished before
    ``before`` (a timezone-aware datetime); return how many went.

    Oldest first, ``batch`` rows at a time: the ids of the next batch from the ``ts.done``
    index, then one delete per outcome of those ids that still match the cut-off. Each batch
    is counted in ``pruned`` (and ``pruned_by``) on ``meta``'s counters document *before* its
    delete, and the count put
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
        found = history.find(match, {"status": 1}, sort=[("ts.done", ASCENDING)], limit=batch)
        by_status: dict[str, list] = {status: [] for status in FINISHED}  # in this order
        for doc in found:
            by_status[_outcome(doc)].append(doc["_id"])
        by_status = {status: ids for status, ids in by_status.items() if ids}
        if not by_status:
            return total
        _count(meta, {status: len(ids) for status, ids in by_status.items()})
        deleted: dict[str, int] = {}
        try:  # one delete per outcome, so each outcome's count is exact
            for status, ids in by_status.items():
                deleted[status] = history.delete_many({"_id": {"$in": ids}, **match}).deleted_count
        except PyMongoError:
            # A delete cut short may have removed part of the batch: take back the count of
            # what is still there, then let the error out.
            left = [i for ids in by_status.values() for i in ids]
            still = history.find({"_id": {"$in": left}}, {"status": 1})
            _count(meta, dict(Counter(_outcome(doc) for doc in still)), sign=-1)
            raise
        _count(meta, {s: len(ids) - deleted[s] for s, ids in by_status.items()}, sign=-1)
        total += sum(deleted.values())
        if sum(map(len, by_status.values())) < batch:
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


def _outcome(doc: dict) -> str:
    """A history row's outcome as counted in ``pruned_by``: failed, cancelled, else done."""
    status = doc.get("status")
    return status if status in (Status.FAILED.value, Status.CANCELLED.value) else Status.DONE.value


def _count(meta: Collection, by_status: dict[str, int], sign: int = 1) -> None:
    """Add the rows of ``by_status`` (outcome -> rows) to ``pruned`` and ``pruned_by``."""
    counts = {f"pruned_by.{status}": sign * n for status, n in by_status.items() if n}
    if counts:
        counts["pruned"] = sum(counts.values())
        meta.update_one({"_id": COUNTERS_ID}, {"$inc": counts}, upsert=True)
