"""The job record: status names, the document schema and the ``Job`` dict."""

from __future__ import annotations

import datetime as dt
import enum
import traceback as tb
from typing import Any

import bson
from bson import ObjectId
from bson.errors import InvalidDocument

from .errors import JobQueueError, PublishError


class Status(str, enum.Enum):
    """A job's lifecycle; the values are the strings stored in ``status``."""

    WAITING = "waiting"
    WORKING = "working"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"  # by q.cancel() while it waited: final, never claimed

    def __str__(self) -> str:
        return self.value


STATUSES = tuple(s.value for s in Status)
FINISHED = (Status.DONE.value, Status.FAILED.value, Status.CANCELLED.value)
# An aggregation expression, true for jobs this package published: they carry max_attempts,
# pymjq's documents never do (nor get it when we finish them; a q.retry() gives it).
PUBLISHED_BY_US = {"$ne": [{"$type": "$max_attempts"}, "missing"]}


# Set on a job's document in the ring when its finish was written to history first (by this
# package): the sweep and counts() then need not look it up, and a history row pruned since
# is not copied back. Finishes written by others (pymjq) lack it.
IN_HISTORY = "in_history"

MAX_BSON_SIZE = 16 * 1024 * 1024  # MongoDB's document limit


def stored_size(doc: dict[str, Any], what: str) -> int:
    """The BSON size of ``doc``; PublishError naming ``what`` when MongoDB can't store it
    (not encodable, or over the 16 MiB document limit). Every publish path checks here."""
    try:
        size = len(bson.encode(doc))
    except (InvalidDocument, TypeError, OverflowError, ValueError, RecursionError) as exc:
        raise PublishError(f"{what} can't be stored as BSON: {exc}; nothing was written") from None
    if size > MAX_BSON_SIZE:
        raise PublishError(
            f"{what} is {size / 2**20:.1f} MiB as BSON, over MongoDB's 16 MiB document "
            "limit; nothing was written"
        )
    return size


def utcnow() -> dt.datetime:
    """The current time as a tz-aware UTC datetime, truncated to BSON's millisecond precision."""
    now = dt.datetime.now(dt.timezone.utc)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def new_documents(
    items: list[Any], *, priority: int, delay: float, max_attempts: int
) -> list[dict[str, Any]]:
    """Waiting jobs for ``items``, each checked storable (PublishError names the first that
    isn't, before anything is written)."""
    now = utcnow()
    available = now + dt.timedelta(seconds=delay)
    docs = []
    for index, data in enumerate(items):
        doc = new_document(
            data, priority=int(priority), available_at=available, max_attempts=max_attempts, now=now
        )
        stored_size(doc, f"the data of job {index}" if len(items) > 1 else "the data")
        docs.append(doc)
    return docs


def new_document(
    data: Any, *, priority: int, available_at: dt.datetime, max_attempts: int, now: dt.datetime
) -> dict[str, Any]:
    """A waiting job in pymjq's shape plus our own fields.

    ``ts.started`` and ``ts.done`` start as None (pymjq pre-filled them with the publish
    time; readers must accept both).
    """
    return {
        "_id": ObjectId(),
        "status": Status.WAITING.value,
        "ts": {"created": now, "started": None, "done": None},
        "data": data,
        "priority": priority,
        "available_at": available_at,
        "attempts": 0,
        "max_attempts": max_attempts,
        "lease_until": None,
        "worker": None,
    }


def error_document(error: BaseException | str) -> dict[str, str]:
    """What ``fail()`` stores about an error: its type, message and traceback."""
    if isinstance(error, BaseException):
        text = "".join(tb.format_exception(type(error), error, error.__traceback__))
        return {"type": type(error).__name__, "message": str(error), "traceback": text}
    return {"type": "Error", "message": str(error), "traceback": ""}


MAX_MESSAGE = 200  # characters of a progress message kept


def progress_value(done: float, total: float | None, message: str | None) -> dict[str, Any]:
    """The ``progress`` field: ``{"done", "total", "message", "at"}``, checked (ValueError)."""
    numbers = [done] if total is None else [done, total]
    if any(isinstance(n, bool) or not isinstance(n, (int, float)) for n in numbers):
        raise ValueError("progress: done and total must be numbers")
    if not all(0 <= n < float("inf") for n in numbers):  # also NaN
        raise ValueError("progress: done and total must be finite and not negative")
    if total is not None and total == 0:
        raise ValueError("progress: total must be more than 0 (or None when unknown)")
    if message is not None and not isinstance(message, str):
        raise ValueError("progress: message must be a string")
    text = None if message is None else message[:MAX_MESSAGE]
    return {"done": done, "total": total, "message": text, "at": utcnow()}


class Job(dict):
    """A job document as returned by the queue: a plain ``dict`` with a few conveniences.

    pymjq printed dicts and users index ``job["data"]``, so a ``Job`` is one.
    """

    finished = False  # set once this process has finished or released it
    _progress: Any = None  # the claim's progress writer (progress.py), set by the queue
    _worker: dict[str, Any] | None = None  # its worker's registry record, read by q.get()

    @property
    def id(self) -> ObjectId:
        return self["_id"]

    @property
    def data(self) -> Any:
        return self.get("data")

    @property
    def status(self) -> Status:
        return Status(self["status"])

    @property
    def attempts(self) -> int:
        return int(self.get("attempts") or 0)

    @property
    def error(self) -> dict[str, str] | None:
        return self.get("error")

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Say how far a running job is (from its handler, or a ``claim()`` block): shown live
        by the tail and the job's display, kept in history with the outcome. Call it as often
        as you like: it is written at most about once a second."""
        value = progress_value(done, total, message)
        if self._progress is None:
            raise JobQueueError(
                f"job {self.get('_id')} is not claimed in this process: only the handler "
                "running it can report its progress"
            )
        self["progress"] = value
        self._progress.update(value)

    def __repr__(self) -> str:
        return f"Job({dict.__repr__(self)})"

    def _repr_html_(self) -> str:
        from .notebook.display import job_html  # display sits above this layer: import on use

        return job_html(self, worker=self._worker)


class JobList(list):
    """Jobs as a plain ``list`` for code, shown as a table in a notebook."""

    def __repr__(self) -> str:
        from .notebook.display import job_list_text  # display sits above this layer: import on use

        return job_list_text(self)

    def _repr_html_(self) -> str:
        from .notebook.display import job_list_html

        return job_list_html(self)
