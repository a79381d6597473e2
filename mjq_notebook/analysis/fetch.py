"""Reading a queue's history from MongoDB: the filter, raw BSON batches as the server sends
them, the cap on loads without a limit and the progress bar. ``history`` makes the frame.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, overload

import pandas as pd
from bson import ObjectId
from bson.codec_options import CodecOptions
from pymongo import DESCENDING

from ..core.job import Status
from ..errors import warn_at_caller

if TYPE_CHECKING:
    from pymongo.collection import Collection

# Naive datetimes decode faster than tz-aware ones; BSON dates are UTC, the frame localises.
CODEC: CodecOptions[Any] = CodecOptions(tz_aware=False)
PROGRESS_OVER = 10_000  # documents; smaller loads are silent
# Without a limit, history() loads at most this many jobs, the newest: ~0.2 GB of frame with a
# few data fields, ~2 GB at the peak of loading (benchmarks/RESULTS.md), where a production
# history could fill a kernel's memory many times over. limit=None loads everything.
DEFAULT_LIMIT = 1_000_000
# A load that passes this many documents asks the server how many there are (O(1) on mongod,
# a scan on SecantusDB), so smaller loads send nothing but their query.
CHECK_OVER = 100_000
_ID_SLACK = dt.timedelta(seconds=2)  # ObjectIds count whole seconds, made just after ts.created
_OBJECT_ID_TIMES = (  # the seconds an ObjectId can hold (an unsigned 32-bit count since 1970)
    dt.datetime(1970, 1, 2, tzinfo=dt.timezone.utc),
    dt.datetime(2106, 1, 1, tzinfo=dt.timezone.utc),
)


class HistoryLimitWarning(UserWarning):
    """``history()`` without a limit loaded only the newest ``DEFAULT_LIMIT`` jobs."""


def check_limit(limit: Any) -> None:
    if limit == "auto" or limit is None:
        return
    if isinstance(limit, str) or limit < 1:
        raise ValueError(f"limit must be a positive number of jobs, 'auto' or None, not {limit!r}")


def warn_limited(frame: pd.DataFrame, documents: int | None) -> None:
    held = "more match" if documents is None else f"the queue and history hold ~{documents:,}"
    oldest = frame["created"].min()
    since = "" if pd.isna(oldest) else f" (created since {oldest:%Y-%m-%d %H:%M:%S} UTC)"
    warn_at_caller(
        f"history() loaded only the newest {len(frame):,} jobs{since}; {held}. That is the "
        f"default cap, mjq_notebook.analysis.history.DEFAULT_LIMIT. For other jobs pass "
        f"since=/until= (a time window), limit=<n>, or limit=None for all (mind the kernel's "
        f"memory); fields=[] leaves out job data.",
        HistoryLimitWarning,
    )


def job_filter(
    since: Any = None,
    until: Any = None,
    status: str | Iterable[str] | None = None,
    query: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The MongoDB filter for a history query (shared by ``load`` and ``JobQueue.stats``)."""
    clauses: list[Mapping[str, Any]] = []
    for bound, operator, slack in ((since, "$gte", -_ID_SLACK), (until, "$lt", _ID_SLACK)):
        if bound is not None:
            moment = _as_datetime(bound)
            if _OBJECT_ID_TIMES[0] < moment < _OBJECT_ID_TIMES[1]:
                # Our _ids are made as the job is created: a range on them uses the _id index.
                clauses.append({"_id": {operator: ObjectId.from_datetime(moment + slack)}})
            clauses.append({"ts.created": {operator: moment}})
    if status is not None:
        names = [status] if isinstance(status, str) else list(status)
        clauses.append({"status": {"$in": [Status(name).value for name in names]}})
    if query:
        clauses.append(dict(query))
    if len(clauses) > 1:
        return {"$and": clauses}
    return dict(clauses[0]) if clauses else {}


def _as_datetime(value: Any) -> dt.datetime:
    """A datetime, a string pandas reads as a time, or a duration ("15min") meaning ago."""
    if isinstance(value, str):
        try:  # a duration first: pandas would read "1h" as 01:00 on 1 January of year 1
            value = pd.Timedelta(value)
        except ValueError:
            value = pd.Timestamp(value)
    if isinstance(value, dt.timedelta):  # pd.Timedelta is one too
        return dt.datetime.now(dt.timezone.utc) - pd.Timedelta(value).to_pytimedelta()
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")  # naive times are UTC, as BSON's are
    return stamp.to_pydatetime()


def data_projection(fields: Iterable[str] | None) -> dict[str, int]:
    if fields is None:
        return {"data": 1}
    if isinstance(fields, str):
        fields = [fields]
    paths = list(fields)
    bad = [path for path in paths if path != "data" and not path.startswith("data.")]
    if bad:
        raise ValueError(f"fields are data paths like 'data.user', not {bad}")
    return dict.fromkeys(paths, 1)


Sink = Callable[[bytes], None]


@overload
def batches(
    collection: Collection,
    match: dict,
    projection: dict,
    limit: int | None,
    progress: Progress,
    *,
    sink: Sink | None = None,
) -> list[bytes]: ...
@overload
def batches(
    collection: Collection,
    match: dict,
    projection: dict,
    limit: int | None,
    progress: Progress,
    give_up: Callable[[], bool] | None,
    sink: Sink | None = None,
) -> list[bytes] | None: ...
def batches(
    collection: Collection,
    match: dict,
    projection: dict,
    limit: int | None,
    progress: Progress,
    give_up: Callable[[], bool] | None = None,
    sink: Sink | None = None,
) -> list[bytes] | None:
    """The matching documents as raw BSON batches, as the server sent them; None as soon as
    ``give_up()`` says so after a batch. With ``sink``, each batch goes to it as it arrives
    and none is kept (the list returned is empty): it never holds them all."""
    raw = collection.with_options(codec_options=CODEC)
    if limit is None:
        cursor = raw.find_raw_batches(match, projection)
    else:  # ObjectIds grow with creation time: the newest jobs come from the _id index
        cursor = raw.find_raw_batches(match, projection, sort=[("_id", DESCENDING)], limit=limit)
    found: list[bytes] = []
    with cursor, _ahead(cursor) as arriving:
        for batch in arriving:
            progress.update(batch)
            if sink is None:
                found.append(batch)
            else:
                sink(batch)
            del batch
            if give_up is not None and give_up():
                return None
    return found


@contextlib.contextmanager
def _ahead(cursor: Iterable[bytes]) -> Iterator[Iterator[bytes]]:
    """The cursor's batches, the next one asked for while this one is used (decoded): a
    thread reads the cursor, one batch ahead at most, so the server works meanwhile. The
    thread runs in the caller's context (its ``pymongo.timeout``); its errors are raised
    here; leaving the block early stops it."""
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def offer(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for batch in cursor:
                if not offer(("batch", batch)):
                    return
            offer(("end", None))
        except BaseException as exc:  # handed over, raised in the caller
            offer(("error", exc))

    def arriving() -> Iterator[bytes]:
        while True:
            kind, value = handoff.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value

    reader = threading.Thread(
        target=contextvars.copy_context().run, args=(read,), name="mjq-history-fetch", daemon=True
    )
    reader.start()
    try:
        yield arriving()
    finally:
        stop.set()
        reader.join()


def all_within(
    collections: list[Collection],
    matches: list[dict],
    projection: dict,
    progress: Progress,
    sinks: list[Sink] | None = None,
) -> list[list[bytes]] | None:
    """Every document matching (each collection its filter), in the server's natural order
    (no sort to pay for), or None as soon as it is clear there are more than
    ``DEFAULT_LIMIT``: the caller then fetches the newest from the _id index. Unfiltered
    (the first filter empty), the server's document count says so early. ``sinks``: one
    per collection, as ``batches`` takes one (the lists returned are then empty)."""
    cap = DEFAULT_LIMIT
    unfiltered = not matches[0]

    def too_many() -> bool:
        if unfiltered and progress.count > min(CHECK_OVER, cap) and not progress.estimates:
            progress.estimates = [c.estimated_document_count() for c in collections]
            progress.set_total(sum(progress.estimates))
        return progress.count > cap or sum(progress.estimates) > cap

    parts = []
    for k, (collection, match) in enumerate(zip(collections, matches, strict=True)):
        sink = None if sinks is None else sinks[k]
        found = batches(collection, match, projection, None, progress, too_many, sink)
        if found is None:
            return None
        parts.append(found)
    return parts


class Progress:
    """A tqdm bar that appears once more than PROGRESS_OVER jobs have arrived.

    Its total is known only when the load asked the server (``CHECK_OVER``) or is capped:
    counting first would cost a round trip (and a full scan on some servers) on every load.
    """

    def __init__(self) -> None:
        self.count = 0
        self.total: int | None = None
        self.estimates: list[int] = []  # the collections' document counts, once asked
        self.bar: Any = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()

    def update(self, batch: bytes) -> None:
        documents = 0
        offset = 0
        while offset < len(batch):  # each BSON document starts with its int32 length
            offset += int.from_bytes(batch[offset : offset + 4], "little")
            documents += 1
        self.count += documents
        if self.bar is not None:
            self.bar.update(documents)
        elif self.count > PROGRESS_OVER:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                initial=self.count, total=self.total, unit="job", desc="history", leave=False
            )

    def set_total(self, total: int | None) -> None:
        self.total = total
        if self.bar is not None:
            self.bar.total = total
            self.bar.refresh()

    def restart(self, total: int | None) -> None:
        """Count again from zero, for the newest-first fetch after an aborted one."""
        self.count = 0
        if self.bar is not None:
            self.bar.reset(total=total)
            self.bar.set_description("history, newest")
        self.total = total
