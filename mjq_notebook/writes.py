"""Writes that belong together, sent in one round trip where the server allows it.

MongoDB 8.0 added a client-level ``bulkWrite`` that spans collections, so a publish (job +
published counter) and a finish (history + queue) each cost one round trip there; older
servers get one round trip per write, in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pymongo.errors import ClientBulkWriteException, ConnectionFailure
from pymongo.operations import InsertOne, ReplaceOne, UpdateOne

from .retries import retried, transient
from .server import wire_version

if TYPE_CHECKING:
    from pymongo.collection import Collection
    from pymongo.database import Database

CLIENT_BULK_WRITE_WIRE_VERSION = 25  # MongoDB 8.0


@dataclass(frozen=True)
class Insert:
    """Documents with ``_id``s of ours; ``moved_to``: where one may have gone since it was
    stored (a job finished, then swept from the ring into history)."""

    collection: Collection
    documents: list[dict[str, Any]]
    moved_to: Collection | None = None


@dataclass(frozen=True)
class Update:
    collection: Collection
    filter: dict[str, Any]
    update: dict[str, Any] | list[dict[str, Any]]  # a list: an aggregation pipeline
    upsert: bool = False


@dataclass(frozen=True)
class Replace:
    collection: Collection
    filter: dict[str, Any]
    replacement: dict[str, Any]
    upsert: bool = False


Write = Insert | Update | Replace


def supports_client_bulk_write(db: Database) -> bool:
    """True when the server takes one bulkWrite across collections (MongoDB 8.0+)."""
    return wire_version(db) >= CLIENT_BULK_WRITE_WIRE_VERSION


def run(db: Database, writes: list[Write], *, together: bool) -> list[int | None]:
    """Apply ``writes`` in order, stopping at the first error; return each one's matched
    count (None for inserts). ``together``: in one client bulkWrite. Each is sent again on a
    transient fault; the last error is raised."""
    maybe_applied = False
    if together:
        try:
            return _run_together(db, writes)
        except Exception as exc:
            if not transient(exc):
                raise
            maybe_applied = True  # some or all of them: one by one now, each safe to repeat
    return [
        retried(lambda again, write=write: _run_one(write, again or maybe_applied), _what(write))
        for write in writes
    ]


def _what(write: Write) -> str:
    return f"{type(write).__name__.lower()} in {write.collection.full_name}"


def _run_together(db: Database, writes: list[Write]) -> list[int | None]:
    models, positions = [], []
    for write in writes:
        positions.append(len(models))
        models.extend(_models(write))
    try:
        result = db.client.bulk_write(
            models, ordered=True, verbose_results=True, write_concern=db.write_concern
        )
    except ClientBulkWriteException as exc:
        if isinstance(exc.error, ConnectionFailure):  # the same error as a plain write's
            raise exc.error from exc
        raise
    updates = {**result.update_results}
    return [
        None if isinstance(write, Insert) else updates[position].matched_count
        for write, position in zip(writes, positions, strict=True)
    ]


def _models(write: Write) -> list[Any]:
    namespace = write.collection.full_name
    if isinstance(write, Insert):
        return [InsertOne(doc, namespace=namespace) for doc in write.documents]
    if isinstance(write, Update):
        return [UpdateOne(write.filter, write.update, upsert=write.upsert, namespace=namespace)]
    return [ReplaceOne(write.filter, write.replacement, upsert=write.upsert, namespace=namespace)]


def _run_one(write: Write, again: bool = False) -> int | None:
    """One write; ``again``: an earlier attempt may have applied it (or part of it)."""
    if isinstance(write, Insert):
        documents = _not_stored(write) if again else write.documents
        if len(documents) == 1:
            write.collection.insert_one(documents[0])
        elif documents:
            write.collection.insert_many(documents, ordered=True)
        return None
    if isinstance(write, Update):
        return write.collection.update_one(
            write.filter, write.update, upsert=write.upsert
        ).matched_count
    return write.collection.replace_one(
        write.filter, write.replacement, upsert=write.upsert
    ).matched_count


def _not_stored(write: Insert) -> list[dict[str, Any]]:
    """The documents of ``write`` in neither its collection nor ``moved_to``: an insert sent
    again stores only those (their ids are ours, so no one else stores them meanwhile)."""
    ids = [doc["_id"] for doc in write.documents]
    stored = set()
    for collection in (write.collection, write.moved_to):
        if collection is not None:
            found = collection.find({"_id": {"$in": ids}}, {"_id": 1})
            stored.update(doc["_id"] for doc in found)
    return [doc for doc in write.documents if doc["_id"] not in stored]
