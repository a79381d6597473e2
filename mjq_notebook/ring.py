"""The ring: the capped collection a queue lives in, its history beside it, their indexes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import CollectionInvalid, OperationFailure

from .errors import SmallRingWarning, warn_at_caller

if TYPE_CHECKING:
    from pymongo.database import Database

log = logging.getLogger("mjq_notebook")

TYPICAL_JOB_BYTES = 300  # a job with a small ``data``, as stored once claimed
FEW_JOBS = 5000  # a ring another program made, holding fewer jobs than this, is named


def ensure_ring(db: Database, name: str, max_jobs: int | None, size_bytes: int) -> bool:
    """Create the capped collection ``name`` and the indexes of it and its history; True when
    it is capped. A collection that exists and is not capped is left untouched (False)."""
    if name not in db.list_collection_names(filter={"name": name}):
        limits = {"size": size_bytes} | ({"max": max_jobs} if max_jobs else {})
        try:
            db.create_collection(name, capped=True, **limits)
            log.info("Creating %s collection.", name)  # pymjq's words
        except (CollectionInvalid, OperationFailure):
            pass  # another process created it first; check below what it is
    if not db[name].options().get("capped"):
        return False
    # claims walk (status, priority, _id); reclaiming expired leases (status, lease_until)
    db[name].create_index([("status", ASCENDING), ("priority", DESCENDING), ("_id", ASCENDING)])
    db[name].create_index([("status", ASCENDING), ("lease_until", ASCENDING)])
    # counts() counts failed jobs by status; the live charts read finishes by time
    db[f"{name}.history"].create_index([("status", ASCENDING)])
    db[f"{name}.history"].create_index([("ts.done", ASCENDING)])
    return True


def capacity(options: dict) -> int:
    """About how many jobs a capped collection with these ``options`` holds: its ``max``,
    or its size over ``TYPICAL_JOB_BYTES`` if fewer."""
    by_size = int(options.get("size") or 0) // TYPICAL_JOB_BYTES
    return min(by_size, int(options.get("max") or by_size))


def made_by_another(db: Database, name: str) -> bool:
    """True when ``name`` exists without the history this package makes beside a ring: a
    queue pymjq (or another program) made, which this package opens for the first time."""
    both = {"$in": [name, f"{name}.history"]}
    return db.list_collection_names(filter={"name": both}) == [name]


def warn_if_small(db: Database, name: str, max_jobs: int | None, size_bytes: int) -> None:
    """``SmallRingWarning`` if the ring ``name`` holds fewer than ``FEW_JOBS`` jobs (and
    fewer than ``max_jobs``/``size_bytes`` ask for): called when this package first opens a
    ring another program made, since it keeps its size (pymjq's are 100,000 bytes), so
    those arguments do nothing there."""
    where = f"{db.name}.{name}"
    options = db[name].options()
    holds = capacity(options)
    asked = capacity({"size": size_bytes, "max": max_jobs})
    if not options.get("capped") or holds >= min(FEW_JOBS, asked):
        return
    warn_at_caller(
        f"queue {where} is an existing ring of {int(options.get('size') or 0):,} bytes"
        + (f" and at most {options['max']:,} jobs" if options.get("max") else "")
        + f": about {holds:,} jobs fit before the oldest, waiting or not, are evicted. "
        "An existing ring keeps its size whatever max_jobs/size_bytes say: grow it with "
        f"q.resize(size_bytes={size_bytes}, max_jobs={max_jobs})",
        SmallRingWarning,
    )
