"""``JobQueue.stats``: the ``summary()`` table computed inside MongoDB, for histories too big
to load. Only one row per (group, stage) crosses the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..core.job import FINISHED, IN_HISTORY, PUBLISHED_BY_US, Status
from ..core.outage import unavailable_as_error
from ..server import wire_version
from .timing import PERCENTILES, STAGES, summary_table, warn_negative

if TYPE_CHECKING:
    import pandas as pd

    from ..core.queue import JobQueue

PERCENTILE_WIRE_VERSION = 21  # MongoDB 7.0 added $percentile
# an error stored as a plain string (pymjq) is of type "Error", as fail() would store it
_TYPE = {"$cond": [{"$eq": [{"$type": "$error"}, "string"]}, "Error", "$error.type"]}
_FIELDS = {"status": "$status", "worker": "$worker", "priority": "$priority",
           "attempts": "$attempts", "error_type": _TYPE, "error.type": _TYPE,
           "error_group": "$error.group", "error.group": "$error.group"}  # fmt: skip
# The group of jobs with no error, when grouping by an error's field: named, not NaN.
NO_ERROR = "(no error)"


@unavailable_as_error
def stats(
    queue: JobQueue,
    since: Any = None,
    until: Any = None,
    by: str | list[str] | None = None,
    query: Mapping[str, Any] | None = None,
    exact: bool = False,
) -> pd.DataFrame:
    """The ``timing.summary`` table of the jobs ``history.load`` would return, from MongoDB.

    ``by`` an error's field (``error.type`` or ``error_type``, ``error.group``): the jobs
    that have no error (never failed an attempt) are one group named ``NO_ERROR``,
    "(no error)", so the rows still add up to every job.
    Percentiles are ``$percentile``'s approximations on MongoDB 7.0+; ``exact=True`` (and
    older servers) sort each group's values on the server and interpolate as pandas does,
    which holds every value of a group in one 16 MB document: about 300,000 jobs a group.
    """
    from .fetch import job_filter

    keys = [] if by is None else [by] if isinstance(by, str) else list(by)
    match = job_filter(since, until, None, query)
    timings = _timings(keys)
    theirs = {"$expr": {"$not": [PUBLISHED_BY_US]}, IN_HISTORY: {"$ne": True}}  # no history row
    unfinished_or_pymjq = {"$or": [{"status": {"$nin": list(FINISHED)}}, theirs]}
    if not exact:
        exact = wire_version(queue.db) < PERCENTILE_WIRE_VERSION
    pipeline = [
        {"$match": match},
        {"$project": timings},
        {
            "$unionWith": {
                "coll": queue.collection.name,
                # finished jobs of ours are counted from history (see JobQueue.counts)
                "pipeline": [
                    {"$match": {"$and": [match, unfinished_or_pymjq]}},
                    {"$project": timings},
                ],
            }
        },
        {"$group": _group(keys, exact)},
    ]
    if exact:
        pipeline.append({"$project": _exact_percentiles()})
    rows = list(queue.history_collection.aggregate(pipeline))
    parts = {_key(row["_id"], keys): _rows(row) for row in rows}
    warn_negative(sum(row[f"{stage}_negative"] for row in rows for stage in STAGES))
    return summary_table(parts, keys)


def _timings(keys: list[str]) -> dict[str, Any]:
    """Each job's status, stage durations in seconds (absent if not reached), group keys."""
    started = {"$ne": ["$status", Status.WAITING.value]}
    finished = {"$in": ["$status", list(FINISHED)]}

    def seconds(condition: Any, end: str, start: str, *, negative: bool = False) -> Any:
        """The stage in seconds, absent if not reached or negative (``negative``: 1 if it
        is negative, else 0: counted, never averaged, as ``summary`` does)."""
        difference = {"$divide": [{"$subtract": [end, start]}, 1000]}
        usable = {"$and": [condition, {"$isNumber": difference}]}
        below = {"$and": [usable, {"$lt": [difference, 0]}]}
        if negative:
            return {"$cond": [below, 1, 0]}
        return {"$cond": [{"$and": [usable, {"$not": [below]}]}, difference, "$$REMOVE"]}

    spans = {
        "wait_s": (started, "$ts.started", "$ts.created"),
        "run_s": ({"$and": [started, finished]}, "$ts.done", "$ts.started"),
        "total_s": (finished, "$ts.done", "$ts.created"),
    }

    return {
        "_id": 0,
        "status": 1,
        **{stage: seconds(*span) for stage, span in spans.items()},
        **{f"{stage}_neg": seconds(*span, negative=True) for stage, span in spans.items()},
        **{
            f"k{i}": {"$ifNull": [_path(key), NO_ERROR if key.startswith("error") else None]}
            for i, key in enumerate(keys)
        },
    }


def _path(column: str) -> Any:
    if column.startswith("data.") or column == "data":
        return f"${column}"
    if column in _FIELDS:
        return _FIELDS[column]
    raise ValueError(f"stats can group by {sorted(_FIELDS)} or data.<field>, not {column!r}")


def _group(keys: list[str], exact: bool) -> dict[str, Any]:
    def count_status(status: str) -> dict[str, Any]:
        return {"$sum": {"$cond": [{"$eq": ["$status", status]}, 1, 0]}}

    group: dict[str, Any] = {
        "_id": {f"k{i}": f"$k{i}" for i in range(len(keys))} if keys else None,
        "done": count_status(Status.DONE.value),
        "failed": count_status(Status.FAILED.value),
    }
    for stage in STAGES:
        value = f"${stage}"
        group[f"{stage}_count"] = {"$sum": {"$cond": [{"$isNumber": value}, 1, 0]}}
        group[f"{stage}_mean"] = {"$avg": value}
        group[f"{stage}_max"] = {"$max": value}
        group[f"{stage}_negative"] = {"$sum": f"${stage}_neg"}
        if exact:
            group[f"{stage}_values"] = {"$push": value}
        else:
            quantiles = list(PERCENTILES.values())
            group[f"{stage}_p"] = {
                "$percentile": {"input": value, "p": quantiles, "method": "approximate"}
            }
    return group


def _exact_percentiles() -> dict[str, Any]:
    """Sort each stage's values and interpolate linearly between them, as ``numpy.quantile``."""
    stats = ("count", "mean", "max", "negative")
    kept = {f"{stage}_{stat}": 1 for stage in STAGES for stat in stats}
    percentiles = {
        f"{stage}_p": {
            "$let": {
                "vars": {
                    "a": {"$sortArray": {"input": f"${stage}_values", "sortBy": 1}},
                    "last": {"$subtract": [{"$size": f"${stage}_values"}, 1]},
                },
                "in": [_interpolate(q) for q in PERCENTILES.values()],
            }
        }
        for stage in STAGES
    }
    return {"_id": 1, "done": 1, "failed": 1, **kept, **percentiles}


def _interpolate(q: float) -> dict[str, Any]:
    position = {"$multiply": [q, "$$last"]}
    return {
        "$cond": [
            {"$lt": ["$$last", 0]},
            None,
            {
                "$let": {
                    "vars": {"pos": position, "lo": {"$floor": position}},
                    "in": {
                        "$let": {
                            "vars": {
                                "low": {"$arrayElemAt": ["$$a", {"$toInt": "$$lo"}]},
                                "high": {
                                    "$arrayElemAt": [
                                        "$$a",
                                        {"$toInt": {"$min": [{"$add": ["$$lo", 1]}, "$$last"]}},
                                    ]
                                },
                            },
                            "in": {
                                "$add": [
                                    "$$low",
                                    {
                                        "$multiply": [
                                            {"$subtract": ["$$high", "$$low"]},
                                            {"$subtract": ["$$pos", "$$lo"]},
                                        ]
                                    },
                                ]
                            },
                        }
                    },
                }
            },
        ]
    }


def _key(group_id: Any, keys: list[str]) -> Any:
    if not keys:
        return None
    values = tuple(group_id.get(f"k{i}") for i in range(len(keys)))
    return values[0] if len(values) == 1 else values


def _rows(row: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One group's rows in ``timing.summary``'s shape, as plain dicts."""
    finished = row["done"] + row["failed"]
    failure_rate = row["failed"] / finished if finished else float("nan")
    table = {}
    for stage in STAGES:
        percentiles = row.get(f"{stage}_p") or [None] * len(PERCENTILES)
        table[stage] = {
            "count": row[f"{stage}_count"],
            "mean": row[f"{stage}_mean"],
            **dict(zip(PERCENTILES, percentiles, strict=True)),
            "max": row[f"{stage}_max"],
            "negative": row[f"{stage}_negative"],
            "failure_rate": failure_rate,
        }
    return table
