"""Writes that belong together, sent in one round trip where the server allows it.

MongoDB 8.0 added a client-level ``bulkWrite`` that spans collections, so a publish (job +
published counter) and a finish (history + queue) each cost one round trip there; older
servers get one round trip per write, in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pymongo.errors import ClientBulkWriteException, ConnectionFailure, DuplicateKeyError
from pymongo.operations import InsertOne, ReplaceOne, UpdateOne

from ...server import wire_version
from ..retries import retried, transient

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
    """``done_if_unmatched``: an upsert whose filter stops matching once the update is in (it
    carries a token): a duplicate key error on it means done, not a conflict. ``done_if_found``:
    the state the update leaves, only its own; sent again and matching nothing, the update
    counts as done (matched 1) when a document is found in that state."""

    collection: Collection
    filter: dict[str, Any]
    update: dict[str, Any]
    upsert: bool = False
    done_if_unmatched: bool = False
    done_if_found: dict[str, Any] | None = None


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
            if not (transient(exc) or _only_done(exc, writes)):
                raise
            maybe_applied = True  # some or all of them: one by one now, each safe to repeat
    return [
        retried(lambda again, write=write: _run_one(write, again or maybe_applied), _what(write))  # type: ignore[misc]  # mypy can't infer a lambda's default
        for write in writes
    ]


def _what(write: Write) -> str:
    return f"{type(write).__name__.lower()} in {write.collection.full_name}"


def _layout(writes: list[Write]) -> tuple[list[Any], list[int]]:
    """The bulkWrite models of ``writes``, and where each write's first model is."""
    models: list[Any] = []
    positions = []
    for write in writes:
        positions.append(len(models))
        models.extend(_models(write))
    return models, positions


def _only_done(exc: Exception, writes: list[Write]) -> bool:
    """True when a bulkWrite failed only on duplicate keys of ``done_if_unmatched`` upserts."""
    errors = getattr(exc, "write_errors", None) if isinstance(exc, ClientBulkWriteException) else []
    if not errors:
        return False
    _, positions = _layout(writes)
    repeats = {p for w, p in zip(writes, positions, strict=True) if _done_if_unmatched(w)}
    return all(e.get("code") == 11000 and e.get("idx") in repeats for e in errors)


def _done_if_unmatched(write: Write) -> bool:
    return isinstance(write, Update) and write.done_if_unmatched


def _run_together(db: Database, writes: list[Write]) -> list[int | None]:
    models, positions = _layout(writes)
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
        try:
            matched = write.collection.update_one(
                write.filter, write.update, upsert=write.upsert
            ).matched_count
        except DuplicateKeyError:
            if not write.done_if_unmatched:
                raise
            # the document is there and the filter excludes it: the update is in, or another
            # upsert created the document first; sent once more, it applies in that case only
            write.collection.update_one(write.filter, write.update)
            return 1
        if not matched and again and write.done_if_found is not None:
            return int(write.collection.find_one(write.done_if_found, {"_id": 1}) is not None)
        return matched
    return write.collection.replace_one(
        write.filter, write.replacement, upsert=write.upsert
    ).matched_count


def _not_stored(write: Insert) -> list[dict[str, Any]]:
    """The documents of ``write`` in neither its collection nor ``moved_to``: an insert sent
    again stores only those (their ids are ours, so no one else stores them meanwhile)."""
    ids = [doc["_id"] for doc in write.documents]
    stored: set[Any] = set()
    for collection in (write.collection, write.moved_to):
        if collection is not None:
            found = collection.find({"_id": {"$in": ids}}, {"_id": 1})
            stored.update(doc["_id"] for doc in found)
    return [doc for doc in write.documents if doc["_id"] not in stored]
