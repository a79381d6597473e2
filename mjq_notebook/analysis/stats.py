"""``JobQueue.stats``: the ``summary()`` table computed inside MongoDB, for histories too big
to load. Only one row per (group, stage) crosses the network. ``stats_tables`` gives, from the
same one aggregation, what ``mjq stats`` prints: the jobs of each group by status
(``COUNT_COLUMNS``, which add up to ``total``) and their times (``TIME_COLUMNS``); ``COLUMNS``
says what each column means, for the command's help.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..core.job import FINISHED, IN_HISTORY, PUBLISHED_BY_US, STATUSES, Status
from ..core.outage import unavailable_as_error
from ..server import wire_version
from .timing import PERCENTILES, STAGES, summary_table, warn_negative

if TYPE_CHECKING:
    import pandas as pd

    from ..core.queue import JobQueue

PERCENTILE_WIRE_VERSION = 21  # MongoDB 7.0 added $percentile
# What `mjq stats` prints, defined once: each group's jobs by status (adding up to `total`;
# `other`: a status of no lifecycle, written by another program, shown only when there are
# such jobs) and the failure rate, once per group; then each group's stages' times.
COUNT_COLUMNS = ("total", *STATUSES, "other")
RATE_COLUMN = "failure_rate"
TIME_COLUMNS = ("count", "mean", *PERCENTILES, "max")
COLUMNS = {
    "total": "the jobs of the group (created in the time asked)",
    "waiting ... cancelled": "how many of them are in each status now; they add up to total",
    "other": "of a status no lifecycle has (another program's): shown only when there are any",
    RATE_COLUMN: "failed / (done + failed): cancelled jobs never ran and are not in it",
    "wait_s": "created -> started, of every job started",
    "run_s": "started -> finished, of every job done or failed",
    "total_s": "created -> finished, of the same jobs as run_s",
    "count": "the jobs timed in the row (cancelled and waiting jobs have no times)",
    "mean, p50, p90, p99, max": "seconds",
}
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
    _, keys, parts = _grouped(queue, since, until, by, query, exact)
    return summary_table(parts, keys)


def stats_tables(
    queue: JobQueue,
    since: Any = None,
    until: Any = None,
    by: str | list[str] | None = None,
    query: Mapping[str, Any] | None = None,
    exact: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What ``mjq stats`` prints, from one aggregation: each group's jobs by status with its
    failure rate (``COUNT_COLUMNS`` + ``RATE_COLUMN``), and its stages' times
    (``TIME_COLUMNS``, rows per (group, stage) as ``stats()``)."""
    import pandas as pd

    rows, keys, parts = _grouped(queue, since, until, by, query, exact)
    times = summary_table(parts, keys)
    counted = {_key(row["_id"], keys): _counts(row) for row in rows}
    if not counted and not keys:
        counted = {None: _counts({})}
    counts = pd.DataFrame.from_dict(counted, orient="index", columns=[*COUNT_COLUMNS, RATE_COLUMN])
    if keys:
        names = keys if len(keys) > 1 else keys[0]
        counts.index = _index(list(counted), keys).set_names(names)
        counts = _sorted(counts, keys)
    else:
        counts.index = pd.Index(["all"] * len(counts))
    if not counts["other"].any():
        counts = counts.drop(columns="other")
    return counts, times[[c for c in TIME_COLUMNS if c in times.columns]]


def _grouped(
    queue: JobQueue, since: Any, until: Any, by: Any, query: Any, exact: bool
) -> tuple[list[dict[str, Any]], list[str], dict[Any, Any]]:
    """The one aggregation's rows, the group keys, and each group's stage rows (a warning
    if some times were negative)."""
    rows, keys = _aggregate(queue, since, until, by, query, exact)
    parts = {_key(row["_id"], keys): _rows(row) for row in rows}
    warn_negative(sum(row[f"{stage}_negative"] for row in rows for stage in STAGES))
    return rows, keys, parts


def _counts(row: Mapping[str, Any]) -> dict[str, Any]:
    counts = {status: int(row.get(status, 0)) for status in STATUSES}
    total = int(row.get("total", 0))
    ran = counts["done"] + counts["failed"]
    rate = counts["failed"] / ran if ran else float("nan")
    return {"total": total, **counts, "other": total - sum(counts.values()), RATE_COLUMN: rate}


def _index(groups: list[Any], keys: list[str]) -> Any:
    import pandas as pd

    return pd.MultiIndex.from_tuples(groups) if len(keys) > 1 else pd.Index(groups)


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    try:
        return frame.sort_index(na_position="last")
    except TypeError:  # group values of mixed types: keep first-seen order
        return frame


def _aggregate(
    queue: JobQueue,
    since: Any,
    until: Any,
    by: str | list[str] | None,
    query: Mapping[str, Any] | None,
    exact: bool,
) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per group of the jobs ``history.load`` would return: counts by status, and
    each stage's count, mean, percentiles and max."""
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
    return list(queue.history_collection.aggregate(pipeline)), keys


def _timings(keys: list[str]) -> dict[str, Any]:
    """Each job's status, stage durations in seconds (absent if not reached), group keys."""
    started = {"$ne": ["$status", Status.WAITING.value]}
    # a finish of a job that ran: a cancelled one never started, so it has no run nor total
    finished = {
        "$and": [{"$in": ["$status", list(FINISHED)]}, {"$eq": [{"$type": "$ts.started"}, "date"]}]
    }

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
        "total": {"$sum": 1},
        **{status: count_status(status) for status in STATUSES},
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
    counts = dict.fromkeys(("total", *STATUSES), 1)
    return {"_id": 1, **counts, **kept, **percentiles}


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
