"""The ring: the capped collection a queue lives in, its history beside it, their indexes."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import CollectionInvalid, OperationFailure, PyMongoError

from ...errors import InvalidQueueError, SmallRingWarning, warn_at_caller
from ..names import COMPANIONS

if TYPE_CHECKING:
    from pymongo.database import Database

log = logging.getLogger("mjq_notebook")

TYPICAL_JOB_BYTES = 300  # a job with a small ``data``, as stored once claimed
FEW_JOBS = 5000  # a ring another program made, holding fewer jobs than this, is named


def ensure_ring(db: Database, name: str, max_jobs: int | None, size_bytes: int) -> bool:
    """Create the capped collection ``name`` and the indexes of it and its history; True when
    it is capped. A collection that exists and is not capped is left untouched (False).

    One listCollections first: a companion someone else made capped (``<name>.history`` as
    a queue of its own, say) is refused before anything is created. If an index can't be
    made, what this call created is dropped again, so a failed creation leaves nothing."""
    existing = _collections(db, name)
    _refuse_capped_companions(db, name, existing)
    created = []
    if name not in existing:
        limits: dict[str, Any] = {"size": size_bytes} | ({"max": max_jobs} if max_jobs else {})
        try:
            db.create_collection(name, capped=True, **limits)
            created.append(name)
            log.info("Creating %s collection.", name)  # pymjq's words
        except (CollectionInvalid, OperationFailure):
            if name not in db.list_collection_names(filter={"name": name}):
                raise  # the server refused it (a size of 0, say), not a race
            # another process created it first; check below what it is
    if not db[name].options().get("capped"):
        return False
    if f"{name}.history" not in existing:
        created.append(f"{name}.history")  # made by its first index below
    try:
        # claims walk (status, priority, _id); reclaiming expired leases (status, lease_until)
        db[name].create_index([("status", ASCENDING), ("priority", DESCENDING), ("_id", ASCENDING)])
        db[name].create_index([("status", ASCENDING), ("lease_until", ASCENDING)])
        # counts() counts failed jobs by status; the live charts read finishes by time
        db[f"{name}.history"].create_index([("status", ASCENDING)])
        db[f"{name}.history"].create_index([("ts.done", ASCENDING)])
    except Exception:
        for collection in created:
            with contextlib.suppress(PyMongoError):
                db.drop_collection(collection)
        raise
    return True


def _collections(db: Database, name: str) -> dict[str, Mapping[str, Any]]:
    """The listCollections entries of ``name`` and its companions that exist, by name."""
    names = [name, *(name + suffix for suffix in COMPANIONS)]
    return {info["name"]: info for info in db.list_collections(filter={"name": {"$in": names}})}


def _refuse_capped_companions(db: Database, name: str, existing: dict[str, Any]) -> None:
    """InvalidQueueError when a companion of ``name`` exists and is capped: another program
    made it, and as this queue's history (say) it would lose finished jobs to evictions."""
    for suffix in COMPANIONS:
        info = existing.get(name + suffix)
        if info and (info.get("options") or {}).get("capped"):
            raise InvalidQueueError(
                f"collection {db.name}.{name}{suffix} is capped, so it can't be the {suffix[1:]} "
                f"collection of queue {name} (another program made it; capped, it would lose "
                "records); nothing was created. Rename or drop it, or use another queue name."
            )


def capacity(options: Mapping[str, Any]) -> int:
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
