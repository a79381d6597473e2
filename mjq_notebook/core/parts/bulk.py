"""Acting on every match of a query: ``q.retry_all``, ``q.cancel_all``, ``q.promote_all``.

Each job is changed under the conditions of its one-job action, so a job claimed, finished or
changed meanwhile is left alone and not counted: a retry is ``requeue.requeue`` per failed
job and a cancel is ``steer.cancel`` per waiting job (both must write history and the ring in
order, one job at a time); a promote is one ``update_many`` per batch whose filter carries
``steer.promote``'s conditions. Matches are read ``BATCH`` at a time, newest first (by id,
each batch below the last), so a 100,000-job action neither loads them all nor sends one
huge request, and a job is visited once even if it comes back to the matching state (a
retried job that fails again is not retried twice by the same call).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ..job import ACTS_ON, Status, utcnow
from ..retries import retried
from .find import count_matches, filter_of
from .requeue import requeue
from .steer import cancel

if TYPE_CHECKING:
    from pymongo.collection import Collection

    from ..queue_base import QueueBase

BATCH = 500  # matches read (and changed) per round trip
Query = str | Mapping[str, Any]  # query text (``core/query.py``) or a MongoDB filter
Progress = Callable[[int, int], None]  # (jobs looked at so far, jobs matching at the start)


def state(action: str) -> dict[str, Any]:
    """The filter of the jobs ``action`` changes (``job.ACTS_ON`` names them)."""
    if action == "retry":
        return {"status": Status.FAILED.value}
    if action == "cancel":
        return {"status": Status.WAITING.value}
    if action == "promote":
        return {"status": Status.WAITING.value, "available_at": {"$gt": utcnow()}}
    raise ValueError(f"a bulk action is one of {', '.join(ACTS_ON)}, not {action!r}")


def would_change(queue: QueueBase, action: str, query: Query | None) -> int:
    """How many jobs ``action`` would change now: the matches in the state it changes."""
    return count_matches(queue, {"$and": [filter_of(query or {}, queue), state(action)]}, all=True)


def act(
    queue: QueueBase,
    action: str,
    query: Query | None,
    progress: Progress | None = None,
    changed: list[Any] | None = None,
) -> int:
    """Do ``action`` to every job matching ``query`` in the state it changes; returns how
    many this call changed (their ids appended to ``changed`` when given). ``progress(done,
    total)`` after each batch; ``total``, counted first only when ``progress`` is given, is
    what matched at the start (``done`` may pass it if jobs came to match meanwhile)."""
    queue._require_capped()
    match = {"$and": [filter_of(query or {}, queue), state(action)]}  # before anything is done
    total = count_matches(queue, match, all=True) if progress is not None else 0
    if progress is not None:
        progress(0, total)
    ring, history = queue.collection, queue.history_collection
    # a retry needs the failed document (to put an evicted job back); the others its id
    fields = None if action == "retry" else {"_id": 1}
    where = [ring, history] if action == "retry" else [ring]
    done = changed_count = 0
    for page in _pages(where, match, fields):
        ids = _do(queue, action, page)
        changed_count += len(ids)
        if changed is not None:
            changed.extend(ids)
        done += len(page)
        if progress is not None:
            progress(done, max(total, done))
    if changed_count and action in ("retry", "promote"):
        queue._due.expect(0)
    return changed_count


def _do(queue: QueueBase, action: str, page: list[dict[str, Any]]) -> list[Any]:
    """``action`` on one page of matches; the ids it changed."""
    ring, history = queue.collection, queue.history_collection
    if action == "retry":
        more = queue.max_attempts
        return [doc["_id"] for doc in page if requeue(ring, history, doc, more)]
    if action == "cancel":
        ids = []
        for doc in page:
            if cancel(ring, history, doc["_id"]):
                ids.append(doc["_id"])
                queue._sweeper.after_finish()
        return ids
    return _promote(ring, [doc["_id"] for doc in page])


def _promote(ring: Collection, ids: list[Any]) -> list[Any]:
    """``steer.promote``'s conditional update for a batch of ids at once: the delayed ones
    among them due now; the ids it changed. Its writes carry this call's token
    (``promote_id``), so the ids are read back exactly, also after a fault that hid whether
    a try was applied, and also for jobs claimed since."""
    now, token = utcnow(), uuid.uuid4().hex
    delayed = {"_id": {"$in": ids}, "status": Status.WAITING.value, "available_at": {"$gt": now}}

    def make_due(again: bool) -> list[Any]:
        ring.update_many(delayed, {"$set": {"available_at": now, "promote_id": token}})
        return [doc["_id"] for doc in ring.find({"_id": {"$in": ids}, "promote_id": token})]

    return retried(make_due, "a bulk promote")


def _pages(
    where: list[Collection], match: Mapping[str, Any], fields: Mapping[str, Any] | None
) -> Iterator[list[dict[str, Any]]]:
    """The documents matching ``match`` in the collections ``where``, each id once (the last
    collection's copy wins: history's, for a failed job still in the ring), newest first,
    ``BATCH`` at a time. ObjectIds are paged by range; hand-written ids of other types
    (compared across types, ranges break) come last, skipping those already seen."""
    below: Any = None
    while True:
        page_match: dict[str, Any] = {"$and": [match, {"_id": {"$type": "objectId"}}]}
        if below is not None:
            page_match["$and"].append({"_id": {"$lt": below}})
        found = _read(where, page_match, fields)
        if not found:
            break
        ids = sorted(found, reverse=True)[:BATCH]
        yield [found[job_id] for job_id in ids]
        below = ids[-1]
    seen: list[Any] = []
    while True:
        odd = {"$and": [match, {"_id": {"$not": {"$type": "objectId"}, "$nin": seen}}]}
        found = _read(where, odd, fields)
        if not found:
            break
        page = list(found.values())[:BATCH]
        seen.extend(doc["_id"] for doc in page)
        yield page


def _read(
    where: list[Collection], match: Mapping[str, Any], fields: Mapping[str, Any] | None
) -> dict[Any, dict[str, Any]]:
    """Up to ``BATCH`` newest matches from each of ``where``, by id."""
    found: dict[Any, dict[str, Any]] = {}
    for collection in where:
        cursor = collection.find(match, fields).sort("_id", -1).limit(BATCH)
        found.update((doc["_id"], doc) for doc in cursor)
    return found
