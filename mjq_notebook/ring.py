"""The ring: the capped collection a queue lives in, its history beside it, their indexes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import CollectionInvalid, OperationFailure

if TYPE_CHECKING:
    from pymongo.database import Database

log = logging.getLogger("mjq_notebook")


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
