"""A job's whole story: every ended attempt kept in ``<queue>.attempts`` (plain, not capped).

One document per ended attempt, ``_id`` = ``{"job": id, "attempt": n}``, so a write sent again
after a fault (or a finish repeated after a crash) writes the same record, never a second:

- ``done`` and ``failed`` (each retry's failure, not only the last) are written with the
  finish, first in the writes runner's order (``owned.py``): history and the ring never show
  an attempt the log lacks. A finish that then finds its claim lost takes its record back.
- ``lost``: a working job whose lease expired (or that was released from the UI) is
  reclaimed first, then its attempt recorded as lost (ended = when it was reclaimed): a
  lost record is never written for a job that finished. It is never overwritten by a late
  worker's finish (which finds the claim gone and takes back nothing of it).
- ``edited`` entries (``kind``), keyed by the requeue's token: the data a job had before
  ``q.retry(job, data=...)`` changed it, when, and who (through the audit).

A cancel ends no attempt (only waiting jobs are cancelled): the timeline shows it from the
job's document. Attempts other programs (pymjq) ran have no records; the timeline then falls
back to what the job's document says (``rows``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from ...errors import JobQueueError
from ...text import int_or_none
from ..job import Status, utcnow
from ..job import job_id as as_job_id
from ..retries import retried
from . import writes

if TYPE_CHECKING:
    from pymongo.collection import Collection

SUFFIX = ".attempts"
LOST = "lost"
EDITED = "edited"
_INDEXED: set[str] = set()  # the logs this process has indexed


def ensure_index(log: Collection, again: bool = False) -> None:
    """The (job, attempt) index the reads walk; once per process and log (``again``: it
    was dropped)."""
    if again or log.full_name not in _INDEXED:
        log.create_index([("job", ASCENDING), ("attempt", ASCENDING)])
        _INDEXED.add(log.full_name)


def key(job_id: Any, attempt: int) -> dict[str, Any]:
    return {"job": job_id, "attempt": attempt}


def record(job: Mapping[str, Any], outcome: str, ended: dt.datetime, error: Any = None) -> dict:
    """The record of ``job``'s current attempt (its document as the claim holds it)."""
    attempt = int_or_none(job.get("attempts")) or 0
    ts = job.get("ts") if isinstance(job.get("ts"), Mapping) else {}
    return {
        "_id": key(job["_id"], attempt),
        "kind": "attempt",
        "job": job["_id"],
        "attempt": attempt,
        "worker": job.get("worker"),
        "started": ts.get("started"),  # type: ignore[union-attr]  # a Mapping, checked above
        "ended": ended,
        "outcome": outcome,
        "error": error,
        "progress": job.get("progress"),
    }


def ended_write(
    log: Collection, job: Mapping[str, Any], outcome: str, error: Any = None
) -> writes.Update:
    """The write of an attempt ending ``outcome`` (done/failed), for the writes runner: an
    upsert by (job, attempt) that leaves a ``lost`` record alone (the claim is gone then,
    and the ring's write after it finds so)."""
    ts = job.get("ts") if isinstance(job.get("ts"), Mapping) else {}
    doc = record(job, outcome, ts.get("done") or utcnow(), error)  # type: ignore[union-attr]
    return writes.Update(
        log,
        {"_id": doc["_id"], "outcome": {"$ne": LOST}},
        {"$set": {k: v for k, v in doc.items() if k != "_id"}},
        upsert=True,
        done_if_unmatched=True,  # a lost record there: nothing to write
    )


def take_back(log: Collection, job: Mapping[str, Any], outcome: str) -> None:
    """Delete this claim's own record of ``outcome`` (its finish found the claim lost)."""
    attempt = int_or_none(job.get("attempts")) or 0
    mine = {"_id": key(job["_id"], attempt), "outcome": outcome, "worker": job.get("worker")}
    retried(lambda again: log.delete_one(mine), "taking back an attempt's record")


def lost(log: Collection, job: Mapping[str, Any], at: dt.datetime) -> None:
    """Record ``job``'s attempt (as it was before its reclaim at ``at``) as lost."""
    doc = record(job, LOST, at)

    def write(again: bool) -> None:
        try:
            log.replace_one({"_id": doc["_id"]}, doc, upsert=True)
        except DuplicateKeyError:  # a late finish's upsert created it first: ours replaces it
            log.replace_one({"_id": doc["_id"]}, doc)

    retried(write, "a lost attempt's record")


def edited(log: Collection, job: Mapping[str, Any], token: str, by: Any) -> dict[str, Any]:
    """Record the data ``job`` (failed) had before an edit; returns the filter of this
    entry (to take it back if the requeue does not happen)."""
    doc = {
        "_id": {"job": job["_id"], "edit": token},
        "kind": EDITED,
        "job": job["_id"],
        "attempt": int_or_none(job.get("attempts")) or 0,
        "ended": utcnow(),
        "outcome": EDITED,
        "data": job.get("data"),
        "by": dict(by) if isinstance(by, Mapping) else by,
    }
    retried(lambda again: log.replace_one({"_id": doc["_id"]}, doc, upsert=True), "an edit")
    return {"_id": doc["_id"]}


# -- reading ------------------------------------------------------------------------------


def rows(log: Collection, job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A job's story as plain rows, oldest first (one indexed find): each kept attempt and
    edit, then what the job's document says of the attempt it is in or waits for (and, for
    attempts other programs ran, of its last one)."""
    found = list(log.find({"job": job["_id"]}).sort([("attempt", ASCENDING)]))
    found.sort(
        key=lambda d: (
            int_or_none(d.get("attempt")) or 0,
            d.get("kind") == EDITED,
            _t(d.get("ended")),
        )
    )
    story = [_row(doc) for doc in found]
    recorded = {doc.get("attempt") for doc in found if doc.get("kind") != EDITED}
    story.extend(_from_document(job, recorded))
    return story


def _order(doc: Mapping[str, Any]) -> tuple[int, bool, float]:
    """Attempts in order, an edit after the failure it follows (records anyone could write)."""
    return int_or_none(doc.get("attempt")) or 0, doc.get("kind") == EDITED, _t(doc.get("ended"))


def _row(doc: Mapping[str, Any]) -> dict[str, Any]:
    error = doc.get("error") if isinstance(doc.get("error"), Mapping) else {}
    started, ended = doc.get("started"), doc.get("ended")
    both = isinstance(started, dt.datetime) and isinstance(ended, dt.datetime)
    run = (ended - started).total_seconds() if both else None  # type: ignore[operator]
    return {
        "attempt": doc.get("attempt"),
        "outcome": doc.get("outcome"),
        "worker": doc.get("worker"),
        "started": started,
        "ended": ended,
        "run_s": run,
        "error_type": error.get("type"),  # type: ignore[union-attr]  # a Mapping, checked above
        "error_message": error.get("message"),  # type: ignore[union-attr]
        "traceback": error.get("traceback"),  # type: ignore[union-attr]
        "progress": doc.get("progress"),
        "data": doc.get("data"),
        "by": doc.get("by"),
    }


def _from_document(job: Mapping[str, Any], recorded: set[Any]) -> list[dict[str, Any]]:
    """The rows the job's document gives: the attempt running (or the one it waits for), its
    last attempt when no record has it (pymjq's), a cancel."""
    status = job.get("status")
    attempt = int_or_none(job.get("attempts")) or 0
    ts = job.get("ts") if isinstance(job.get("ts"), Mapping) else {}
    started, done = ts.get("started"), ts.get("done")  # type: ignore[union-attr]
    if not attempt and started is not None and status in (Status.DONE.value, Status.FAILED.value):
        attempt = 1  # pymjq's documents count no attempts
    doc = {"_id": job.get("_id"), "attempts": attempt, "worker": job.get("worker"), "ts": ts}
    doc["progress"] = job.get("progress")
    out = []
    if attempt and attempt not in recorded and status != Status.WORKING.value:
        outcome = status if status in (Status.DONE.value, Status.FAILED.value) else None
        outcome = outcome or ("failed" if job.get("error") else LOST)
        ended = done if status in (Status.DONE.value, Status.FAILED.value) else None
        out.append(_row(record(doc, outcome, ended, job.get("error"))))  # type: ignore[arg-type]
    if status == Status.WORKING.value:
        out.append({**_row(record(doc, "working", None)), "ended": None})  # type: ignore[arg-type]
    elif status == Status.WAITING.value:
        out.append(_row({"attempt": attempt + 1, "outcome": "waiting"}))
    elif status == Status.CANCELLED.value:
        out.append(_row({"attempt": None, "outcome": "cancelled", "ended": done}))
    return out


def _t(when: Any) -> float:
    return when.timestamp() if isinstance(when, dt.datetime) else 0.0


def story(get: Any, log: Collection, job: Any) -> list[dict[str, Any]]:
    """The rows (``rows``) of ``job`` (a document, an ObjectId or its hex string), its
    document read with ``get`` (``q.get``: the ring, else history). JobQueueError when the
    queue knows nothing of it."""
    job_id = as_job_id(job)
    doc = get(job_id) if not isinstance(job, Mapping) or "status" not in job else job
    found = rows(log, doc if doc is not None else {"_id": job_id})
    if doc is None and not found:
        raise JobQueueError(f"no job {job_id} in this queue (nor in its history)")
    return found
