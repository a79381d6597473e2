"""Every queue in a database at a glance: ``mjq_notebook.queues(db)`` and ``mjq queues``.

A queue is a capped collection: ours, or one pymjq made (its jobs carry only ``status``,
``ts`` and ``data``). Our queues keep plain collections beside them, ``<q>.history``,
``<q>.meta``, ``<q>.workers``, ``<q>.audit``, ``<q>.attempts`` (``names.COMPANIONS``); a name
ending so is a companion, never a queue (even a capped one another program made), and neither
are plain collections, views, ``system.*`` collections, nor a capped collection whose newest
document is not a job (a capped log, say).

Nothing here writes: no collection or index is created, so listing a database's queues, or
opening one by a mistyped name, leaves the database as it was. Every read is bounded whatever
the size of history: history is read through its ``status`` and ``ts.done`` indexes and its
size from collection metadata; the ring's reads are bounded by its capped size.
"""

from __future__ import annotations

import contextvars
import datetime as dt
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from bson.codec_options import CodecOptions

from ..text import format_seconds, printable, workers_count
from .job import FINISHED, IN_HISTORY, STATUSES, Status, utcnow
from .names import COMPANIONS
from .outage import unavailable_as_error
from .parts.control import CONTROL_ID
from .parts.reads import Reads
from .registry import ALIVE, State, as_read
from .wakeup import last_inserted

if TYPE_CHECKING:
    import pandas as pd
    from pymongo.database import Database

RECENT_S = 600.0  # "finished lately": in the last ten minutes
PARALLEL = 8  # queues read at once (each read is a few small round trips)
_CODEC: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=dt.timezone.utc)


@unavailable_as_error
def queue_names(db: Database) -> list[str]:
    """The names of the queues in ``db``, sorted.

    Costs one listCollections, plus one read of the newest document of each capped collection
    that has no companion of ours (a pymjq queue, or a capped collection that is no queue).
    """
    return sorted(_listing(db)[0])


def _listing(db: Database) -> tuple[list[str], set[str]]:
    """(queue names, every collection name) from one listCollections."""
    capped, names = [], set()
    for info in db.list_collections():
        name = info["name"]
        names.add(name)
        is_collection = info.get("type", "collection") == "collection"
        if is_collection and (info.get("options") or {}).get("capped"):
            capped.append(name)
    found = []
    for name in capped:
        if name.startswith("system.") or name.endswith(COMPANIONS):
            continue  # names JobQueue refuses: MongoDB's own, and the companions
        ours = any(name + suffix in names for suffix in COMPANIONS)
        if ours or _holds_jobs(db, name):
            found.append(name)
    return found, names


def _holds_jobs(db: Database, name: str) -> bool:
    """Whether a capped collection without companions is a queue: empty, or its newest
    document looks like a job (pymjq's: ``status`` and ``ts``)."""
    newest = last_inserted(db[name], {"status": 1, "ts": 1})
    return newest is None or ("status" in newest and isinstance(newest.get("ts"), Mapping))


@unavailable_as_error
def queues(db: Database, *, now: dt.datetime | None = None) -> QueueList:
    """Every queue in ``db``, one row (a dict) per queue, by name: a table in a notebook,
    text in a terminal, ``to_frame()`` for pandas.

    Each row: ``queue`` (its name); ``waiting``, ``working``, ``done``, ``failed``,
    ``cancelled`` and ``lost`` as ``JobQueue.counts()``; ``finished_10min``, jobs finished in
    the last ten minutes (done, failed or cancelled); ``oldest_waiting_s``, the age of the
    oldest waiting job (None: none waits); ``paused``; ``workers``, the workers alive in its
    registry, and ``workers_lost``, those silent too long (both None: no registry, as on a
    pymjq queue).

    Cost: one listCollections (see ``queue_names``), then per queue 9 to 11 small round
    trips, none of which grows with history: the 6 of ``counts()``, 2 for the recent
    finishes (history's ``ts.done`` index; pymjq's finished jobs in the ring), 1 for the pause
    flag, 1 for the oldest waiting job (only when one waits) and 1 for the registry (only
    where there is one). Up to ``PARALLEL`` queues are read at once. Nothing is written.
    """
    db = db.with_options(codec_options=_CODEC)
    names, collections = _listing(db)
    now = now or utcnow()

    def row(name: str) -> dict[str, Any]:
        return queue_row(db, name, registry=f"{name}.workers" in collections, now=now)

    names.sort()
    if len(names) <= 1:
        rows = [row(name) for name in names]
    else:
        # each read runs in a copy of the caller's context, so a ``pymongo.timeout`` around
        # the call bounds the pool's reads too
        with ThreadPoolExecutor(min(PARALLEL, len(names)), "mjq-queues") as pool:
            futures = [pool.submit(contextvars.copy_context().run, row, name) for name in names]
            rows = [future.result() for future in futures]
    return QueueList(rows, database=db.name)


def queue_row(
    db: Database, name: str, *, registry: bool = True, now: dt.datetime | None = None
) -> dict[str, Any]:
    """One queue's row of ``queues(db)`` (see there); ``registry``: read ``<name>.workers``."""
    db = db.with_options(codec_options=_CODEC)
    now = now or utcnow()
    ring, history, meta = db[name], db[f"{name}.history"], db[f"{name}.meta"]
    row: dict[str, Any] = {"queue": name}
    row.update(Reads(ring, history, meta).counts(warn=False))
    since = now - dt.timedelta(seconds=RECENT_S)
    # ours are counted in history; pymjq's finished jobs in the ring until the sweep copies them
    row["finished_10min"] = history.count_documents({"ts.done": {"$gte": since}})
    pymjq_finished = {
        "status": {"$in": list(FINISHED)},
        "max_attempts": {"$exists": False},
        IN_HISTORY: {"$ne": True},  # finished by us: in history
    }
    row["finished_10min"] += ring.count_documents({**pymjq_finished, "ts.done": {"$gte": since}})
    row["oldest_waiting_s"] = _oldest_waiting(ring, now) if row["waiting"] else None
    control = meta.find_one({"_id": CONTROL_ID}, {"paused": 1}) or {}
    row["paused"] = bool(control.get("paused"))
    row["workers"] = row["workers_lost"] = None
    if registry:
        fields = {"state": 1, "heartbeat": 1, "interval": 1}
        records = db[f"{name}.workers"].find({"state": {"$in": list(ALIVE)}}, fields)
        states = [as_read(doc, now)["state"] for doc in records]
        row["workers"] = sum(state in ALIVE for state in states)
        row["workers_lost"] = states.count(State.LOST.value)
    return row


def _oldest_waiting(ring: Any, now: dt.datetime) -> float | None:
    """Seconds since the oldest waiting job was created (by ``_id``, the publish order)."""
    doc = ring.find_one({"status": Status.WAITING.value}, {"ts.created": 1}, sort=[("_id", 1)])
    created = ((doc or {}).get("ts") or {}).get("created")
    if not isinstance(created, dt.datetime):
        created = getattr((doc or {}).get("_id"), "generation_time", None)
    return None if created is None else max((now - created).total_seconds(), 0.0)


COLUMNS = (*STATUSES, "lost", "finished_10min", "oldest_waiting_s", "paused", "workers")
HEADS = {"finished_10min": "finished 10 min", "oldest_waiting_s": "oldest waiting"}  # else the name


class QueueList(list):
    """The rows of ``queues(db)`` (dicts) as a plain ``list``: a table in a notebook, text in
    a terminal, ``to_frame()`` for pandas."""

    def __init__(self, rows: Sequence[Mapping[str, Any]] = (), database: str = "") -> None:
        super().__init__(rows)
        self.database = database

    def by_name(self) -> dict[str, dict[str, Any]]:
        """Rows by queue name."""
        return {row["queue"]: row for row in self}

    def __repr__(self) -> str:
        return queues_text(self)

    def _repr_html_(self) -> str:
        from ..notebook.display import queues_html  # display sits above this layer

        return queues_html(self)

    def to_frame(self) -> pd.DataFrame:
        """One row per queue, the columns of the rows (``queue`` first)."""
        import pandas as pd

        columns = ["queue", *COLUMNS, "workers_lost"]
        return pd.DataFrame([{k: row.get(k) for k in columns} for row in self], columns=columns)


def queue_cells(row: Mapping[str, Any]) -> dict[str, str]:
    """One queue as the text of each column (``mjq queues``; the HTML table escapes these)."""
    cells = {"queue": printable(row.get("queue"))}
    for name in (*STATUSES, "lost", "finished_10min"):
        cells[name] = f"{row.get(name) or 0:,}"
    oldest = row.get("oldest_waiting_s")
    cells["oldest_waiting_s"] = "—" if oldest is None else format_seconds(oldest)
    cells["paused"] = "paused" if row.get("paused") else "—"
    workers, lost = row.get("workers"), row.get("workers_lost")
    cells["workers"] = (
        "—" if workers is None else workers_count({"running": workers, "lost": lost or 0})
    )
    return cells


def queues_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain table, one line per queue (``mjq queues``, ``repr(queues(db))``)."""
    if not rows:
        return "no queues"
    columns = ("queue", *COLUMNS)
    heads = {c: HEADS.get(c, c) for c in columns}
    cells = [queue_cells(row) for row in rows]
    widths = {c: max(len(heads[c]), *(len(r[c]) for r in cells)) for c in columns}

    def line(values: Mapping[str, str]) -> str:
        text = [values[c].ljust(widths[c]) if c == "queue" else values[c].rjust(widths[c])
                for c in columns]  # fmt: skip
        return "  ".join(text).rstrip()

    return "\n".join([line(heads), *(line(r) for r in cells)])
