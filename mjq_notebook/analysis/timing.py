"""Latency and throughput tables from a job history frame (see ``history.load``).

Plain pandas on the frame's columns, so they work on any frame of that shape: one loaded
from MongoDB, read back from Parquet, or filtered by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from ..errors import warn_at_caller

STAGES = ("wait_s", "run_s", "total_s")  # started-created, done-started, done-created
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
SUMMARY_COLUMNS = ["count", "mean", *PERCENTILES, "max", "negative", "failure_rate"]


FLOOR_S = 1e-3  # BSON dates have millisecond precision: shorter times count as 1 ms


def summary(frame: pd.DataFrame, by: str | list[str] | None = None) -> pd.DataFrame:
    """count, mean, p50, p90, p99 and max of each stage (seconds), and the failure rate.

    One row per stage, or per (group, stage) with ``by`` (``by="data.kind"``); jobs without a
    value for ``by`` form their own NaN group. ``failure_rate`` is failed / finished jobs of
    the row's group. Percentiles interpolate linearly between jobs, as ``Series.quantile``.
    A negative duration (a clock that is not UTC: pymjq wrote naive local times) is left
    out of the statistics and counted in ``negative``, with a ``NegativeDurationWarning``.
    """
    import numpy as np

    keys = [] if by is None else [by] if isinstance(by, str) else list(by)
    if frame.empty:  # an empty queue's frame has no data columns to group by
        return summary_table({}, keys)
    missing = [key for key in keys if key not in frame.columns]
    if missing:
        raise KeyError(f"cannot group by {missing}: no such column")
    status = frame["status"].astype("object")
    negative = {f"_neg_{stage}": frame[stage].lt(0) for stage in STAGES}
    durations = {stage: frame[stage].where(~negative[f"_neg_{stage}"]) for stage in STAGES}
    work = frame[keys].assign(
        **durations,
        **negative,
        _finished=status.isin(("done", "failed")),
        _failed=status.eq("failed"),
        _all=0,
    )
    groups = work.groupby(keys or ["_all"], dropna=False, observed=True, sort=False)
    stages = groups[list(STAGES)]  # every statistic below comes out in the same group order
    statistics = {
        "count": stages.count(),
        "mean": stages.mean(),
        **{name: stages.quantile(q) for name, q in PERCENTILES.items()},
        "max": stages.max(),
        "negative": groups[list(negative)].sum().set_axis(list(STAGES), axis=1),
    }
    warn_negative(int(sum(flags.sum() for flags in negative.values())))
    flags = groups[["_finished", "_failed"]].sum()
    failure_rate = flags["_failed"] / flags["_finished"].where(flags["_finished"] > 0)
    columns = {name: table.to_numpy().ravel() for name, table in statistics.items()}
    columns["failure_rate"] = np.repeat(failure_rate.to_numpy(dtype=float), len(STAGES))
    return _tidy(columns, statistics["count"].index, keys)


class NegativeDurationWarning(UserWarning):
    """Some jobs ended before they started, by their stored times: a clock that is not UTC."""


def warn_negative(jobs: int) -> None:
    """Say why ``jobs`` durations were negative, if any were, and what reads them right."""
    if jobs:
        warn_at_caller(
            f"{jobs:,} negative duration(s) left out of the summary (counted in 'negative'): "
            "stored times are not all UTC. pymjq wrote naive local times (datetime.now()); "
            "JobQueue(db, name, naive_tz='Europe/Berlin'), with the zone its publishers and "
            "consumers ran in, reads them right",
            NegativeDurationWarning,
        )


def summary_table(
    parts: Mapping[Any, Mapping[str, Mapping[str, Any]]], keys: list[str]
) -> pd.DataFrame:
    """The summary frame from {group key: {stage: {statistic: value}}} (key None: no groups).

    How the server-side ``JobQueue.stats`` gives the same shape as ``summary``.
    """
    import pandas as pd

    if not keys and not parts:  # no jobs at all: still one row per stage
        parts = {None: {stage: {"count": 0} for stage in STAGES}}
    groups = list(parts)
    rows = [parts[group].get(stage, {}) for group in groups for stage in STAGES]
    columns = {name: [row.get(name) for row in rows] for name in SUMMARY_COLUMNS}
    if len(keys) > 1:
        index = pd.MultiIndex.from_tuples(groups, names=keys)
    else:
        index = pd.Index(groups, name=keys[0] if keys else None)
    return _tidy(columns, index, keys)


def _tidy(columns: Mapping[str, Any], groups: pd.Index, keys: list[str]) -> pd.DataFrame:
    """The table from per-(group, stage) columns: index (groups..., stage), sorted groups."""
    import numpy as np
    import pandas as pd

    stage = np.tile(np.array(STAGES, dtype=object), len(groups))
    if keys:
        repeated = groups.repeat(len(STAGES))
        levels = [repeated.get_level_values(i) for i in range(repeated.nlevels)]
        index = pd.MultiIndex.from_arrays([*levels, stage], names=[*keys, "stage"])
    else:
        index = pd.Index(stage, name="stage")
    dtypes = {**dict.fromkeys(SUMMARY_COLUMNS, "float64"), "count": "int64", "negative": "int64"}
    table = _summary_class()(dict(columns), index=index, columns=SUMMARY_COLUMNS)
    table = table.fillna({"count": 0, "negative": 0}).astype(dtypes)
    if not keys:
        return table
    try:
        return table.sort_index(level=keys, sort_remaining=False, na_position="last")
    except TypeError:  # group values of mixed types: keep first-seen order
        return table


THROUGHPUT_COLUMNS = [
    "created", "started", "done", "backlog", "running", "peak_backlog", "peak_running",
]  # fmt: skip


def throughput(frame: pd.DataFrame, freq: str = "1min") -> pd.DataFrame:
    """Jobs created, started and done per interval; backlog and running jobs at its end and at
    their peak within it.

    ``backlog`` counts jobs created but not started by the interval's end; ``running`` those
    started but not done. ``peak_backlog``/``peak_running`` are the most there were at any
    moment of the interval (events at the same millisecond taken together), so a burst that
    comes and goes between two interval ends still shows. ``freq`` is a fixed pandas
    frequency ("10s", "1min", "1h"); each row is labelled with its interval's start.
    """
    import pandas as pd

    times = {name: frame[name].dropna() for name in ("created", "started", "done")}
    events = {name: values.dt.floor(freq) for name, values in times.items()}
    stamps = pd.concat(events.values())
    if stamps.empty:
        index = pd.DatetimeIndex([], tz="UTC", name="time", dtype=frame["created"].dtype)  # type: ignore[arg-type]  # stubs: any dtype; it is a datetime's
        return pd.DataFrame(0, index=index, columns=THROUGHPUT_COLUMNS, dtype="int64")
    index = pd.date_range(stamps.min(), stamps.max(), freq=freq, name="time")
    counts = pd.DataFrame(
        {name: times.value_counts().reindex(index, fill_value=0) for name, times in events.items()}
    )
    totals = counts.cumsum()
    counts["backlog"] = totals["created"] - totals["started"]
    counts["running"] = totals["started"] - totals["done"]
    counts["peak_backlog"] = _peaks(times["created"], times["started"], counts["backlog"], freq)
    counts["peak_running"] = _peaks(times["started"], times["done"], counts["running"], freq)
    return counts.astype("int64")


def _peaks(up: pd.Series, down: pd.Series, at_end: pd.Series, freq: str) -> pd.Series:
    """The highest level of a count that ``up`` times raise and ``down`` times lower, within
    each interval of ``at_end`` (the level at each interval's end)."""
    import numpy as np
    import pandas as pd

    steps = pd.concat([pd.Series(1, index=up.to_numpy()), pd.Series(-1, index=down.to_numpy())])
    level = steps.groupby(level=0).sum().cumsum()  # the level just after each instant
    highest = level.groupby(level.index.floor(freq)).max()
    highest = highest.set_axis(highest.index.astype(at_end.index.dtype)).reindex(at_end.index)
    # The level an interval starts with: the one the interval before it ended with.
    carried = at_end.shift(1, fill_value=0)
    return pd.Series(np.fmax(highest.to_numpy(float), carried.to_numpy(float)), at_end.index)


def _summary_class() -> type:
    """``SummaryTable``, made on first use: defining a DataFrame subclass imports pandas."""
    return __getattr__("SummaryTable")


def __getattr__(name: str) -> Any:
    if name != "SummaryTable":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name in globals():  # made already (module __getattr__ is also called directly)
        return globals()[name]
    import pandas as pd

    class SummaryTable(pd.DataFrame):
        """The ``summary()``/``stats()`` table: a plain DataFrame for code, shown for reading
        in notebooks (durations as "850 ms"/"12.3 s", the failure rate once per group)."""

        @property
        def _constructor(self) -> type:
            return SummaryTable

        def _repr_html_(self) -> str | None:
            from ..notebook.display import summary_html

            if not set(self.columns) <= set(SUMMARY_COLUMNS) or self.columns.has_duplicates:
                return super()._repr_html_()  # type: ignore[misc]  # not in pandas-stubs. Reshaped into something else: pandas' view
            return summary_html(self)

    SummaryTable.__module__, SummaryTable.__qualname__ = __name__, name
    globals()[name] = SummaryTable  # pickle finds it here, and the next call too
    return SummaryTable
