"""``q.errors()``: failed jobs grouped by their error's fingerprint (``core/fingerprint.py``),
computed by one aggregation inside MongoDB, so one row per group crosses the network, never
one per failure. ``df.mjq.errors()`` groups a history frame's error columns the same way.

A failure stored with its fingerprint (``fail()`` of this package) is grouped by
``error.group`` on the server; one stored without (pymjq's, another program's, a plain string,
one failed before fingerprints) by its (type, message) on the server, and those rows are then
fingerprinted here and merged into their groups. The per-hour counts of each group (its
sparkline) come from a first grouping by (group, hour); they cover the group's span, at most
its newest ``SPARK_HOURS`` hours. Importing this module imports no pandas.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..core.error_groups import IS_TEXT, KEY, TAIL, GroupMembers, key_fingerprint, members
from ..core.fingerprint import pattern_of
from ..core.job import IN_HISTORY, Status
from ..core.outage import unavailable_as_error

if TYPE_CHECKING:
    import pandas as pd

    from ..core.queue import JobQueue

SPARK_HOURS = 48  # hours of a group's sparkline: its newest
MAX_WORKERS = 20  # worker ids listed per group ("workers" counts them all)
MAX_MESSAGE = 500  # characters of a group's example message
HOUR_MS = 3_600_000
COLUMNS = ("group", "type", "pattern", "frame", "count", "first", "last", "hours",
           "workers", "workers_count", "example", "message", "query", "filter")  # fmt: skip


class ErrorList(list):
    """Error groups, newest last failure first, as a plain ``list`` of dicts for code (keys:
    ``COLUMNS``), shown as a table in a notebook. ``hours`` are the counts per hour over the
    group's span (the first hour is ``hours_from``); ``query`` is the job query naming the
    group's jobs (``group:<key>``), ``filter`` the MongoDB filter matching exactly them."""

    def __repr__(self) -> str:
        from ..notebook.display import errors_text  # display sits above this layer

        return errors_text(self)

    def _repr_html_(self) -> str:
        from ..notebook.display import errors_html

        return errors_html(self)

    def to_frame(self) -> pd.DataFrame:
        """One row per group (``hours`` and ``workers`` as lists)."""
        import pandas as pd

        return pd.DataFrame([{k: g.get(k) for k in COLUMNS if k != "filter"} for g in self])


@unavailable_as_error
def errors(
    queue: JobQueue, since: Any = None, query: str | Mapping[str, Any] | None = None
) -> ErrorList:
    """The failed jobs of ``queue`` (ring and history, each job once) grouped by error:
    ``since`` bounds ``ts.done`` (a datetime, a time pandas reads, or a duration meaning
    ago, as ``q.history(since=...)``); ``query`` a job query (text) or a MongoDB filter."""
    match = _match(queue, since, query)
    ring = queue.collection.name
    pipeline: list[dict[str, Any]] = [
        {"$match": match},
        {
            "$unionWith": {
                "coll": ring,
                "pipeline": [  # failures of ours are in history; others' until swept there
                    {"$match": {"$and": [match, {IN_HISTORY: {"$ne": True}}]}},
                    {
                        "$lookup": {
                            "from": queue.history_collection.name,
                            "localField": "_id",
                            "foreignField": "_id",
                            "as": "_h",
                        }
                    },
                    {"$match": {"_h": {"$size": 0}}},
                ],
            }
        },
        {"$project": _FIELDS},
        {"$group": {"_id": {"k": "$k", "h": "$h"}, **_COLLECT, "n": {"$sum": 1}}},
        {
            "$group": {
                "_id": "$_id.k",
                "count": {"$sum": "$n"},
                "hours": {"$push": {"h": "$_id.h", "n": "$n"}},
                **{name: {"$first": f"${name}"} for name in ("t", "m", "p", "f")},
                "tb": {"$max": "$tb"},
                "first": {"$min": "$first"},
                "last": {"$max": "$last"},
                "example": {"$max": "$example"},
                "workers": {"$push": "$workers"},
            }
        },
        {
            "$project": {
                **dict.fromkeys(("count", "hours", "t", "m", "p", "f", "tb", "first", "last"), 1),
                "example": 1,
                "workers": {
                    "$reduce": {
                        "input": "$workers",
                        "initialValue": [],
                        "in": {"$setUnion": ["$$value", "$$this"]},
                    }
                },
            }
        },
        {
            "$project": {
                **dict.fromkeys(("count", "hours", "t", "m", "p", "f", "tb"), 1),
                "first": 1,
                "last": 1,
                "example": 1,
                "workers_count": {"$size": "$workers"},
                "workers": {"$slice": ["$workers", MAX_WORKERS]},
            }
        },
    ]
    rows = queue.history_collection.aggregate(pipeline)
    return merged(rows)


def _match(queue: JobQueue, since: Any, query: str | Mapping[str, Any] | None) -> dict[str, Any]:
    clauses: list[Mapping[str, Any]] = [{"status": Status.FAILED.value}]
    if since is not None:
        clauses.append({"ts.done": {"$gte": _moment(since)}})
    if isinstance(query, str):
        from ..core.query import compile_query

        query = compile_query(query, groups=GroupMembers(queue))  # group: as q.find's
    if query:
        clauses.append(query)
    return {"$and": clauses} if len(clauses) > 1 else dict(clauses[0])


def _moment(since: Any) -> dt.datetime:
    if isinstance(since, dt.datetime) and not isinstance(since, str):
        return since if since.tzinfo else since.replace(tzinfo=dt.timezone.utc)
    from .fetch import _as_datetime  # q.history()'s reading of times (pandas): on use

    return _as_datetime(since)


_FIELDS = {
    # the key: the stored fingerprint, else (type, message) to fingerprint here
    "k": {"$ifNull": ["$error.group", KEY]},
    "h": {  # the hour of the failure (date arithmetic: $dateTrunc needs MongoDB 5.0)
        "$cond": [
            {"$eq": [{"$type": "$ts.done"}, "date"]},
            {"$subtract": ["$ts.done", {"$mod": [{"$toLong": "$ts.done"}, HOUR_MS]}]},
            None,
        ]
    },
    "done": "$ts.done",
    "worker": 1,
    "t": "$error.type",
    "m": {  # the example message: text only (a message stored as a document reads as "")
        "$cond": [
            IS_TEXT,
            {"$substrCP": ["$error", 0, MAX_MESSAGE]},
            {
                "$cond": [
                    {"$eq": [{"$type": "$error.message"}, "string"]},
                    {"$substrCP": ["$error.message", 0, MAX_MESSAGE]},
                    "",
                ]
            },
        ]
    },
    "p": "$error.pattern",
    "f": "$error.frame",
    "tb": TAIL,  # "" for a failure with a fingerprint
    "_id": 1,
}
_COLLECT = {
    **{name: {"$first": f"${name}"} for name in ("t", "m", "p", "f")},
    "tb": {"$max": "$tb"},  # as error_groups.pairs picks a pair's traceback
    "first": {"$min": "$done"},
    "last": {"$max": "$done"},
    "example": {"$max": "$_id"},
    "workers": {"$addToSet": "$worker"},
}


def merged(rows: Iterable[Mapping[str, Any]]) -> ErrorList:
    """The server's rows (one per stored group, one per (type, message) without) as groups:
    rows without a stored group fingerprinted and merged into the group they belong to."""
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = row["_id"]
        if isinstance(key, Mapping):  # no stored fingerprint: (type, message) of the error
            kind, parts = str(key.get("t") or "Error"), key_fingerprint(key, row.get("tb"))
            group, member = parts["group"], dict(key)
        else:
            kind, group = str(row.get("t") or "Error"), str(key)
            parts = {"pattern": row.get("p") or "", "frame": row.get("f") or ""}
            member = None
        _add(groups, group, kind, parts, row, member)
    done = [_finished(group) for group in groups.values()]
    done.sort(key=lambda g: (_sortable(g["last"]), g["count"]), reverse=True)
    return ErrorList(done)


def _add(groups: dict[str, dict[str, Any]], key: str, kind: str, parts: Mapping[str, str],
         row: Mapping[str, Any], pair: dict[str, Any] | None) -> None:  # fmt: skip
    """Count ``row`` in its group; ``pair`` its (type, message) when it has no fingerprint."""
    workers = [w for w in row.get("workers") or [] if w is not None]
    counted = int(row.get("workers_count") or 0) - (len(row.get("workers") or []) - len(workers))
    hours = {_hour(h.get("h")): int(h.get("n") or 0) for h in row.get("hours") or []}
    group = groups.get(key)
    if group is None:
        groups[key] = {
            "group": key, "type": kind, "pattern": parts["pattern"], "frame": parts["frame"],
            "count": int(row.get("count") or 0), "first": row.get("first"),
            "last": row.get("last"), "_hours": hours, "workers": workers,
            "workers_count": counted, "example": row.get("example"),
            "message": row.get("m") or "", "query": f"group:{key}",
            "_pairs": [] if pair is None else [pair], "_stored": pair is None,
        }  # fmt: skip
        return
    group["count"] += int(row.get("count") or 0)
    group["first"] = _earliest(group["first"], row.get("first"), min)
    group["last"] = _earliest(group["last"], row.get("last"), max)
    for hour, n in hours.items():
        group["_hours"][hour] = group["_hours"].get(hour, 0) + n
    known = list(dict.fromkeys([*group["workers"], *workers]))
    group["workers"] = known[:MAX_WORKERS]
    group["workers_count"] = max(len(known), group["workers_count"], counted)
    if pair is None:
        group["_stored"] = True
    else:
        group["_pairs"].append(pair)
    if _sortable(row.get("example")) > _sortable(group["example"]):
        group["example"] = row.get("example")


def _finished(group: dict[str, Any]) -> dict[str, Any]:
    """The group's sparkline: counts per hour from its first hour to its last (the newest
    ``SPARK_HOURS``), and the filter matching its jobs."""
    hours = {h: n for h, n in group.pop("_hours").items() if h is not None}
    stored = [{"error.group": group["group"], "status": Status.FAILED.value}]
    found = stored * group.pop("_stored") + members(group.pop("_pairs"))
    group["filter"] = found[0] if len(found) == 1 else {"$or": found}
    if not hours:
        group["hours"], group["hours_from"] = [], None
        return group
    end = max(hours)
    start = max(min(hours), end - dt.timedelta(hours=SPARK_HOURS - 1))
    count = int((end - start) / dt.timedelta(hours=1)) + 1
    group["hours"] = [hours.get(start + dt.timedelta(hours=i), 0) for i in range(count)]
    group["hours_from"] = start
    return group


def _hour(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    return None


def _earliest(a: Any, b: Any, pick: Any) -> Any:
    known = [x for x in (a, b) if isinstance(x, dt.datetime)]
    return pick(known, key=_sortable) if known else None


def _sortable(value: Any) -> Any:
    """A sort key for times and ids of any shape (None first)."""
    if isinstance(value, dt.datetime):
        return (
            1,
            value.timestamp()
            if value.tzinfo
            else value.replace(tzinfo=dt.timezone.utc).timestamp(),
        )
    if value is None:
        return (0, 0)
    return (1, str(value))


def frame_errors(frame: pd.DataFrame) -> ErrorList:
    """``df.mjq.errors()``: the failed rows of a history frame grouped as ``q.errors()``
    groups them, in pandas. A frame holds no traceback: rows without ``error_group`` are
    fingerprinted by type and message alone, and a group's pattern is its example message's."""
    import pandas as pd

    if "error_group" not in frame.columns:
        raise AttributeError("not a history frame with error columns: load it with q.history()")
    failed = frame[frame["status"] == Status.FAILED.value]
    kinds = failed["error_type"].astype(object).where(failed["error_type"].notna(), None)
    messages = failed["error_message"].astype(object).where(failed["error_message"].notna(), "")
    stored = failed["error_group"].astype(object).where(failed["error_group"].notna(), None)
    keys = [
        g if g is not None else f"{t}\n{m}" for g, t, m in zip(stored, kinds, messages, strict=True)
    ]
    hours = failed["done"].dt.floor("h")
    rows = []
    for _, index in pd.Series(failed.index, index=keys).groupby(level=0, sort=False):
        first = index.iloc[0]
        kind, message, group = kinds[first], messages[first], stored[first]
        done = failed.loc[index, "done"].dropna()
        workers = list(pd.unique(failed.loc[index, "worker"].dropna()))
        counts = hours[index].value_counts()
        key: Any = (
            group if group is not None else {"t": kind or "Error", "m": message, "s": kind is None}
        )
        rows.append({
            "_id": key, "t": kind, "m": message, "p": pattern_of(str(message)), "f": "",
            "count": len(index),
            "first": done.min().to_pydatetime() if len(done) else None,
            "last": done.max().to_pydatetime() if len(done) else None,
            "example": failed.loc[done.idxmax() if len(done) else first, "id"],
            "hours": [{"h": h.to_pydatetime(), "n": int(n)} for h, n in counts.items()],
            "workers": workers[:MAX_WORKERS], "workers_count": len(workers),
        })  # fmt: skip
    return merged(rows)
