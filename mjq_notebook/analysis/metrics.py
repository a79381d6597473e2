"""``q.metrics()``: the rollups (``core/metrics.py``) as a DataFrame, one row per period of
any length from a minute to days, the percentiles merged from the sketches (never recomputed
from jobs). When every period boundary is on the hour (steps of whole hours, days, and the
weeks and months, which start at midnight UTC) the window's whole hours are read as hour
documents (``core/hours.py``) and only its edges as minutes: 90 days are ~2,160 small
documents, not 129,600; the frame is the same as from minutes (sketches merge exactly).

Columns: ``created, started, done, failed, cancelled, retried`` (sums), ``wait_p50, wait_p90,
wait_p99, run_p50, run_p90, run_p99`` (seconds, within 1% of the exact percentiles of the
jobs finished in the period; NaN when none), ``oldest_wait_s`` (the largest sampled in the
period; NaN when none waited) and ``error_rate`` (failed / (done + failed); NaN when neither).
The index, ``period``, is each period's start in UTC; every period of the window has a row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pymongo.errors import OperationFailure

from ..core import metrics as rollups
from ..core.hours import Merged
from ..core.minutes import COUNTS, floor
from . import history as _accessor  # noqa: F401  # registers df.mjq (.plot_metrics())
from .fetch import _as_datetime

if TYPE_CHECKING:
    from ..core.queue import JobQueue

__all__ = ["COLUMNS", "PERCENTILES", "frame", "load"]

PERCENTILES = {"p50": 0.5, "p90": 0.9, "p99": 0.99}
COLUMNS = [
    *COUNTS,
    *(f"{stage}_{name}" for stage in ("wait", "run") for name in PERCENTILES),
    "oldest_wait_s",
    "error_rate",
]
DEFAULT_WINDOW = dt.timedelta(hours=1)
HOUR_NS = 3600 * 10**9
UNAUTHORIZED = 13  # the server's code for a write this user may not make


def load(
    queue: JobQueue, since: Any = None, until: Any = None, every: str = "1min", roll: bool = True
) -> pd.DataFrame:
    """The metrics frame of ``queue`` over [``since``, ``until``) (default: the last hour),
    rolled up to now first unless ``roll=False`` (then it reads only ``<queue>.metrics``; so
    does a user the server lets only read)."""
    end = _as_datetime(until) if until is not None else dt.datetime.now(dt.timezone.utc)
    start = _as_datetime(since) if since is not None else end - DEFAULT_WINDOW
    if roll:
        try:
            rollups.roll(queue, wait=5.0)
        except OperationFailure as exc:
            if exc.code != UNAUTHORIZED:
                raise
            # a user who may only read: what the rollers wrote is what there is
    step = pd.tseries.frequencies.to_offset(every)
    hourly = not _fixed(step) or step.nanos % HOUR_NS == 0  # else every hour is cut: minutes
    cuts = [p.to_pydatetime() for p in _periods(start, end, step)] if hourly else None
    return frame(rollups.read(queue, start, end, cuts), start, end, every)


def frame(
    docs: Iterable[Mapping[str, Any]], since: dt.datetime, until: dt.datetime, every: str = "1min"
) -> pd.DataFrame:
    """Minute (and hour) documents merged into one row per ``every`` (a pandas offset alias:
    "1min", "15min", "1h", "1D", "W", "MS"...) from ``since``'s period to ``until``."""
    periods = _periods(since, until, pd.tseries.frequencies.to_offset(every))
    rows = [_Period() for _ in periods]
    docs = list(docs)
    stamps = pd.DatetimeIndex([_aware(doc["_id"]) for doc in docs], tz="UTC")
    for doc, index in zip(docs, periods.searchsorted(stamps, side="right") - 1, strict=True):
        if 0 <= index < len(rows):
            rows[index].add(doc)
    out = pd.DataFrame([row.values() for row in rows], index=periods, columns=COLUMNS)
    out.index.name = "period"
    for name in COUNTS:
        out[name] = out[name].astype("int64")
    return out


def _periods(since: dt.datetime, until: dt.datetime, step: Any) -> pd.DatetimeIndex:
    """Each period's start: a fixed step's from ``since``'s minute floored to the step; an
    anchored offset's (weeks, months) from the window's minute, then at midnight UTC."""
    start, end = pd.Timestamp(floor(since)), pd.Timestamp(until)
    if _fixed(step):
        first = start.floor(step)
        periods = pd.date_range(first, end, freq=step, inclusive="left")
        return periods if len(periods) else periods.insert(0, first)
    periods = pd.date_range(start.normalize(), end, freq=step, inclusive="left")
    return periods[periods > start].insert(0, start)


class _Period(Merged):
    """One period's sums, merged sketches and largest oldest-wait sample."""

    def values(self) -> list[Any]:
        out: list[Any] = [self.counts[name] for name in COUNTS]
        for sketch in (self.wait, self.run):
            out.extend(_nan(sketch.quantile(q)) for q in PERCENTILES.values())
        out.append(_nan(self.oldest))
        finished = self.counts["done"] + self.counts["failed"]
        out.append(self.counts["failed"] / finished if finished else np.nan)
        return out


def _nan(value: float | None) -> float:
    return np.nan if value is None else value


def _fixed(step: Any) -> bool:
    try:
        return bool(step.nanos)  # a fixed length (minutes, hours, days): floor to it
    except ValueError:  # months, weeks anchored to a day: start at the window's minute
        return False


def _aware(when: dt.datetime) -> dt.datetime:
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)
