"""Latency and throughput tables from a job history frame (see ``history.load``).

Plain pandas on the frame's columns, so they work on any frame of that shape: one loaded
from MongoDB, read back from Parquet, or filtered by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

STAGES = ("wait_s", "run_s", "total_s")  # started-created, done-started, done-created
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
SUMMARY_COLUMNS = ["count", "mean", *PERCENTILES, "max", "failure_rate"]


def summary(frame: pd.DataFrame, by: str | list[str] | None = None) -> pd.DataFrame:
    """count, mean, p50, p90, p99 and max of each stage (seconds), and the failure rate.

    One row per stage, or per (group, stage) with ``by`` (``by="data.kind"``); jobs without a
    value for ``by`` form their own NaN group. ``failure_rate`` is failed / finished jobs of
    the row's group. Percentiles interpolate linearly between jobs, as ``Series.quantile``.
    """
    keys = [] if by is None else [by] if isinstance(by, str) else list(by)
    missing = [key for key in keys if key not in frame.columns]
    if missing:
        raise KeyError(f"cannot group by {missing}: no such column")
    if not keys:
        return summary_table({None: _summarise(frame)}, keys)
    groups = frame.groupby(keys, dropna=False, observed=True, sort=False)
    return summary_table({key: _summarise(group) for key, group in groups}, keys)


def _summarise(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    status = frame["status"].astype("object")
    finished = int(status.isin(("done", "failed")).sum())
    failure_rate = (status == "failed").sum() / finished if finished else float("nan")
    rows = {}
    for stage in STAGES:
        values = frame[stage].dropna()
        quantiles = values.quantile(list(PERCENTILES.values())) if len(values) else [None] * 3
        rows[stage] = {
            "count": len(values),
            "mean": values.mean(),
            **dict(zip(PERCENTILES, quantiles, strict=True)),
            "max": values.max(),
            "failure_rate": failure_rate,
        }
    return rows


def summary_table(
    parts: Mapping[Any, Mapping[str, Mapping[str, Any]]], keys: list[str]
) -> pd.DataFrame:
    """The summary frame from {group key: {stage: {statistic: value}}} (None: no grouping).

    Shared by ``summary`` and the server-side ``JobQueue.stats`` so both give one shape.
    """
    import pandas as pd

    dtypes = {"count": "int64", **dict.fromkeys(SUMMARY_COLUMNS[1:], "float64")}
    if not keys:
        rows = parts.get(None) or {stage: {"count": 0} for stage in STAGES}
        table = pd.DataFrame.from_dict(rows, orient="index", columns=SUMMARY_COLUMNS)
        return table.astype(dtypes).rename_axis("stage")
    index, records = [], []
    for key, rows in parts.items():
        for stage, row in rows.items():
            index.append((*(key if isinstance(key, tuple) else (key,)), stage))
            records.append(row)
    names = [*keys, "stage"]
    if index:
        multi = pd.MultiIndex.from_tuples(index, names=names)
    else:
        multi = pd.MultiIndex.from_arrays([[]] * len(names), names=names)
    table = pd.DataFrame.from_records(records, index=multi, columns=SUMMARY_COLUMNS)
    table = table.astype(dtypes)
    try:
        return table.sort_index(level=keys, sort_remaining=False, na_position="last")
    except TypeError:  # group values of mixed types: keep first-seen order
        return table


def throughput(frame: pd.DataFrame, freq: str = "1min") -> pd.DataFrame:
    """Jobs created, started and done per interval, and the backlog and running jobs at its end.

    ``backlog`` counts jobs created but not started by the interval's end; ``running`` those
    started but not done. ``freq`` is a fixed pandas frequency ("10s", "1min", "1h").
    """
    import pandas as pd

    events = {name: frame[name].dropna().dt.floor(freq) for name in ("created", "started", "done")}
    stamps = pd.concat(events.values())
    if stamps.empty:
        index = pd.DatetimeIndex([], tz="UTC", name="time", dtype=frame["created"].dtype)
        return pd.DataFrame(0, index=index, columns=[*events, "backlog", "running"], dtype="int64")
    index = pd.date_range(stamps.min(), stamps.max(), freq=freq, name="time")
    counts = pd.DataFrame(
        {name: times.value_counts().reindex(index, fill_value=0) for name, times in events.items()}
    )
    totals = counts.cumsum()
    counts["backlog"] = totals["created"] - totals["started"]
    counts["running"] = totals["started"] - totals["done"]
    return counts.astype("int64")
