"""Job history as a pandas DataFrame: one row per job, from the capped queue and its history.

``load`` asks MongoDB (through ``fetch``: the filter, raw batches, the cap, the progress bar)
and decodes the batches into the frame here. The package imports this module (and so pandas)
only when history is asked for, so ``import mjq_notebook`` stays light for workers. Importing
it registers the ``df.mjq`` accessor (see ``timing`` and ``plots`` for what it does).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Final, Literal

import bson
import pandas as pd

from ..core.job import FINISHED, IN_HISTORY, STATUSES, Status
from ..core.outage import unavailable_as_error
from . import fetch
from .datacols import Pieces
from .fetch import CODEC, DEFAULT_LIMIT, HistoryLimitWarning, job_filter
from .plots import plot_latency, plot_timeline
from .timing import STAGES, summary, throughput

if TYPE_CHECKING:
    from ..core.queue import JobQueue

__all__ = [
    "COLUMNS", "DEFAULT_LIMIT", "HistoryLimitWarning", "load",
    "plot_latency", "plot_timeline", "summary", "throughput",
]  # fmt: skip

COLUMNS = [
    "id", "status", "created", "started", "done", *STAGES,
    "attempts", "priority", "worker", "error_type", "error_message", "error_group",
]  # fmt: skip
TIME: Final = "datetime64[ms, UTC]"  # BSON dates have millisecond precision
_TIMES = ("created", "started", "done")
DTYPES = {
    "id": "object",
    "status": pd.CategoricalDtype(list(STATUSES), ordered=True),
    "created": TIME,
    "started": TIME,
    "done": TIME,
    **dict.fromkeys(STAGES, "float64"),
    "attempts": "Int64",  # jobs pymjq wrote have no attempt count
    "priority": "Int64",
    "worker": "str",
    "error_type": "str",
    "error_message": "str",
    "error_group": "str",
}
RING: Final = {IN_HISTORY: {"$ne": True}}  # the ring's jobs history does not hold
CHUNK = 1024  # documents decoded at a time (~2.5 MB of dicts): dropped once they are columns
FRAME_MESSAGE = 500  # characters of an error's message in a frame (the job keeps it all)
# the message of an error stored as a document, or the error itself when a plain string (pymjq)
_MESSAGE = {"$cond": [{"$eq": [{"$type": "$error"}, "string"]}, "$error", "$error.message"]}
# The server flattens our own fields (find projections take expressions since MongoDB 4.4).
_PROJECTION = {
    "_id": 1,
    "status": 1,
    "created": "$ts.created",
    "started": "$ts.started",
    "done": "$ts.done",
    "attempts": 1,
    "priority": 1,
    "worker": 1,
    "error_type": "$error.type",
    "error_message": {
        "$let": {
            "vars": {"m": _MESSAGE},
            "in": {
                "$cond": [
                    {"$eq": [{"$type": "$$m"}, "string"]},
                    {"$substrCP": ["$$m", 0, FRAME_MESSAGE]},
                    None,
                ]
            },
        }
    },
    "error_group": "$error.group",
    "max_attempts": 1,  # absent on jobs other programs published (see naive_tz)
}


@unavailable_as_error
def load(
    queue: JobQueue,
    since: Any = None,
    until: Any = None,
    status: str | Iterable[str] | None = None,
    query: Mapping[str, Any] | None = None,
    fields: Iterable[str] | None = None,
    limit: int | Literal["auto"] | None = "auto",
) -> pd.DataFrame:
    """One row per job, from the queue and ``<name>.history`` (a job in both: the latest state).

    ``since``/``until`` bound ``ts.created``: a datetime, a string pandas reads as a time,
    or a duration (``"15min"``, a timedelta) meaning that long ago. ``status`` is one status
    or several; ``query`` any extra MongoDB filter; ``fields`` the ``data.*`` paths to load
    (default: all of ``data``; ``[]``: none); ``limit`` keeps the newest jobs: ``"auto"``
    (default) all of them up to ``DEFAULT_LIMIT``, else the newest that many with a
    ``HistoryLimitWarning``; ``None`` all. All of it runs in MongoDB. With the queue's
    ``naive_tz``, times other programs wrote (pymjq's naive local ``datetime.now()``: the
    creation of a job without ``max_attempts``, the start and end of one no worker of ours
    ran) are read in that zone. Timing columns are NaN
    where a stage has not happened, including jobs pymjq wrote, whose ``ts.started``/
    ``ts.done`` were pre-filled while they still waited. A retried job's ``started`` is its
    last claim, so earlier attempts and back-off count as waiting; ``error_type`` is its last
    error's, kept when a retry then succeeded.
    """
    fetch.check_limit(limit)
    match = job_filter(since, until, status, query)
    data = fetch.data_projection(fields)
    projection = {**_PROJECTION, **data}
    zone = getattr(queue, "naive_tz", None)
    collections = [queue.history_collection, queue.collection]  # history first: it wins ties
    # Our finishes in the ring are in history, or were pruned from it: skipped, as counts()
    # skips them (the ring keeps its newest document, finished or not: retention.py).
    matches = [match, {"$and": [match, {IN_HISTORY: {"$ne": True}}]} if match else RING]
    pairs = list(zip(collections, matches, strict=True))
    # Each batch becomes columns as it arrives, and its bytes go (``_Decoded``).
    with fetch.Progress() as progress, _gc_paused():
        decoded = _Decoded(bool(data))
        if limit != "auto":
            for (c, m), sink in zip(pairs, decoded.sinks, strict=True):
                fetch.batches(c, m, projection, limit, progress, sink=sink)
            return decoded.frame(limit, zone)
        if fetch.all_within(collections, matches, projection, progress, decoded.sinks):
            return decoded.frame(None, zone)
        cap, estimates = fetch.DEFAULT_LIMIT, progress.estimates
        progress.restart(total=cap + 1 + estimates[1] if estimates else None)
        decoded = _Decoded(bool(data))  # what the aborted fetch decoded goes
        for (c, m), sink in zip(pairs, decoded.sinks, strict=True):
            fetch.batches(c, m, projection, cap + 1, progress, sink=sink)
        frame = decoded.frame(cap + 1, zone)
    if len(frame) > cap:  # one more than the cap arrived: there are more jobs
        frame = frame.iloc[1:].reset_index(drop=True)  # sorted by created: drop the oldest
        fetch.warn_limited(frame, sum(estimates) or None)
    return frame


def frame_from_batches(
    history: list[bytes],
    queue: list[bytes],
    *,
    limit: int | None = None,
    data: bool = True,
    naive_tz: tzinfo | None = None,
) -> pd.DataFrame:
    """The history frame from raw BSON batches of ``<name>.history`` and the queue.

    The batches hold documents projected as ``load`` asks the server to. pymongoarrow (when
    installed) decodes our own fields straight into columns. ``naive_tz``: see ``load``.
    """
    with _gc_paused():
        decoded = _Decoded(data)
        for sink, batches in zip(decoded.sinks, (history, queue), strict=True):
            for batch in batches:
                sink(batch)
        return decoded.frame(limit, naive_tz)


class _Decoded:
    """The rows of history and of the queue (in that order), decoded a batch at a time as
    they arrive, so that no batch's bytes or documents outlive its decoding: our fields in
    one small frame per batch, job data in ``Pieces`` (typed columns per chunk)."""

    def __init__(self, data: bool) -> None:
        self.pieces = Pieces() if data else None
        self.parts: tuple[list[pd.DataFrame], list[pd.DataFrame]] = ([], [])
        self.sinks: list[fetch.Sink] = [functools.partial(self._add, p) for p in self.parts]

    def _add(self, part: list[pd.DataFrame], batch: bytes) -> None:
        part.append(_decode(batch, self.pieces))

    def frame(self, limit: int | None, zone: tzinfo | None) -> pd.DataFrame:
        ours = [
            pd.concat(part, ignore_index=True) if part else pd.DataFrame(columns=list(_PROJECTION))
            for part in self.parts
        ]
        for part in self.parts:
            part.clear()
        return _frame(ours, self.pieces, limit, zone)


def jobs_frame(jobs: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Job documents (a ``JobList``: ``q.find``, ``q.jobs``) as a history frame: the same
    columns, one row per job, oldest first."""
    return frame_from_batches([b"".join(bson.encode(_projected(doc)) for doc in jobs)], [])


def _projected(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A job document as ``_PROJECTION`` has the server shape it, in Python."""
    ts, error = doc.get("ts"), doc.get("error")
    ts = ts if isinstance(ts, Mapping) else {}
    message = error if isinstance(error, str) else (error or {}).get("message")
    error = error if isinstance(error, Mapping) else {}
    shaped = {key: doc[key] for key in _PROJECTION if key in doc and _PROJECTION[key] == 1}
    shaped.update(created=ts.get("created"), started=ts.get("started"), done=ts.get("done"))
    shaped.update(error_type=error.get("type"), error_group=error.get("group"))
    shaped["error_message"] = message[:FRAME_MESSAGE] if isinstance(message, str) else None
    if "data" in doc:
        shaped["data"] = doc["data"]
    return shaped


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while decoding (as msgpack's docs advise for big
    unpacks): the documents are dicts of plain values, never cycles, yet the hundreds of
    collections their allocation would trigger each walk the whole heap (-25% here)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _frame(
    parts: list[pd.DataFrame], pieces: Pieces | None, limit: int | None, zone: tzinfo | None
) -> pd.DataFrame:
    for source, part in zip((1, 0), parts, strict=True):
        part["_source"] = source
    raw = pd.concat([part for part in parts if len(part)] or parts[:1], ignore_index=True)
    if len(parts[0]) and len(parts[1]):
        # A job in both collections appears once: more attempts is later; a tie: history.
        attempts = pd.to_numeric(raw["attempts"], errors="coerce").fillna(-1)
        order = attempts * 2 + raw["_source"]
        ordered = order.sort_values(kind="stable").index
        raw = raw.loc[ordered[~raw["_id"].loc[ordered].duplicated(keep="last").to_numpy()]]
    parts.clear()
    frame = _job_columns(raw, zone)  # indexed by each row's position in the batches
    del raw
    kept = frame.index
    if limit is not None and len(frame) > limit:
        frame = frame.nlargest(limit, "created", keep="first")
    frame = frame.sort_values("created", kind="stable")
    columns = _flatten(pieces, kept, frame.index)
    return pd.concat([frame.reset_index(drop=True), columns], axis=1)


def _flatten(pieces: Pieces | None, kept: pd.Index, order: pd.Index) -> pd.DataFrame:
    """``data`` as ``data.<field>`` columns (see ``datacols``), rows in ``order``."""
    if pieces is None:
        return pd.DataFrame(index=pd.RangeIndex(len(order)))
    return pieces.columns(kept, order)


def _decode(batch: bytes, pieces: Pieces | None) -> pd.DataFrame:
    """One column per projected field of ours; ``data`` (when ``pieces``) into ``pieces``.

    pymongoarrow (when installed) decodes our fields straight from the bytes into typed
    columns. Job data, which may be anything, is decoded by bson, ``CHUNK`` documents at a
    time, each chunk made columns before the next is decoded: at most one chunk of
    documents (dicts of ~2.5 kB) is alive, never a whole batch (16 MB, ~50,000 jobs).
    """
    frame = _decode_arrow([batch])
    if frame is not None and pieces is None:
        return frame
    ours = list(_PROJECTION)
    chunks = []
    for chunk in _chunks(batch):
        documents = bson.decode_all(chunk, CODEC)  # C code, one call per chunk
        if frame is None:  # naming the columns spares pandas a pass to collect their keys
            chunks.append(pd.DataFrame(documents, columns=ours))
        if pieces is not None:
            pieces.add([document.get("data", math.nan) for document in documents])
        del documents
    if frame is not None:
        return frame
    return pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame(columns=ours)


def _chunks(batch: bytes) -> Iterator[memoryview]:
    """The batch's documents, ``CHUNK`` at a time (each document starts with its length)."""
    view, start, offset, count = memoryview(batch), 0, 0, 0
    while offset < len(batch):
        offset += int.from_bytes(view[offset : offset + 4], "little")
        count += 1
        if count == CHUNK:
            yield view[start:offset]
            start, count = offset, 0
    if start < len(batch):
        yield view[start:]


def _decode_arrow(batches: list[bytes]) -> pd.DataFrame | None:
    """Our own fields with pymongoarrow, or None (not installed, or a field of another type).

    Only for fields of known type: pymongoarrow infers a column's type from its first value
    and then silently changes later values of other types (1.5 becomes 1 in an int column,
    a string becomes null), so job data, which may be anything, is always decoded by bson.
    """
    try:
        import pyarrow as pa
        from pymongoarrow.api import Schema
        from pymongoarrow.context import PyMongoArrowContext
        from pymongoarrow.types import ObjectIdType
    except ImportError:
        return None
    timestamp, integer, text = pa.timestamp("ms"), pa.int64(), pa.string()
    types = {"_id": ObjectIdType(), "status": text, "created": timestamp, "started": timestamp,
             "done": timestamp, "attempts": integer, "priority": integer, "worker": text,
             "error_type": text, "error_message": text, "error_group": text,
             "max_attempts": integer}  # fmt: skip
    context = PyMongoArrowContext(Schema(types), CODEC)
    try:
        for batch in batches:
            context.process_bson_stream(batch)
    except (TypeError, OverflowError):  # e.g. a hand-written job with a string priority
        return None
    frame = context.finish().to_pandas(split_blocks=True, self_destruct=True)
    frame["_id"] = frame["_id"].astype(object)
    return frame


def _job_columns(raw: pd.DataFrame, zone: tzinfo | None) -> pd.DataFrame:
    status = raw["status"]
    times = {name: pd.to_datetime(raw[name], utc=True).astype(TIME) for name in _TIMES}
    if zone is not None:
        theirs = {"created": raw["max_attempts"].isna(), "started": raw["worker"].isna()}
        theirs["done"] = theirs["started"]
        times = {name: _local(times[name], theirs[name], zone) for name in _TIMES}
    # A stage only happened if the status says so (pymjq pre-filled ts while waiting).
    started = times["started"].where(status.notna() & (status != Status.WAITING.value))
    done = times["done"].where(status.isin(FINISHED))
    created = times["created"]
    frame = pd.DataFrame(
        {
            "id": raw["_id"],
            "status": status.where(status.isin(STATUSES)),  # a status of no lifecycle: NaN
            "created": created,
            "started": started,
            "done": done,
            "wait_s": (started - created).dt.total_seconds(),
            "run_s": (done - started).dt.total_seconds(),
            # of jobs that ran, as run_s: a cancelled job never started
            "total_s": (done - created).where(started.notna()).dt.total_seconds(),
            "attempts": raw["attempts"],
            "priority": raw["priority"],
            "worker": raw["worker"],
            "error_type": raw["error_type"],
            "error_message": raw["error_message"],
            "error_group": raw["error_group"],
        },
        index=raw.index,
    )
    for name, dtype in DTYPES.items():
        # a hand-written job (say priority "high") keeps its column as it was stored
        with contextlib.suppress(TypeError, ValueError):
            frame[name] = frame[name].astype(dtype)
    return frame


def _local(times: pd.Series, where: pd.Series, zone: tzinfo) -> pd.Series:
    """``times`` where ``where``, read as naive wall times of ``zone`` (stored as if UTC)."""
    wall = times.dt.tz_localize(None).dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
    return times.where(~where.to_numpy(dtype=bool), wall.dt.tz_convert("UTC").astype(TIME))


_METRICS_COLUMNS = {"done", "failed", "wait_p99", "run_p99", "error_rate"}  # q.metrics()


@pd.api.extensions.register_dataframe_accessor("mjq")
class HistoryAccessor:
    """``df.mjq.summary()``, ``.throughput()``, ``.plot_latency()``, ``.plot_timeline()``,
    ``.capacity()``, ``.errors()``, ``.explore()``; on a ``q.metrics()`` frame,
    ``.plot_metrics()``."""

    required = ("status", "created", "started", "done", *STAGES)

    def __init__(self, frame: pd.DataFrame) -> None:
        missing = [c for c in self.required if c not in frame.columns]
        if missing and not set(frame.columns) >= _METRICS_COLUMNS:
            raise AttributeError(f"not a job history frame: no column(s) {missing}")
        self._frame = frame

    def summary(self, by: str | list[str] | None = None) -> pd.DataFrame:
        """Latency percentiles and failure rate, optionally per group (``timing.summary``)."""
        return summary(self._frame, by=by)

    def throughput(self, freq: str = "1min") -> pd.DataFrame:
        """Jobs created/started/done per interval, backlog and running (``timing.throughput``)."""
        return throughput(self._frame, freq=freq)

    def plot_latency(self, **kwargs: Any) -> Any:
        """Wait and run time histograms with p50/p90/p99 marked (``plots.plot_latency``)."""
        return plot_latency(self._frame, **kwargs)

    def plot_timeline(self, **kwargs: Any) -> Any:
        """Throughput and backlog over time (``plots.plot_timeline``)."""
        return plot_timeline(self._frame, **kwargs)

    def capacity(self, target: float | timedelta, percentile: float = 0.9, **kwargs: Any) -> Any:
        """How many workers would have kept the ``percentile`` wait under ``target`` seconds:
        a FIFO replay of these arrivals and run times beside the M/G/c estimate
        (``capacity.capacity``; its ``overhead``, ``workers``, ``max_workers``)."""
        from .capacity import capacity

        return capacity(self._frame, target, percentile, **kwargs)

    def errors(self) -> Any:
        """The failed jobs grouped by error, as ``q.errors()`` groups them (``errors.py``)."""
        from .errors import frame_errors

        return frame_errors(self._frame)

    def plot_metrics(self, **kwargs: Any) -> Any:
        """A ``q.metrics()`` frame's throughput and error rate, wait and run p50/p90/p99 and
        the oldest waiting job's age over time (``metrics_plot.plot_metrics``)."""
        from .metrics_plot import plot_metrics

        return plot_metrics(self._frame, **kwargs)

    def explore(self) -> Any:
        """A history explorer widget over this frame: status and grouping -> summary, plot."""
        from ..notebook.widgets import (
            Explorer,  # the widget layer sits above this one: import on use
        )

        return Explorer(frame=self._frame)
