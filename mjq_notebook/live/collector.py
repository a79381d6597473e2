"""Every queue of a database as Prometheus metric families, read afresh at each scrape
(``mjq metrics``).

A ``prometheus_client`` custom collector: nothing runs between scrapes, nothing is written,
and a scrape costs a few small reads per queue, none of which grows with history:
``counts()``, the pause flag, the counters and rollup state (one read), the oldest due waiting
job (a few finds, only when one waits), the worker registry (a day of records at most) and
the rollups' minutes not yet final. Measured on the embedded server: 10 finds and 3
aggregations per queue plus one listCollections, 0.05 s a scrape for one queue and 0.13 s
for ten (read ``PARALLEL`` at a time).

The wait and run histograms are cumulative, as Prometheus wants: merged from the per-minute
sketches of the rollups (core/metrics.py), as fresh as their last roll (every worker rolls
its queues every 30 s). The first scrape merges every retained hour (hour documents, and
minutes at the edges: ~2,200 documents for 90 days, not 129,600); later ones read only the
minutes not yet final (``Latency``) and keep the final ones merged between scrapes, so the
counts never fall, also when the rollups' TTL removes a minute.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..core import metrics as rollups
from ..core.catalog import queue_names
from ..core.hours import floor_hour
from ..core.job import FINISHED, Status, utcnow
from ..core.minutes import MINUTE, floor
from ..core.names import COUNTERS_ID
from ..core.queue import JobQueue
from ..core.registry import State
from ..core.sketch import Sketch

if TYPE_CHECKING:
    from pymongo.database import Database

PARALLEL = 8  # queues read at once
SLACK = dt.timedelta(minutes=2)  # a pass may still be writing minutes this far before its own
# the histograms' upper bounds, seconds: 5 ms to a day, as latencies of a job queue spread
BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
)  # fmt: skip
WORKER_STATES = tuple(state.value for state in State)
LATENCIES = ("wait", "run")
RETENTION = dt.timedelta(days=rollups.METRICS_DAYS)  # the first scrape reads back this far

# name, type, help: the families in the order they are written (the README lists them too)
FAMILIES = {
    "mjq_jobs": ("gauge", "Jobs of the queue by status, as JobQueue.counts() (lost: evicted "
                 "from the ring unfinished)"),
    "mjq_jobs_finished": ("counter", "Jobs finished, by outcome (done, failed, cancelled), "
                          "including those pruned from history since"),
    "mjq_oldest_waiting_age_seconds": ("gauge", "Seconds the oldest due waiting job has "
                                       "waited since it was due (0 when none waits)"),
    "mjq_workers": ("gauge", "Workers in the queue's registry by state (lost: silent for "
                    "three heartbeats)"),
    "mjq_paused": ("gauge", "1 while the queue is paused, else 0"),
    "mjq_job_wait_seconds": ("histogram", "Seconds from publish to start, from the queue's "
                             "per-minute rollups"),
    "mjq_job_run_seconds": ("histogram", "Seconds from start to finish, from the queue's "
                            "per-minute rollups"),
}  # fmt: skip


class QueueCollector(Collector):
    """The metric families of every queue in ``db``, read when collected (a scrape).

    Holds the database, the queues opened so far (opening one costs a read) and the merged
    latency sketches of final minutes; no thread, no credentials."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._queues: dict[str, JobQueue] = {}
        self._latency: dict[str, Latency] = {}
        self._finished: dict[tuple[str, str], int] = {}  # the highest total reported
        self._lock = threading.Lock()  # scrapes may come at once (a threading server)

    def __repr__(self) -> str:
        return f"QueueCollector({self.db.name!r})"

    def describe(self) -> list[Metric]:
        """Nothing: registering the collector must not read the database."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The families of ``FAMILIES``, one sample set per queue (read now)."""
        samples = self.samples()
        yield from families(samples)

    def samples(self) -> list[dict[str, Any]]:
        """Each queue's readings (see ``sample``), by name, the finished totals never lower
        than reported before (see ``hold``)."""
        rows = self._read()
        with self._lock:
            for row in rows:
                row["finished"] = self.hold(row["queue"], row["finished"])
        return rows

    def hold(self, queue: str, totals: dict[str, int]) -> dict[str, int]:
        """``totals`` (finished by outcome), each at least what was reported before: a failed
        job retried leaves history, and a counter that fell would read to Prometheus as a
        restart (``rate()`` would count everything again). The total holds until it passes
        its highest; a restart of the endpoint starts from the database's totals."""
        held = {}
        for outcome, n in totals.items():
            key = (queue, outcome)
            held[outcome] = self._finished[key] = max(self._finished.get(key, 0), n)
        return held

    def _read(self) -> list[dict[str, Any]]:
        now = utcnow()
        names = queue_names(self.db)
        with self._lock:
            for gone in set(self._queues) - set(names):
                self._queues.pop(gone, None)
                self._latency.pop(gone, None)
                for outcome in FINISHED:
                    self._finished.pop((gone, outcome), None)
            pairs = [
                (self._queue(name), self._latency.setdefault(name, Latency())) for name in names
            ]
        if len(pairs) <= 1:
            return [sample(queue, latency, now) for queue, latency in pairs]
        # each read in a copy of the caller's context, so a pymongo.timeout bounds them too
        with ThreadPoolExecutor(min(PARALLEL, len(pairs)), "mjq-metrics") as pool:
            futures = [
                pool.submit(contextvars.copy_context().run, sample, queue, latency, now)
                for queue, latency in pairs
            ]
            return [future.result() for future in futures]

    def _queue(self, name: str) -> JobQueue:
        if name not in self._queues:
            self._queues[name] = JobQueue.open(self.db, name)
        return self._queues[name]


def sample(queue: JobQueue, latency: Latency, now: dt.datetime) -> dict[str, Any]:
    """One queue's readings: ``counts``, ``finished`` (by outcome, pruned jobs included),
    ``oldest_waiting_s``, ``workers`` (by state), ``paused`` and ``latency`` (merged
    sketches by ``wait``/``run``)."""
    counts = queue.counts(warn=False)
    meta = queue.db[f"{queue.name}.meta"]  # the counters and the rollups' state: one read
    docs = {d["_id"]: d for d in meta.find({"_id": {"$in": [COUNTERS_ID, rollups.STATE_ID]}})}
    states = Counter(row.get("state") for row in queue.workers())
    age = rollups.oldest_waiting_age(queue) if counts.get("waiting") else None
    return {
        "queue": queue.name,
        "counts": counts,
        "finished": finished(counts, docs.get(COUNTERS_ID) or {}),
        "oldest_waiting_s": 0.0 if age is None else max(float(age), 0.0),
        "workers": {state: states.get(state, 0) for state in WORKER_STATES},
        "paused": queue.paused,
        "latency": latency.read(queue, docs.get(rollups.STATE_ID) or {}, now),
    }


def finished(counts: Mapping[str, int], counters: Mapping[str, Any]) -> dict[str, int]:
    """Finished jobs by outcome since the queue began: ``counts()`` (history and the ring)
    plus the jobs pruned from history, so the totals never fall. Pruned jobs are counted by
    outcome where retention.py recorded it (``pruned_by``); the rest count as done."""
    totals = {outcome: int(counts.get(outcome) or 0) for outcome in FINISHED}
    pruned = int(counters.get("pruned") or 0)
    by = counters.get("pruned_by")
    by = by if isinstance(by, Mapping) else {}
    for outcome in (Status.FAILED.value, Status.CANCELLED.value):
        n = int(by.get(outcome) or 0)
        totals[outcome] += n
        pruned -= n
    totals[Status.DONE.value] += max(pruned, 0)
    return totals


class Latency:
    """One queue's wait and run sketches merged over its final minutes (kept between
    scrapes), and the minute they reach.

    A minute is final once no roller writes it again: before the minute the last pass rolled
    to (``rolled_to`` in the rollups' state) and before the ``TRAIL`` every pass rolls again
    (metrics.py), less ``SLACK`` for a pass still writing. Later minutes are read at each
    scrape, so a scrape reads the minutes since the previous one plus about a quarter hour."""

    def __init__(self) -> None:
        self.final = {kind: Sketch() for kind in LATENCIES}
        self.until: dt.datetime | None = None  # the minutes before this are in ``final``
        self._lock = threading.Lock()

    def read(
        self, queue: JobQueue, state: Mapping[str, Any], now: dt.datetime
    ) -> dict[str, Sketch]:
        """Merged sketches by ``wait``/``run`` of every retained minute up to ``now``
        (``state``: the rollups' state document, as read with the counters)."""
        rolled_to = state.get("rolled_to")
        final = None
        if isinstance(rolled_to, dt.datetime):
            final = min(floor(rolled_to), floor(now) - rollups.TRAIL) - SLACK
        with self._lock:  # one scrape of a queue at a time moves ``until``
            since = self.until or floor(now) - RETENTION
            fresh = {kind: Sketch() for kind in LATENCIES}
            # the final whole hours as hour documents (no cut inside them: cuts=())
            edge = max(since, floor_hour(final)) if final is not None else since
            past = rollups.read(queue, since, edge, cuts=()) if edge > since else []
            for doc in [*past, *rollups.read(queue, edge, floor(now) + MINUTE)]:
                into = self.final if final is not None and doc["_id"] < final else fresh
                for kind in LATENCIES:
                    into[kind].merge(Sketch.from_doc(doc.get(kind)))
            if final is not None and final > since:
                self.until = final
            return {kind: Sketch().merge(self.final[kind]).merge(fresh[kind]) for kind in LATENCIES}


def families(samples: list[dict[str, Any]]) -> Iterator[Metric]:
    """The families of ``FAMILIES`` from the queues' readings."""
    help_ = {name: text for name, (_, text) in FAMILIES.items()}
    jobs = GaugeMetricFamily("mjq_jobs", help_["mjq_jobs"], labels=["queue", "status"])
    done = CounterMetricFamily(
        "mjq_jobs_finished", help_["mjq_jobs_finished"], labels=["queue", "outcome"]
    )
    oldest = GaugeMetricFamily(
        "mjq_oldest_waiting_age_seconds", help_["mjq_oldest_waiting_age_seconds"],
        labels=["queue"],
    )  # fmt: skip
    workers = GaugeMetricFamily("mjq_workers", help_["mjq_workers"], labels=["queue", "state"])
    paused = GaugeMetricFamily("mjq_paused", help_["mjq_paused"], labels=["queue"])
    latency = {
        kind: HistogramMetricFamily(
            f"mjq_job_{kind}_seconds", help_[f"mjq_job_{kind}_seconds"], labels=["queue"]
        )
        for kind in LATENCIES
    }
    for row in samples:
        name = row["queue"]
        for status, n in row["counts"].items():
            jobs.add_metric([name, status], n)
        for outcome, n in row["finished"].items():
            done.add_metric([name, outcome], n)
        oldest.add_metric([name], row["oldest_waiting_s"])
        for state, n in row["workers"].items():
            workers.add_metric([name, state], n)
        paused.add_metric([name], 1 if row["paused"] else 0)
        for kind in LATENCIES:
            buckets, total = histogram(row["latency"][kind])
            latency[kind].add_metric([name], buckets, total)
    yield from (jobs, done, oldest, workers, paused, *latency.values())


def histogram(sketch: Sketch) -> tuple[list[tuple[str, float]], float]:
    """Cumulative ``le`` buckets (``BUCKETS``, then +Inf) and the sum of a merged sketch."""
    buckets = [(_le(b), float(sketch.count_at_most(b))) for b in BUCKETS]
    return [*buckets, ("+Inf", float(sketch.count))], float(sketch.sum)


def _le(bound: float) -> str:
    return repr(float(bound))
