"""``q.find``: the jobs a query (the job query language, or a raw MongoDB filter) matches in
the ring and history, newest first, each once in its latest state; and ``count_matches``,
how many there are (what bulk actions confirm).

Bounded: only the newest ``SCAN_CAP`` jobs of each collection are looked at (their cutoff
``_id`` is read from the ``_id`` index when the collection holds more, and kept
``CUTOFF_S``: jobs published since are looked at too), unless ``all=True``; every read carries
``maxTimeMS``, and a read stopped by it is a JobQueueError saying how to narrow the query.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from pymongo import DESCENDING
from pymongo.errors import ExecutionTimeout

from ...errors import JobQueueError
from ..error_groups import GroupMembers
from ..job import JobList
from ..query import compile_query
from .reads import newest_once

if TYPE_CHECKING:
    from pymongo.collection import Collection

    from ..queue_base import QueueBase

SCAN_CAP = 100_000  # the newest jobs of each collection a find looks at, unless all=True
MAX_TIME_MS = 10_000  # what the server may spend on one read of a find
CUTOFF_S = 10.0  # a collection's cutoff is read again after this long (a live search: 2/s)
_cutoffs: dict[tuple[str, int], tuple[float, Any]] = {}  # (collection, cap) -> (when, cutoff)


def find_jobs(
    queue: QueueBase, query: str | Mapping[str, Any], *, limit: int = 100, all: bool = False
) -> JobList:
    """The newest ``limit`` jobs matching ``query``, newest first (see ``JobQueue.find``)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a whole number of jobs, 1 or more, not {limit!r}")
    match = filter_of(query, queue)
    with _timeout_as_error(all):
        found = [
            list(
                collection.find(
                    bounded(match, collection, all),
                    sort=[("_id", DESCENDING)],
                    limit=limit,
                    max_time_ms=MAX_TIME_MS,
                )
            )
            for collection in (queue.history_collection, queue.collection)
        ]
    return newest_once(found, limit)


def count_matches(queue: QueueBase, query: str | Mapping[str, Any], *, all: bool = False) -> int:
    """How many jobs ``query`` matches in the ring and history within the scan cap (all of
    them with ``all=True``), each job once: one in both (finished, not swept yet) counts once.
    Cheap on indexed fields (a count in the server); the ring's matches, few, are read."""
    match = filter_of(query, queue)
    history, ring = queue.history_collection, queue.collection
    with _timeout_as_error(all):
        total = history.count_documents(bounded(match, history, all), maxTimeMS=MAX_TIME_MS)
        in_ring = [
            doc["_id"]
            for doc in ring.find(bounded(match, ring, all), {"_id": 1}, max_time_ms=MAX_TIME_MS)
        ]
        if in_ring:  # those history has too were counted there
            both = history.find({"_id": {"$in": in_ring}}, {"_id": 1}, max_time_ms=MAX_TIME_MS)
            total += len(in_ring) - len({doc["_id"] for doc in both})
    return total


def filter_of(query: str | Mapping[str, Any], queue: QueueBase) -> dict[str, Any]:
    """A query's MongoDB filter: a query text compiled (QuerySyntaxError when it can't be
    read), a Mapping taken as the raw filter it is (trusted, as ``query=`` arguments are).
    A ``group:`` term also matches ``queue``'s failures stored without a fingerprint whose
    fingerprint is that group: one more read (``error_groups.pairs``), only for such a term."""
    if isinstance(query, str):
        return compile_query(query, groups=GroupMembers(queue))
    if isinstance(query, Mapping):
        return dict(query)
    raise TypeError(f"a query is text or a MongoDB filter (a dict), not {type(query).__name__}")


def bounded(match: dict[str, Any], collection: Collection, all: bool = False) -> dict[str, Any]:
    """``match`` limited to the newest ``SCAN_CAP`` documents of ``collection`` (unless
    ``all``): an ``_id`` range from the cutoff, found by skipping along the ``_id`` index."""
    if all or collection.estimated_document_count(maxTimeMS=MAX_TIME_MS) <= SCAN_CAP:
        return match
    key = (collection.full_name, SCAN_CAP)
    held = _cutoffs.get(key)
    if held is not None and time.monotonic() - held[0] < CUTOFF_S:
        cutoff: Any = held[1]
    else:
        cutoff = _cutoff(collection)
        _cutoffs[key] = (time.monotonic(), cutoff)
    if cutoff is None:  # fewer than SCAN_CAP: nothing to leave out
        return match
    bound = {"_id": {"$gte": cutoff["_id"]}}
    return {"$and": [match, bound]} if match else bound


def _cutoff(collection: Collection) -> dict[str, Any] | None:
    """The ``_id`` of the ``SCAN_CAP``-th newest document, read along the ``_id`` index."""
    return next(
        iter(
            collection.find(
                {}, {"_id": 1}, sort=[("_id", DESCENDING)], skip=SCAN_CAP - 1, limit=1,
                max_time_ms=MAX_TIME_MS,
            )
        ),
        None,
    )  # fmt: skip


@contextlib.contextmanager
def _timeout_as_error(all: bool) -> Iterator[None]:
    try:
        yield
    except ExecutionTimeout:
        scope = "all jobs" if all else f"the newest {SCAN_CAP:,} jobs"
        raise JobQueueError(
            f"the query ran over {MAX_TIME_MS / 1000:g} s on {scope} and was stopped: narrow "
            "it (status:, id:, a time range such as created:>1h"
            + (", or leave out all=True" if all else "")
            + ")"
        ) from None
