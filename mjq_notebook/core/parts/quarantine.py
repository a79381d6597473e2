"""Jobs other programs wrote that a claim can't take as they are: repaired where they can be
(a ``ts`` that is not a document, attempts that are not numbers), else set ``failed`` with the
reason "malformed job". Either way the worker goes on with the next job.

This runs only after a claim failed, so well-formed queues pay nothing for it.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from pymongo.errors import OperationFailure

from ..job import Status, error_document, malformed, utcnow

if TYPE_CHECKING:
    from pymongo.collection import Collection

log = logging.getLogger("mjq_notebook")


def repairs(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The ``$set`` and ``$unset`` that make ``doc`` claimable; both empty when it is.

    What was replaced is kept under ``malformed`` so nothing another program wrote is lost.
    """
    fix: dict[str, Any] = {}
    drop: dict[str, str] = {}
    if "ts" in doc and not isinstance(doc["ts"], dict):
        created = doc["_id"].generation_time if hasattr(doc["_id"], "generation_time") else None
        fix["ts"] = {"created": created, "started": None, "done": None}
    if "attempts" in doc and not _count(doc["attempts"]):
        fix["attempts"] = 0
    if "max_attempts" in doc and not _count(doc["max_attempts"]):
        drop["max_attempts"] = ""  # the queue's own max_attempts applies
    if fix or drop:
        fix["malformed"] = {key: doc.get(key) for key in (*fix, *drop)}
    return fix, drop


def _count(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value < 2**31
    )


def mend(queue: Collection, doc: dict[str, Any]) -> bool:
    """Make the waiting job ``doc`` claimable, or fail it as malformed; True when anything was
    changed (the claim may then try again), False when nothing is wrong with it."""
    reason = malformed(doc)
    fix, drop = repairs(doc)
    waiting = {"_id": doc["_id"], "status": Status.WAITING.value}
    where = f"{queue.database.name}.{queue.name}"
    if reason is None and (fix or drop):
        update: dict[str, Any] = {"$set": fix} | ({"$unset": drop} if drop else {})
        queue.update_one(waiting, update)
        log.warning(
            "job %s of %s was malformed (%s): repaired",
            doc["_id"],
            where,
            ", ".join(sorted(fix.get("malformed", {}))),
        )
        return True
    if reason is None:
        return False
    set_aside(queue, doc, reason, waiting)
    return True


def set_aside(queue: Collection, doc: dict[str, Any], reason: str, match: dict[str, Any]) -> None:
    """Fail ``doc`` (where ``match``: still as read) as a malformed job it would be no use
    to run, since its outcome could not be stored with it.

    A foreign job now: counted by its status in the ring (no max_attempts) until the sweep
    copies it to history, never lost. The error goes with it where it fits; a job too large
    for that is failed by its status alone ("failed" is shorter than the status it had).
    """
    error = error_document(f"malformed job: {reason}", kind="MalformedJob")
    for fields in ({"error": error, "ts.done": utcnow()}, {}):
        try:
            queue.update_one(
                match,
                {"$set": {"status": Status.FAILED.value, **fields}, "$unset": {"max_attempts": ""}},
            )
            break
        except OperationFailure:
            if not fields:
                raise
    where = f"{queue.database.name}.{queue.name}"
    log.warning("job %s of %s is a malformed job (%s): set failed", doc["_id"], where, reason)
