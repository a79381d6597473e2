"""Who did what to a queue: the actions people take, each appended to ``<queue>.audit``.

An action taken from a dashboard page, a notebook widget or the ``mjq`` command (publish
from the form, pause, resume, cancel, run now, release, requeue, requeue all, retry all,
cancel all, run all now, prune, resize) goes through :class:`Steering`, which does it on the
queue and then records when, what, which jobs (or how many) and who. Programs calling
``q.pub()`` and workers are not audited: the record is of people's hands on the queue, not
of its traffic.

A viewer (``Actor.role == "viewer"``: the read-only token of ``mjq dashboard``) gets a
Steering that refuses every action with :class:`ReadOnlyError` before touching the
database, so a page that shows no action button also has no path to one.

The record is a plain collection beside the queue (a capped one would lose entries
unseen); an entry keeps at most ``MAX_IDS`` job ids, and ``count`` is always exact.
"""

from __future__ import annotations

import datetime as dt
import getpass
import logging
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from bson.codec_options import CodecOptions, DatetimeConversion
from pymongo import DESCENDING
from pymongo.errors import PyMongoError

from ..errors import ReadOnlyError
from ..text import format_seconds
from .job import job_id

if TYPE_CHECKING:
    from .parts.bulk import Progress, Query
    from .queue import JobQueue

log = logging.getLogger("mjq_notebook")

SUFFIX = ".audit"
MAX_IDS = 100  # job ids kept in one entry; "count" says how many there were
MAX_DETAIL = 1000  # characters of a detail (a filter, say) kept
VIAS = ("cli", "notebook", "page")
ROLES = ("owner", "viewer")
ROLE_ENV = "HTTP_X_MJQ_ROLE"  # set in a page's kernel by mjq dashboard (web/roles.py)
CLIENT_ENV = "HTTP_X_MJQ_CLIENT"
# what read() decodes: anything a program could have written
_READ_CODEC = CodecOptions(
    document_class=dict,
    tz_aware=True,
    tzinfo=dt.timezone.utc,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
    unicode_decode_error_handler="replace",
)


@dataclass(frozen=True)
class Actor:
    """Who acts: through what (``via``), as which OS user on which host, and for a page
    the token's ``role`` and the browser's ``client`` address."""

    via: str
    user: str
    host: str
    role: str = "owner"
    client: str | None = None

    @classmethod
    def here(cls, via: str) -> Actor:
        """This process's user and host, acting through ``via`` ("cli" or "notebook")."""
        return cls(via=via, user=_user(), host=socket.gethostname())

    @classmethod
    def page(cls, env: Mapping[str, str] | None = None) -> Actor:
        """The person behind a dashboard page, as mjq dashboard told its kernel (``env``,
        default ``os.environ``). Anything but an explicit "owner" is a viewer: a kernel that
        was not told its role acts read-only."""
        env = os.environ if env is None else env
        role = "owner" if env.get(ROLE_ENV) == "owner" else "viewer"
        client = env.get(CLIENT_ENV) or None
        return cls(via="page", user=_user(), host=socket.gethostname(), role=role, client=client)

    @property
    def read_only(self) -> bool:
        return self.role != "owner"


class Steering:
    """The actions a person takes on ``queue``, each recorded in its audit with ``actor``.

    Each method returns what the queue's own method returns; an action that changed nothing
    (a cancel of a job no longer waiting) is not recorded."""

    def __init__(self, queue: JobQueue, actor: Actor) -> None:
        self.queue = queue
        self.actor = actor

    @property
    def read_only(self) -> bool:
        return self.actor.read_only

    def pub_many(self, items: Iterable[Any], **options: Any) -> list[ObjectId]:
        self._allowed("publish")
        ids = self.queue.pub_many(items, **options)
        if ids:
            self._note("publish", jobs=ids)
        return ids

    def pause(self) -> None:
        self._allowed("pause")
        self.queue.pause()
        self._note("pause")

    def resume(self) -> None:
        self._allowed("resume")
        self.queue.resume()
        self._note("resume")

    def cancel(self, job: Any) -> bool:
        return self._one("cancel", self.queue.cancel, job)

    def promote(self, job: Any) -> bool:
        return self._one("run now", self.queue.promote, job)

    def reclaim(self, job: Any) -> bool:
        return self._one("release", self.queue.reclaim, job)

    def retry(self, job: Any) -> bool:
        return self._one("requeue", self.queue.retry, job)

    def retry_with(self, job: Any, data: Any) -> bool:
        """Edit and retry: the failed ``job`` runs again with ``data``; its edit says who."""
        self._allowed("edit and retry")
        who = {k: v for k, v in asdict(self.actor).items() if v is not None}
        changed = bool(self.queue.retry(job, data, by=who))
        if changed:
            self._note("edit and retry", jobs=[job_id(job)])
        return changed

    def retry_failed(self, query: Mapping[str, Any] | None = None) -> int:
        self._allowed("requeue all")
        count = self.queue.retry_failed(query)
        if count:
            self._note("requeue all", count=count, detail=repr(dict(query or {})))
        return count

    def retry_all(self, query: Query, *, progress: Progress | None = None) -> int:
        return self._all("retry all", self.queue.retry_all, query, progress)

    def cancel_all(self, query: Query, *, progress: Progress | None = None) -> int:
        return self._all("cancel all", self.queue.cancel_all, query, progress)

    def promote_all(self, query: Query, *, progress: Progress | None = None) -> int:
        return self._all("run all now", self.queue.promote_all, query, progress)

    def prune_history(self, older_than: float | dt.timedelta) -> int:
        self._allowed("prune")
        count = self.queue.prune_history(older_than)
        seconds = older_than.total_seconds() if isinstance(older_than, dt.timedelta) else older_than
        if count:  # a scheduled prune with nothing to delete would fill the audit with noise
            self._note("prune", count=count, detail=f"finished over {format_seconds(seconds)} ago")
        return count

    def resize(self, size_bytes: int | None = None, max_jobs: int | None = None) -> Any:
        self._allowed("resize")
        limits = self.queue.resize(size_bytes=size_bytes, max_jobs=max_jobs)
        self._note("resize", detail=f"size_bytes={size_bytes}, max_jobs={max_jobs}")
        return limits

    def _one(self, action: str, method: Any, job: Any) -> bool:
        self._allowed(action)
        changed = bool(method(job))
        if changed:
            self._note(action, jobs=[job_id(job)])
        return changed

    def _all(self, action: str, method: Any, query: Query, progress: Progress | None) -> int:
        """A bulk action: one entry, its exact count, the query as the detail (its text, or
        a filter's repr) and the first ``MAX_IDS`` ids changed."""
        self._allowed(action)
        changed: list[Any] = []
        count = int(method(query, progress=progress, changed=changed))
        if count:
            detail = query if isinstance(query, str) else repr(dict(query))
            self._note(action, jobs=changed[:MAX_IDS], count=count, detail=detail)
        return count

    def _allowed(self, action: str) -> None:
        if self.actor.read_only:
            raise ReadOnlyError(f"can't {action}: this {self.actor.via} is read-only")

    def _note(self, action: str, *, jobs: list[Any] | None = None, count: int | None = None,
              detail: str | None = None) -> None:  # fmt: skip
        """Record a done action. If the server refuses the entry, the action stays done and
        its result is still returned (``mjq pub`` must print the ids it published, or they
        are published twice): a warning says what the audit is missing."""
        try:
            record(self.queue, action, self.actor, jobs=jobs, count=count, detail=detail)
        except PyMongoError as exc:
            log.warning("%s on queue %s was done but not recorded in its audit: %s",
                        action, self.queue.name, exc)  # fmt: skip


def record(queue: JobQueue, action: str, actor: Actor, *, jobs: list[Any] | None = None,
           count: int | None = None, detail: str | None = None) -> ObjectId:  # fmt: skip
    """Append one entry to ``queue``'s audit: ``action`` by ``actor`` on ``jobs`` (or on
    ``count`` jobs; both: ``count`` jobs of which ``jobs`` are the first), with a ``detail``
    such as the filter used; returns the entry's id."""
    entry: dict[str, Any] = {
        "_id": ObjectId(),
        "at": dt.datetime.now(dt.timezone.utc),
        "action": action,
        "count": len(jobs) if count is None and jobs is not None else count,
        "who": {k: v for k, v in asdict(actor).items() if v is not None},
    }
    if jobs is not None:
        entry["jobs"] = list(jobs[:MAX_IDS])
    if detail is not None:
        entry["detail"] = detail[:MAX_DETAIL]  # as text: a filter's $-keys can't be stored
    audit = audit_collection(queue)
    if audit.full_name not in _INDEXED:  # once per process: the read's sort uses it
        audit.create_index([("at", DESCENDING), ("_id", DESCENDING)])
        _INDEXED.add(audit.full_name)
    audit.insert_one(entry)
    return entry["_id"]


_INDEXED: set[str] = set()  # the audits this process has made sure are indexed


def read(queue: JobQueue, limit: int = 100) -> AuditList:
    """The newest ``limit`` entries of ``queue``'s audit, newest first.

    Other programs can write there too: their dates out of Python's range and broken UTF-8
    are read as they are (``DatetimeMS``, U+FFFD), and an entry keeps ``MAX_IDS`` job ids."""
    limit = int(limit)
    if limit < 1:  # to MongoDB a limit of 0 means none
        return AuditList()
    audit = audit_collection(queue).with_options(codec_options=_READ_CODEC)
    cursor = audit.find({}, {"jobs": {"$slice": MAX_IDS}})
    # newest first by time (ids made in two processes in one second don't say which came
    # first); the index record() makes serves the sort, however long the audit grows
    return AuditList(cursor.sort([("at", DESCENDING), ("_id", DESCENDING)]).limit(limit))


def audit_collection(queue: JobQueue) -> Any:
    """``<queue>.audit``: a plain collection (made on first use)."""
    return queue.db[queue.name + SUFFIX]


class AuditList(list):
    """Audit entries as a plain ``list`` of dicts for code, shown as a table in a notebook."""

    def __repr__(self) -> str:
        from ..notebook.display import audit_text  # display sits above this layer

        return audit_text(self)

    def _repr_html_(self) -> str:
        from ..notebook.display import audit_html

        return audit_html(self)

    def to_frame(self) -> Any:
        """The entries as a DataFrame: one row each, ``who`` spread into columns."""
        import pandas as pd

        return pd.DataFrame([_flat(entry) for entry in self])


def _flat(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An entry with ``who`` spread into ``who_*`` columns (kept whole if not a document)."""
    who = entry.get("who")
    if not isinstance(who, Mapping):
        return dict(entry)
    return {
        **{k: v for k, v in entry.items() if k != "who"},
        **{f"who_{k}": v for k, v in who.items()},
    }


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid with no passwd entry (containers)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"
