"""Benchmark ``JobQueue.history`` and ``JobQueue.stats`` against what a user could do by hand.

One queue, ``bench``, is filled once: ``--jobs`` finished jobs in ``bench.history``, shaped as
``JobQueue`` finishes them (owned.py), and ``--queue-jobs`` in the capped queue itself (waiting and
working ones, plus the newest finished ones, which are also in history as in a real queue, so
the de-duplication runs). Then, in alternating rounds (the listed order in even rounds, the
reverse in odd ones), each figure the median over the rounds:

1. ``q.history()`` against (a) the limit: the raw BSON batches of the same filter and
   projection fetched with ``find_raw_batches`` from both collections, not decoded; and (b)
   the naive way: ``pd.json_normalize(list(coll.find()))`` of both collections, concatenated,
   de-duplicated by ``_id``, plus wait_s/run_s/total_s computed from the ts.* columns;
2. ``q.history(fields=[])`` (pymongoarrow for our own fields, and the pure-bson path with
   ``history._decode_arrow`` patched to return None) against the raw fetch of its projection;
3. conversion alone, from batches already in memory: ``history.frame_from_batches`` against
   the naive conversion (``bson.decode_all`` + ``pd.json_normalize`` + timing columns) of the
   unprojected batches, with data and without (pymongoarrow and pure bson);
4. ``q.stats()``, ``q.stats(by="data.kind")`` and ``q.stats(exact=True)`` against
   ``q.history().mjq.summary()`` (``by="data.kind"``).

Checks run once afterwards: both no-data paths give equal frames, the naive frame holds the
same jobs, and the exact server-side stats agree with ``summary()``.

With ``--production`` it runs none of that: it fills history in chunks (for ``--jobs
1000000``) and loads it once each way, ``history(limit=None)``, ``history(fields=[],
limit=None)``, the default ``history()`` (capped at ``history.DEFAULT_LIMIT``) and the raw
fetch, reporting seconds, the frame's bytes per row and the process's peak RSS growth.

    python benchmarks/bench_history.py                   # embedded SecantusDB, in-process
    python benchmarks/bench_history.py --uri mongodb://localhost:27017   # or MJQ_TEST_MONGODB_URI
    python benchmarks/bench_history.py --production --jobs 1000000 --uri ...  # memory per row
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import io
import math
import os
import random
import resource
import statistics
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import bson
import numpy as np
import pandas as pd
from _common import (
    environment,
    parser,
    round_done,
    run_bench,
    scratch_database,
    smoke,
    status_kb,
    verdict,
)
from bson import ObjectId
from bson.codec_options import CodecOptions
from pymongo.collection import Collection
from pymongo.database import Database

from mjq_notebook import JobQueue
from mjq_notebook.analysis import history as history_module
from mjq_notebook.analysis.timing import PERCENTILES
from mjq_notebook.server import client_for

QUEUE = "bench"
CHUNK = 2_000  # documents per insert_many
TZ_CODEC = CodecOptions(tz_aware=True)  # what a user's MongoClient(tz_aware=True) decodes with

# Three kinds of job with different run times (seconds, log-normal median and sigma).
KINDS = {"thumbnail": (0.4, 0.6), "transcode": (6.0, 0.8), "report": (45.0, 1.0)}
KIND_WEIGHTS = (0.6, 0.3, 0.1)
WAIT_MEDIAN, WAIT_SIGMA = 1.5, 1.2  # seconds from created (or re-queued) to started
FAILED_SHARE = 0.03
ERRORS = [
    ("ValueError", "bad input row"),
    ("TimeoutError", "upstream timed out"),
    ("KeyError", "'profile'"),
    ("RuntimeError", "ffmpeg exited with status 1"),
]


# -- the data --------------------------------------------------------------------------------


def bson_time(moment: dt.datetime) -> dt.datetime:
    """``moment`` truncated to BSON's millisecond precision, as ``utcnow()`` does."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


class Ids:
    """ObjectIds as ``ObjectId()`` makes them at a given moment: its second, one process's
    random bytes and a running counter."""

    def __init__(self, rng: random.Random) -> None:
        self.random = rng.randbytes(5)
        self.counter = rng.randrange(2**24)

    def at(self, moment: dt.datetime) -> ObjectId:
        self.counter = (self.counter + 1) % 2**24
        seconds = int(moment.timestamp()).to_bytes(4, "big")
        return ObjectId(seconds + self.random + self.counter.to_bytes(3, "big"))


def worker_names(rng: random.Random, n: int = 8) -> list[str]:
    """``host:pid:hex6`` worker ids, as ``JobQueue.worker_id``."""
    return [f"node{i % 4}:{rng.randrange(1000, 60000)}:{rng.randbytes(3).hex()}" for i in range(n)]


def job_data(rng: random.Random, kind: str) -> dict[str, Any]:
    """A job's ``data``: a few fields and one nested document."""
    return {
        "kind": kind,
        "user": f"user{rng.randrange(200):03d}",
        "size": int(rng.lognormvariate(12, 1.5)),
        "options": {"quality": rng.choice(["low", "high"]), "retries_ok": rng.random() < 0.8},
    }


def error_of(rng: random.Random) -> dict[str, str]:
    """An ``error`` document as ``fail()`` stores it (type, message, traceback)."""
    kind, message = rng.choice(ERRORS)
    trace = (
        "Traceback (most recent call last):\n"
        '  File "/srv/app/tasks.py", line 88, in handle\n    out = run(job.data)\n'
        f'  File "/srv/app/tasks.py", line 41, in run\n    raise {kind}({message!r})\n'
        f"{kind}: {message}\n"
    )
    return {"type": kind, "message": message, "traceback": trace}


def finished_job(
    rng: random.Random, ids: Ids, workers: list[str], created: dt.datetime
) -> dict[str, Any]:
    """One finished job as ``JobQueue`` writes it to history (owned.py).

    That is the claimed document (``_id`` made with ``ts.created``, ``ts.started`` of the last
    claim, the claim's worker and attempt count; an earlier attempt's ``error`` stays) plus the
    finish: status, ``ts.done``, ``lease_until: None`` and ``result`` or ``error``.
    """
    kind = rng.choices(list(KINDS), KIND_WEIGHTS)[0]
    run_median, run_sigma = KINDS[kind]
    max_attempts = 1 if rng.random() < 0.1 else 3
    failed = rng.random() < FAILED_SHARE
    if failed:
        attempts = max_attempts
    else:
        attempts = min(max_attempts, rng.choices((1, 2, 3), (0.92, 0.06, 0.02))[0])
    created = bson_time(created)
    moment, available = created, created
    error = None
    for attempt in range(1, attempts + 1):  # each failed attempt waits, runs, backs off
        started = bson_time(
            available + dt.timedelta(seconds=rng.lognormvariate(math.log(WAIT_MEDIAN), WAIT_SIGMA))
        )
        moment = bson_time(
            started + dt.timedelta(seconds=rng.lognormvariate(math.log(run_median), run_sigma))
        )
        if attempt < attempts or failed:
            error = error_of(rng)
        if attempt < attempts:  # fail() re-queues it after a back-off
            available = bson_time(moment + dt.timedelta(seconds=2 ** (attempt - 1)))
    doc: dict[str, Any] = {
        "_id": ids.at(created),
        "status": "failed" if failed else "done",
        "ts": {"created": created, "started": started, "done": moment},
        "data": job_data(rng, kind),
        "priority": rng.choices((0, 1, 5), (0.85, 0.1, 0.05))[0],
        "available_at": available,
        "attempts": attempts,
        "max_attempts": max_attempts,
        "lease_until": None,
        "worker": rng.choice(workers),
    }
    if error is not None:
        doc["error"] = error
    if not failed:
        doc["result"] = {"ok": True, "bytes": int(rng.lognormvariate(11, 1.0))}
    return doc


def history_documents(
    rng: random.Random, ids: Ids, workers: list[str], n: int, end: dt.datetime
) -> list[dict[str, Any]]:
    """``n`` finished jobs created at random over the day before ``end``, oldest first."""
    span = 86_400.0
    offsets = sorted(rng.uniform(0, span) for _ in range(n))
    return [
        finished_job(rng, ids, workers, end - dt.timedelta(seconds=span - offset))
        for offset in offsets
    ]


def queue_documents(
    rng: random.Random,
    ids: Ids,
    workers: list[str],
    n: int,
    finished: list[dict[str, Any]],
    now: dt.datetime,
) -> list[dict[str, Any]]:
    """The capped queue: ``finished`` (also in history) first, then working and waiting jobs
    created in the last ten minutes, as ``new_document`` and the claim leave them."""
    docs = [dict(doc) for doc in finished]  # the queue copy equals the history copy
    fresh = n - len(docs)
    offsets = sorted(rng.uniform(0, 600) for _ in range(fresh))
    n_working = fresh // 6
    for i, offset in enumerate(offsets):
        created = bson_time(now - dt.timedelta(seconds=600 - offset))
        kind = rng.choices(list(KINDS), KIND_WEIGHTS)[0]
        doc: dict[str, Any] = {
            "_id": ids.at(created),
            "status": "waiting",
            "ts": {"created": created, "started": None, "done": None},
            "data": job_data(rng, kind),
            "priority": rng.choices((0, 1, 5), (0.85, 0.1, 0.05))[0],
            "available_at": created,
            "attempts": 0,
            "max_attempts": 3,
            "lease_until": None,
            "worker": None,
        }
        if i < n_working:  # the oldest are claimed
            started = bson_time(created + dt.timedelta(seconds=rng.uniform(0.01, 5)))
            doc.update(status="working", attempts=1, worker=rng.choice(workers))
            doc["ts"]["started"] = started
            doc["lease_until"] = started + dt.timedelta(seconds=60)
        docs.append(doc)
    return docs


@dataclass
class Setup:
    """The queue under test and what it holds."""

    queue: JobQueue
    n_history: int
    n_queue: int
    n_both: int
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def jobs(self) -> int:
        """Distinct jobs: what one history() row per job must give."""
        return self.n_history + self.n_queue - self.n_both


def insert_chunks(collection: Collection, docs: list[dict[str, Any]]) -> None:
    for start in range(0, len(docs), CHUNK):
        collection.insert_many(docs[start : start + CHUNK], ordered=False)


def populate(db: Database, args: argparse.Namespace) -> Setup:
    """Fill ``bench.history`` and the capped ``bench`` queue; time each step."""
    seconds = {}
    started = time.perf_counter()
    rng = random.Random(args.seed)
    ids, workers = Ids(rng), worker_names(rng)
    now = bson_time(dt.datetime.now(dt.timezone.utc))
    finished = history_documents(rng, ids, workers, args.jobs, now - dt.timedelta(minutes=10))
    n_both = min(args.queue_jobs // 7, len(finished))
    queued = queue_documents(rng, ids, workers, args.queue_jobs, finished[-n_both:], now)
    seconds["generate documents"] = time.perf_counter() - started

    started = time.perf_counter()
    q = JobQueue(db, name=QUEUE)
    seconds["JobQueue() (capped collection, indexes)"] = time.perf_counter() - started
    started = time.perf_counter()
    insert_chunks(q.history_collection, finished)
    seconds[f"insert {len(finished)} into history ({CHUNK} a call)"] = time.perf_counter() - started
    started = time.perf_counter()
    insert_chunks(q.collection, queued)
    seconds[f"insert {len(queued)} into the queue"] = time.perf_counter() - started
    return Setup(q, len(finished), len(queued), n_both, seconds)


# -- the sides -------------------------------------------------------------------------------

DATA_PROJECTION = {**history_module._PROJECTION, "data": 1}
NO_DATA_PROJECTION = dict(history_module._PROJECTION)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow stderr (history()'s tqdm bar over 10,000 jobs) during a timed call."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield


@contextlib.contextmanager
def pure_bson() -> Iterator[None]:
    """history() as without pymongoarrow installed."""
    with mock.patch.object(history_module, "_decode_arrow", return_value=None):
        yield


def both(q: JobQueue) -> list[Collection]:
    """History first, as ``history.load`` reads them."""
    return [q.history_collection, q.collection]


def raw_fetch(q: JobQueue, projection: dict[str, Any] | None) -> list[list[bytes]]:
    """The batches ``history.load`` receives, not decoded: the floor for history()."""
    return [list(c.find_raw_batches({}, projection)) for c in both(q)]


def with_timings(frame: pd.DataFrame) -> pd.DataFrame:
    """wait_s, run_s and total_s from the ts.* columns, as a user would add them."""
    created, started, done = (
        pd.to_datetime(frame[f"ts.{k}"], utc=True) for k in ("created", "started", "done")
    )
    frame["wait_s"] = (started - created).dt.total_seconds()
    frame["run_s"] = (done - started).dt.total_seconds()
    frame["total_s"] = (done - created).dt.total_seconds()
    return frame


def naive_frame(parts: list[list[dict[str, Any]]]) -> pd.DataFrame:
    """json_normalize each collection's documents, concatenate, keep history's copy."""
    frames = [pd.json_normalize(docs) for docs in parts]
    frame = pd.concat(frames, ignore_index=True).drop_duplicates("_id", ignore_index=True)
    return with_timings(frame)


def naive_load(q: JobQueue) -> pd.DataFrame:
    """The naive baseline end to end: ``find()`` every document of both collections."""
    return naive_frame([list(c.find()) for c in both(q)])


def naive_convert(batches: list[list[bytes]]) -> pd.DataFrame:
    """The naive baseline's conversion from the unprojected raw batches."""
    parts = [[doc for batch in bs for doc in bson.decode_all(batch, TZ_CODEC)] for bs in batches]
    return naive_frame(parts)


# -- measurements ----------------------------------------------------------------------------


@dataclass
class Results:
    """Per-round figures: ``rounds[metric] -> [seconds, ...]``."""

    rounds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, metric: str, value: float) -> None:
        self.rounds[metric].append(value)

    def median(self, metric: str) -> float:
        return statistics.median(self.rounds[metric])


def timed(call: Callable[[], Any]) -> float:
    """Seconds ``call`` takes, after a garbage collection; its output swallowed."""
    gc.collect()
    with quiet():
        start = time.perf_counter()
        call()
        return time.perf_counter() - start


def measure(res: Results, rnd: int, sides: dict[str, Callable[[], Any]], repeat: int = 1) -> None:
    """Time each side, in the listed order in even rounds and reversed in odd ones; with
    ``repeat``, the sides alternate ``repeat`` times and each round keeps the median."""
    order = list(sides) if rnd % 2 == 0 else list(reversed(sides))
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(repeat):
        for metric in order:
            times[metric].append(timed(sides[metric]))
    for metric in sides:
        res.add(metric, statistics.median(times[metric]))


def history_no_data_pure_bson(q: JobQueue) -> pd.DataFrame:
    """``q.history(fields=[])`` as without pymongoarrow."""
    with pure_bson():
        return q.history(fields=[])


def run_round(
    q: JobQueue, args: argparse.Namespace, rnd: int, res: Results, held: dict[str, Any]
) -> None:
    """One round of every measurement."""
    frame_from_batches = history_module.frame_from_batches
    measure(
        res,
        rnd,
        {
            "hist": q.history,
            "hist_raw": lambda: raw_fetch(q, DATA_PROJECTION),
            "full_raw": lambda: raw_fetch(q, None),
            "hist_naive": lambda: naive_load(q),
        },
    )
    measure(
        res,
        rnd,
        {
            "nodata_arrow": lambda: q.history(fields=[]),
            "nodata_bson": lambda: history_no_data_pure_bson(q),
            "nodata_raw": lambda: raw_fetch(q, NO_DATA_PROJECTION),
        },
    )

    def convert_pure() -> pd.DataFrame:
        with pure_bson():
            return frame_from_batches(*held["nodata"], data=False)

    measure(
        res,
        rnd,
        {
            "conv": lambda: frame_from_batches(*held["data"]),
            "conv_nodata_arrow": lambda: frame_from_batches(*held["nodata"], data=False),
            "conv_nodata_bson": convert_pure,
            "conv_naive": lambda: naive_convert(held["full"]),
        },
        repeat=args.convert_repeat,
    )
    measure(
        res,
        rnd,
        {
            "stats": q.stats,
            "stats_by": lambda: q.stats(by="data.kind"),
            "stats_exact": lambda: q.stats(exact=True),
            "summary": lambda: q.history().mjq.summary(),
            "summary_by": lambda: q.history().mjq.summary(by="data.kind"),
        },
    )


# -- checks ----------------------------------------------------------------------------------


def first_lines(exc: BaseException, n: int = 6) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()
    return "\n      ".join(text[:n])


def compare_stats(ours: pd.DataFrame, reference: pd.DataFrame) -> tuple[bool, float, float]:
    """Whether the tables have the same rows and columns and allclose numbers; the largest
    relative gap in count/mean/max/failure_rate, and in the percentiles."""
    if list(ours.index) != list(reference.index) or list(ours.columns) != list(reference.columns):
        return False, float("nan"), float("nan")
    a, b = ours.to_numpy(dtype="float64"), reference.to_numpy(dtype="float64")
    close = bool(np.allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        gaps = np.abs(a - b) / np.maximum(np.abs(b), 1e-12)
    percentile = np.isin(ours.columns, list(PERCENTILES))
    return close, float(np.nanmax(gaps[:, ~percentile])), float(np.nanmax(gaps[:, percentile]))


FAILED_CHECKS: list[str] = []  # checks() lines that say the loaders disagree


def checks(setup: Setup) -> list[str]:
    """Correctness of what was timed, computed once, outside the timings."""
    q = setup.queue
    lines = []
    with quiet():
        frame = q.history()
        arrow = q.history(fields=[])
        with pure_bson():
            plain = q.history(fields=[])
        naive = naive_load(q)
    lines.append(
        f"history() rows: {len(frame)} (expected {setup.jobs} distinct jobs: "
        f"{setup.n_history} in history + {setup.n_queue} in the queue - {setup.n_both} in both)"
        f" -> {'OK' if len(frame) == setup.jobs else 'WRONG'}"
    )
    statuses = frame["status"].value_counts().to_dict()
    lines.append(f"history() statuses: {statuses}; columns: {list(frame.columns)}")
    same_ids = set(naive["_id"]) == set(frame["id"])
    lines.append(
        f"naive frame rows: {len(naive)}, same job ids as history(): {same_ids}; "
        f"{naive.shape[1]} columns"
    )
    try:
        pd.testing.assert_frame_equal(arrow, plain)
        lines.append("history(fields=[]) pymongoarrow == pure bson (assert_frame_equal): EQUAL")
    except AssertionError as exc:
        lines.append(
            "history(fields=[]) pymongoarrow vs pure bson (assert_frame_equal): DIFFERENT\n"
            f"      {first_lines(exc)}"
        )
    for by in (None, "data.kind"):
        reference = frame.mjq.summary(by=by)
        for exact in (True, False):
            ours = q.stats(by=by, exact=exact)
            close, gap, gap_p = compare_stats(ours, reference)
            args = ", ".join([*([f'by="{by}"'] if by else []), *(["exact=True"] if exact else [])])
            call = f"stats({args}) vs summary({f'by={by!r}' if by else ''})"
            if exact:
                verdict = "AGREE (numpy.allclose)" if close else "DISAGREE"
            else:  # approximate percentiles; everything else must match
                verdict = "AGREE except percentiles" if gap < 1e-9 else "DISAGREE"
            lines.append(
                f"{call:48} {verdict}; largest relative gap: count/mean/max/failure_rate "
                f"{gap:.1e}, p50/p90/p99 {gap_p:.1e}"
            )
    FAILED_CHECKS.extend(
        line for line in lines if any(word in line for word in ("WRONG", "DISAGREE", "DIFFERENT"))
    )
    return lines


# -- report ----------------------------------------------------------------------------------


@dataclass
class Row:
    """A table row: ours against a baseline, both medians of seconds."""

    label: str
    ours: str
    baseline: str
    baseline_label: str
    target: float | None = None  # the largest passing ratio ours/baseline


ROWS = [
    Row("history()", "hist", "hist_raw", "raw fetch, same projection", 1.25),
    Row("history()", "hist", "hist_naive", "naive json_normalize(find())"),
    Row("raw fetch, history's projection", "hist_raw", "full_raw", "raw fetch, no projection"),
    Row("history(fields=[]), pymongoarrow", "nodata_arrow", "nodata_raw", "raw fetch", 1.25),
    Row("history(fields=[]), pure bson", "nodata_bson", "nodata_raw", "raw fetch", 1.25),
    Row("history(fields=[]), pymongoarrow", "nodata_arrow", "nodata_bson", "pure bson path"),
    Row("frame_from_batches, data", "conv", "conv_naive", "naive conversion"),
    Row(
        "frame_from_batches, no data, arrow", "conv_nodata_arrow", "conv_naive", "naive conversion"
    ),
    Row("frame_from_batches, no data, bson", "conv_nodata_bson", "conv_naive", "naive conversion"),
    Row("stats() (approximate)", "stats", "summary", "history().mjq.summary()"),
    Row('stats(by="data.kind")', "stats_by", "summary_by", "history().summary(by)"),
    Row("stats(exact=True)", "stats_exact", "summary", "history().mjq.summary()"),
]


def table(res: Results) -> list[str]:
    """The results as markdown table lines."""
    lines = [
        "| measurement | ours (ms) | baseline | baseline (ms) | ratio | target | result |",
        "|---|---:|---|---:|---:|---|---|",
    ]
    for row in ROWS:
        ours, base = res.median(row.ours), res.median(row.baseline)
        ratio = ours / base
        target = "-" if row.target is None else f"<= {row.target:.2f}x"
        lines.append(
            f"| {row.label} | {ours * 1e3:.0f} | {row.baseline_label} | {base * 1e3:.0f} "
            f"| {ratio:.2f}x | {target} | {verdict(ratio, row.target)} |"
        )
    return lines


def throughput_lines(res: Results, setup: Setup) -> list[str]:
    """Jobs per second of history() and of the raw fetch it rides on."""
    jobs = setup.jobs
    docs = setup.n_history + setup.n_queue
    return [
        f"history():            {jobs / res.median('hist'):8,.0f} jobs/s ({jobs} jobs)",
        f"history(fields=[]):   {jobs / res.median('nodata_arrow'):8,.0f} jobs/s",
        f"raw fetch, same projection: {docs / res.median('hist_raw'):8,.0f} docs/s",
        f"frame_from_batches:   {jobs / res.median('conv'):8,.0f} jobs/s (no server)",
    ]


def breakdown(res: Results) -> list[str]:
    """history() against the sum of its parts, each measured on its own."""
    parts = {"raw fetch": res.median("hist_raw"), "frame_from_batches": res.median("conv")}
    total, hist = sum(parts.values()), res.median("hist")
    text = " + ".join(f"{name} {seconds * 1e3:.0f}" for name, seconds in parts.items())
    return [
        f"{text} = {total * 1e3:.0f} ms",
        f"history() measured: {hist * 1e3:.0f} ms (rest: {(hist - total) * 1e3:+.0f} ms)",
    ]


def per_round(res: Results) -> list[str]:
    """Every round's figure, so the spread behind each median is visible."""
    return [
        f"  {metric:18} ms: " + " ".join(f"{v * 1e3:7.0f}" for v in values)
        for metric, values in res.rounds.items()
    ]


def versions() -> str:
    parts = [f"pandas {pd.__version__}", f"numpy {np.__version__}"]
    for name in ("pyarrow", "pymongoarrow"):
        try:
            module = __import__(name)
            parts.append(f"{name} {module.__version__}")
        except ImportError:
            parts.append(f"{name} not installed")
    return ", ".join(parts)


# -- production size (--production) ----------------------------------------------------------

PRODUCTION_CHUNK = 50_000  # documents generated and inserted at a time


def populate_in_chunks(db: Database, args: argparse.Namespace) -> Setup:
    """Like ``populate``, a day of jobs per chunk, so the generated documents never all sit in
    this process's memory (its peak RSS is measured afterwards). With ``--keep-database``
    a database this filled before (the same ``--jobs``) is used as it is."""
    rng = random.Random(args.seed)
    ids, workers = Ids(rng), worker_names(rng)
    now = bson_time(dt.datetime.now(dt.timezone.utc))
    q = JobQueue(db, name=QUEUE)
    n_both = min(args.queue_jobs // 7, args.jobs)
    if args.keep_database and q.history_collection.estimated_document_count() == args.jobs:
        return Setup(q, args.jobs, args.queue_jobs, n_both, {"reused the filled database": 0.0})
    chunks = math.ceil(args.jobs / PRODUCTION_CHUNK)
    started = time.perf_counter()
    for k in range(chunks):
        n = min(PRODUCTION_CHUNK, args.jobs - k * PRODUCTION_CHUNK)
        end = now - dt.timedelta(minutes=10, days=chunks - 1 - k)
        finished = history_documents(rng, ids, workers, n, end)
        for start in range(0, n, 10_000):
            q.history_collection.insert_many(finished[start : start + 10_000], ordered=False)
    took = time.perf_counter() - started
    insert_chunks(q.collection, queue_documents(rng, ids, workers, args.queue_jobs,
                                                finished[-n_both:], now))  # fmt: skip
    seconds = {f"generate + insert {args.jobs} into history (10000 a call)": took}
    return Setup(q, args.jobs, args.queue_jobs, n_both, seconds)


def peak_growth(call: Callable[[], Any]) -> tuple[Any, float, float, float]:
    """``call()``'s result, seconds, and the growth of this process's peak RSS during it in
    MB: by ``/proc/self/status`` VmHWM after resetting it, and by ``getrusage``'s ru_maxrss
    (a lifetime peak: it only shows growth beyond every earlier peak)."""
    gc.collect()
    with open("/proc/self/clear_refs", "w") as clear:  # "5": reset the peak RSS (Linux 4.0+)
        clear.write("5")
    rss, maxrss = status_kb("VmRSS"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with quiet():
        start = time.perf_counter()
        result = call()
        seconds = time.perf_counter() - start
    hwm = status_kb("VmHWM") - rss
    lifetime = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - maxrss
    return result, seconds, hwm / 1024, lifetime / 1024


def production(db: Database, args: argparse.Namespace) -> None:
    """Fill history with ``--jobs`` and load it once each way: seconds, bytes per row, RSS."""
    setup = populate_in_chunks(db, args)
    q = setup.queue
    if args.fill_only:
        print(f"filled {args.keep_database}: {setup.seconds}", flush=True)
        return
    for label, seconds in setup.seconds.items():
        print(f"setup: {label} {seconds:.0f} s", flush=True)
    print(f"rss after setup: {status_kb('VmRSS') / 1024:.0f} MB; pid {os.getpid()}\n")
    print("| load | rows | seconds | vs raw fetch | frame B/row | peak RSS growth MB "
          "(VmHWM / ru_maxrss) | RSS growth B/row |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    sides = {
        "history(limit=None)": lambda: q.history(limit=None),
        "raw fetch, same projection": lambda: raw_fetch(q, DATA_PROJECTION),
        "history(fields=[], limit=None)": lambda: q.history(fields=[], limit=None),
        "raw fetch, no-data projection": lambda: raw_fetch(q, NO_DATA_PROJECTION),
        "history() (default cap)": q.history,
    }
    if args.history_only:  # the first load's RSS is the only clean figure (see CHANGELOG.md)
        sides = {"history(limit=None)": sides["history(limit=None)"]}
    raw_for = {"history(limit=None)": "raw fetch, same projection",
               "history(fields=[], limit=None)": "raw fetch, no-data projection",
               "history() (default cap)": "raw fetch, same projection"}  # fmt: skip
    took: dict[str, float] = {}
    for label, call in sides.items():
        result, seconds, hwm, lifetime = peak_growth(call)
        took[label] = seconds
        if isinstance(result, pd.DataFrame):
            rows = len(result)
            per_row = f"{result.memory_usage(deep=True).sum() / rows:.0f}"
        else:
            rows = sum(1 for part in result for batch in part for _ in _offsets(batch))
            per_row = f"({sum(len(b) for part in result for b in part) / rows:.0f} BSON)"
        base = raw_for.get(label)
        ratio = f"{seconds / took[base]:.2f}x" if base in took else "-"
        print(f"| {label} | {rows:,} | {seconds:.1f} | {ratio} | {per_row} | "
              f"{hwm:.0f} / {lifetime:.0f} | {hwm * 2**20 / rows:.0f} |", flush=True)  # fmt: skip
        del result


def _offsets(batch: bytes) -> Iterator[int]:
    """Where each BSON document in a raw batch starts."""
    offset = 0
    while offset < len(batch):
        yield offset
        offset += int.from_bytes(batch[offset : offset + 4], "little")


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; defaults finish in about two minutes on the embedded server."""
    p = parser(__doc__)
    p.add_argument("--jobs", type=int, default=20_000, help="finished jobs in history (20000)")
    p.add_argument(
        "--queue-jobs",
        type=int,
        default=1_000,
        help="jobs in the capped queue; a seventh are finished ones also in history (1000)",
    )
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument(
        "--convert-repeat",
        type=int,
        default=3,
        help="conversions per side per round, median kept (3)",
    )
    p.add_argument("--seed", type=int, default=1, help="random seed for the data (1)")
    p.add_argument(
        "--production",
        action="store_true",
        help="time and memory of single loads at --jobs (e.g. 1000000) instead of the rounds",
    )
    p.add_argument(
        "--keep-database",
        metavar="NAME",
        help="--production: fill database NAME once and keep it, reusing it on later runs",
    )
    p.add_argument("--fill-only", action="store_true", help="--production: fill, load nothing")
    p.add_argument(
        "--history-only",
        action="store_true",
        help="--production: measure only history(limit=None), the first (clean) load",
    )
    return smoke(p.parse_args(argv), jobs=300, queue_jobs=70, rounds=1, convert_repeat=1)


def bench(uri: str, args: argparse.Namespace) -> None:
    """Fill the queue, run every round and the checks, then print the report."""
    # a long load keeps the server busy: a 5 s heartbeat would give up on it (and cancel it)
    client = client_for(uri, timeout=120 if args.production else 5)
    print("\n".join(environment(client, args, f"; {versions()}")), flush=True)
    started = time.perf_counter()
    if args.production:
        if args.keep_database:
            production(client[args.keep_database], args)
            return
        with scratch_database(client) as db:
            production(db, args)
        return
    with scratch_database(client) as db:
        setup = populate(db, args)
        q = setup.queue
        step = time.perf_counter()
        held = {
            "data": raw_fetch(q, DATA_PROJECTION),
            "nodata": raw_fetch(q, NO_DATA_PROJECTION),
            "full": raw_fetch(q, None),
        }
        setup.seconds["fetch batches held for the conversion runs"] = time.perf_counter() - step
        print("\nsetup:")
        for label, seconds in setup.seconds.items():
            print(f"  {label:48} {seconds:7.2f} s")
        res = Results()
        rounds_started = time.perf_counter()
        for rnd in range(args.rounds):
            run_round(q, args, rnd, res, held)
            round_done(rnd, args.rounds, started)
        rounds_took = time.perf_counter() - rounds_started
        step = time.perf_counter()
        check_lines = checks(setup)
        checks_took = time.perf_counter() - step
    total = time.perf_counter() - started
    print(
        f"\nmedians over {args.rounds} rounds ({rounds_took:.0f}s; checks {checks_took:.0f}s; "
        f"{total:.0f}s in all):\n"
    )
    print("\n".join(table(res)))
    print("\nhistory() as the sum of its parts (medians, ms):")
    print("\n".join(f"  {line}" for line in breakdown(res)))
    print("\nthroughput (medians):")
    print("\n".join(f"  {line}" for line in throughput_lines(res, setup)))
    print("\nchecks:")
    print("\n".join(f"  {line}" for line in check_lines))
    print("\nper round (ours-first order in rounds 1, 3, ...):")
    print("\n".join(per_round(res)))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when its own correctness checks failed."""
    run_bench(bench, parse_args(argv))
    if FAILED_CHECKS:
        print("\nFAILED checks:\n  " + "\n  ".join(FAILED_CHECKS))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
