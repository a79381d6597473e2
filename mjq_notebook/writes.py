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

from .server import wire_version

if TYPE_CHECKING:
    from pymongo.collection import Collection
    from pymongo.database import Database

CLIENT_BULK_WRITE_WIRE_VERSION = 25  # MongoDB 8.0


@dataclass(frozen=True)
class Insert:
    collection: Collection
    documents: list[dict[str, Any]]


@dataclass(frozen=True)
class Update:
    collection: Collection
    filter: dict[str, Any]
    update: dict[str, Any]
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
    count (None for inserts). ``together``: in one client bulkWrite."""
    if not together:
        return [_run_one(write) for write in writes]
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


def _run_one(write: Write) -> int | None:
    if isinstance(write, Insert):
        if len(write.documents) == 1:
            write.collection.insert_one(write.documents[0])
        else:
            write.collection.insert_many(write.documents, ordered=True)
        return None
    if isinstance(write, Update):
        return write.collection.update_one(
            write.filter, write.update, upsert=write.upsert
        ).matched_count
    return write.collection.replace_one(
        write.filter, write.replacement, upsert=write.upsert
    ).matched_count
