"""The job record: status names, the document schema and the ``Job`` dict."""

from __future__ import annotations

import datetime as dt
import enum
import re
import traceback as tb
from collections.abc import Mapping, Sequence
from typing import Any

import bson
from bson import ObjectId
from bson.errors import InvalidDocument

from ..errors import JobIdError, JobQueueError, PublishError
from ..text import format_bytes, printable
from .fingerprint import fingerprint


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
# the jobs each bulk action (``q.retry_all`` ...) changes, as a person names them
ACTS_ON = {"retry": "failed", "cancel": "waiting", "promote": "delayed"}
# An aggregation expression, true for jobs this package published: they carry max_attempts,
# pymjq's documents never do (nor get it when we finish them; a q.retry() gives it).
PUBLISHED_BY_US = {"$ne": [{"$type": "$max_attempts"}, "missing"]}


# Set on a job's document in the ring when its finish was written to history first (by this
# package): the sweep and counts() then need not look it up, and a history row pruned since
# is not copied back. Finishes written by others (pymjq) lack it.
IN_HISTORY = "in_history"

MAX_BSON_SIZE = 16 * 2**20  # MongoDB's document limit
# What a claim and a finish add to a job (status, times, lease, worker, attempts, progress and
# an error, whose texts are capped below): a job is refused at publish when it would leave
# less, since every claim of it would then fail.
FIELDS_ROOM = 512 * 2**10
MAX_JOB_SIZE = MAX_BSON_SIZE - FIELDS_ROOM
MAX_ERROR_MESSAGE = 64 * 2**10  # characters of an error's message kept
MAX_TRACEBACK = 4 * MAX_ERROR_MESSAGE  # ...and of its traceback


def stored_size(doc: dict[str, Any], what: str, limit: int = MAX_JOB_SIZE) -> int:
    """The BSON size of ``doc``; PublishError naming ``what`` when it can't be stored (not
    encodable) or is over ``limit`` (by default, what a job may hold). Every publish path
    checks here."""
    try:
        size = len(bson.encode(doc))
    except (InvalidDocument, TypeError, OverflowError, ValueError, RecursionError) as exc:
        raise PublishError(f"{what} can't be stored as BSON: {exc}; nothing was written") from None
    if size > limit:
        raise PublishError(
            f"{what} is {format_bytes(size)} as BSON, over the {format_bytes(limit)} a job may "
            f"hold (MongoDB's {format_bytes(MAX_BSON_SIZE)} document limit, less "
            f"{format_bytes(FIELDS_ROOM)} for what a claim and a finish add); nothing was written"
        )
    return size


def result_size(job: dict[str, Any], result: Any) -> int:
    """The BSON size of ``result``; PublishError when it is not encodable, or too large to
    store with the job (a finish writes both into one document)."""
    size = stored_size({"result": result}, f"the result of job {job.get('_id')}", MAX_BSON_SIZE)
    rest = {key: value for key, value in job.items() if key not in ("result", "error")}
    room = MAX_BSON_SIZE - FIELDS_ROOM // 2 - len(bson.encode(rest))
    if size > room:
        raise PublishError(
            f"result too large to store ({format_bytes(size)}; at most "
            f"{format_bytes(MAX_BSON_SIZE)} with the job, whose data takes "
            f"{format_bytes(MAX_BSON_SIZE - room)})"
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
    isn't, before anything is written), and so are ``priority`` and ``delay``."""
    priority, delay = checked_priority(priority), checked_delay(delay)
    now = utcnow()
    available = now + dt.timedelta(seconds=delay)
    docs = []
    for index, data in enumerate(items):
        doc = new_document(
            data, priority=priority, available_at=available, max_attempts=max_attempts, now=now
        )
        stored_size(doc, f"the data of job {index}" if len(items) > 1 else "the data")
        docs.append(doc)
    return docs


MIN_PRIORITY, MAX_PRIORITY = -(2**63), 2**63 - 1  # stored as a signed 64-bit integer
MAX_DELAY_S = 10 * 365.25 * 86_400.0  # ten years: a longer delay is a mistake, not a plan


def checked_priority(priority: Any) -> int:
    """``priority`` as an int; PublishError unless it is a whole number MongoDB can store."""
    try:
        value = int(priority)
    except (TypeError, ValueError, OverflowError):
        value = None
    if value is None or not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise PublishError(
            f"priority must be a whole number from -2**63 to 2**63-1 (a signed 64-bit "
            f"integer), not {priority!r:.40}; nothing was written"
        )
    return value


def checked_delay(delay: Any) -> float:
    """``delay`` in seconds as a float; PublishError unless it is from 0 to ``MAX_DELAY_S``
    (NaN, infinity and centuries included)."""
    try:
        value = float(delay)
    except (TypeError, ValueError, OverflowError):
        value = None
    if value is None or not 0 <= value <= MAX_DELAY_S:  # also NaN
        raise PublishError(
            f"delay must be a number of seconds from 0 to {MAX_DELAY_S:,.0f} (ten years), "
            f"not {delay!r:.40}; nothing was written"
        )
    return value


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


def error_document(error: BaseException | str, kind: str | None = None) -> dict[str, str]:
    """What ``fail()`` stores about an error: its type (``kind`` if given), message and
    traceback, each text cut to a size that always fits beside the job (saying so where it
    was cut), and its fingerprint (``group``, ``pattern``, ``frame``: ``fingerprint.py``)
    by which ``q.errors()`` groups failures."""
    if isinstance(error, BaseException):
        text = "".join(tb.format_exception(type(error), error, error.__traceback__))
        kind = kind or type(error).__name__
    else:
        text, kind = "", kind or "Error"
    kind, message = _cut(kind, 200), _cut(_text(error), MAX_ERROR_MESSAGE)
    return {
        "type": kind,
        "message": message,
        "traceback": _cut(text, MAX_TRACEBACK),
        **fingerprint(kind, message, text),
    }


def _text(error: BaseException | str) -> str:
    try:
        return str(error)
    except Exception as exc:  # an exception whose __str__ raises still fails its job
        return f"<str() of the error raised {type(exc).__name__}>"


def _cut(text: str, most: int) -> str:
    """``text`` itself, or its head and tail with a note of how much was left out."""
    if len(text) <= most:
        return text
    keep = most // 2
    left = len(text) - 2 * keep
    return f"{text[:keep]}\n… [{left:,} characters cut: too large to store] …\n{text[-keep:]}"


def malformed(doc: dict[str, Any]) -> str | None:
    """Why a waiting job another program wrote can't be claimed even once repaired (see
    ``quarantine.repairs``), or None: it leaves no room for the fields a claim adds."""
    size = len(bson.encode(doc))
    if size > MAX_JOB_SIZE:
        return f"it is {format_bytes(size)}, over the {format_bytes(MAX_JOB_SIZE)} a job may hold"
    return None


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
    _story: Sequence[Mapping[str, Any]] | None = None  # its attempts (q.story), read by q.get()

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
        from ..notebook.display import job_html  # display sits above this layer: import on use

        return job_html(self, worker=self._worker, attempts=self._story)


# 24 hex digits, as displays print an ObjectId; or its repr, ObjectId('...'), pasted whole
_HEX_ID = re.compile(r"\s*(?:ObjectId\(\s*(['\"])([0-9a-fA-F]{24})\1\s*\)|([0-9a-fA-F]{24}))\s*")


_HEX_HINT = "24 hex digits, as the displays show"


def job_id(value: Any) -> Any:
    """The ``_id`` a job is named by, as every method and ``mjq`` command taking a job reads it:
    an ``ObjectId`` as is; a string of 24 hex digits (as the displays show ids; spaces around
    it and an ``ObjectId('...')`` around it are fine) as that ObjectId; a document (a ``Job``,
    a row of ``q.jobs()``, any mapping) as its ``_id``. ``JobIdError`` for any other string,
    None, or a document without ``_id``.

    Other ids (an int, say: documents other programs wrote may have any ``_id``) are used as
    they are. A hex string always means an ObjectId: a job whose ``_id`` is a *string* is
    named by its document (``{"_id": "..."}``), not by the bare string."""
    if isinstance(value, ObjectId):
        return value
    if isinstance(value, Mapping):
        if "_id" not in value:
            raise JobIdError(f"{_shown(value)} is not a job: it has no _id")
        return value["_id"]
    if isinstance(value, str):
        found = _HEX_ID.fullmatch(value)
        if found is None:
            raise JobIdError(f"{_shown(value)} is not a job id: {_HEX_HINT}")
        return ObjectId(found.group(2) or found.group(3))
    if value is None:
        raise JobIdError("None is not a job id: give a job, its ObjectId or its 24 hex digits")
    return value


def _shown(value: Any, most: int = 40) -> str:
    """``value``'s repr for an error message: escaped, and cut if long."""
    text = printable(repr(value))
    return text if len(text) <= most else text[: most - 1] + "…"


def id_order(value: Any) -> tuple[int, Any]:
    """A sort key for ``_id`` values as MongoDB orders them: by BSON type, then by value
    (numbers < strings < ObjectIds; hand-written jobs may have any of them)."""
    if isinstance(value, ObjectId):
        return 3, value
    if isinstance(value, str):
        return 2, value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return 1, value
    return 0, str(value)


class JobList(list):
    """Jobs as a plain ``list`` for code, shown as a table in a notebook."""

    def __repr__(self) -> str:
        from ..notebook.display import job_list_text  # display sits above this layer: import on use

        return job_list_text(self)

    def _repr_html_(self) -> str:
        from ..notebook.display import job_list_html

        return job_list_html(self)

    def to_frame(self) -> Any:
        """The jobs as a DataFrame in ``q.history()``'s columns, oldest first (needs pandas)."""
        from ..analysis.history import jobs_frame  # above this layer: import on use

        return jobs_frame(self)
