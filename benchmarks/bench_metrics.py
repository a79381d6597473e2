"""Benchmark the rollups (``mjq_notebook.core.metrics``): what a long view costs, and what
rolling up costs the queue.

1. p99 wait over 90 days: from the rollups (``--days`` x 1,440 minute documents inserted
   directly, each with wait and run sketches of ``--per-minute`` jobs, and their hour
   documents derived from them as a deployment's first pass after the upgrade does) read
   through the hours (``metrics.read`` with period cuts: whole hours as hour documents, the
   partial hours at the edges as minutes), and from the minutes only, against computing it
   from history on the same server (``--history-jobs`` finished jobs spread over the same
   days): a ``find`` of ``ts.created``/``ts.started`` into numpy, and ``q.stats()`` (the
   aggregation in the server; ``--no-stats`` skips it). The rollups' cost grows with hours
   (or minutes), history's with jobs.
2. What the hour step adds to a normal pass (a roller's pass on a queue with a day of
   minutes: its trailing 10 minutes rolled again, then the hour or two they touch derived
   from their minutes): ``--passes`` passes with the step and as many with it left out,
   in alternating blocks; medians.
3. pub + claim + done per job, one job at a time in one thread, on a fresh queue per round:
   with no roller (as before the rollups), and with a Worker's roller rolling every 30 s
   (``ROLL_EVERY_S``) and, to show a pass's own cost, every ``--hot-every`` seconds; sides
   in alternating order, medians over ``--rounds``.

    python benchmarks/bench_metrics.py                      # embedded SecantusDB, in-process
    python benchmarks/bench_metrics.py --uri mongodb://localhost:27017   # or MJQ_TEST_MONGODB_URI
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import random
import statistics
import struct
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
from _common import environment, parser, per_job_ms, round_done, run_bench, scratch_database, smoke
from bson import ObjectId
from pymongo import ASCENDING

from mjq_notebook import JobQueue
from mjq_notebook.core import hours, metrics
from mjq_notebook.core.sketch import Sketch
from mjq_notebook.server import client_for

UTC = dt.timezone.utc


def timed(call: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


# -- 1. p99 wait over 90 days -----------------------------------------------------------------


def fill_rollups(q: JobQueue, start: dt.datetime, days: int, per_minute: int) -> float:
    """Insert a minute document for every minute of ``days``; returns the seconds it took."""
    rng = random.Random(26)
    coll, docs, began = metrics.collection(q), [], time.perf_counter()
    for i in range(days * 1440):
        minute = start + dt.timedelta(minutes=i)
        wait = Sketch.of(rng.lognormvariate(0, 1) for _ in range(per_minute))
        run = Sketch.of(rng.lognormvariate(-0.7, 1.2) for _ in range(per_minute))
        docs.append({
            "_id": minute, "at": minute, "created": per_minute, "started": per_minute,
            "done": per_minute, "failed": 0, "cancelled": 0, "retried": 0,
            "wait": wait.to_doc(), "run": run.to_doc(), "rolled_at": minute, "fence": 1,
        })  # fmt: skip
        if len(docs) == 5000:
            coll.insert_many(docs)
            docs = []
    if docs:
        coll.insert_many(docs)
    return time.perf_counter() - began


def fill_history(q: JobQueue, start: dt.datetime, days: int, jobs: int) -> float:
    """Insert ``jobs`` finished jobs spread over ``days`` into history, as the queue writes
    them; returns the seconds it took."""
    rng = random.Random(7)
    span, docs, began = days * 86_400, [], time.perf_counter()
    for _ in range(jobs):
        created = start + dt.timedelta(seconds=rng.uniform(0, span))
        started = created + dt.timedelta(seconds=rng.lognormvariate(0, 1))
        done = started + dt.timedelta(seconds=rng.lognormvariate(-0.7, 1.2))
        docs.append({
            "_id": ObjectId(struct.pack(">I", int(created.timestamp())) + os.urandom(8)),
            "status": "done", "ts": {"created": created, "started": started, "done": done},
            "data": {"n": 1}, "priority": 0, "available_at": created, "attempts": 1,
            "max_attempts": 3, "lease_until": None, "worker": "bench",
        })  # fmt: skip
        if len(docs) == 5000:
            q.history_collection.insert_many(docs)
            docs = []
    if docs:
        q.history_collection.insert_many(docs)
    return time.perf_counter() - began


def derive_hours(q: JobQueue) -> float:
    """Every hour derived from the minutes, as a deployment's first pass after the upgrade
    does (without the pass's recount from jobs); returns the seconds it took."""
    began = time.perf_counter()
    metrics.ensure_indexes(q)  # as every pass does first: the TTL indexes the reads use
    lease = metrics._Lease.take(q._meta, wait=10)
    assert lease is not None
    try:
        metrics._derive_hours(q, lease, dt.datetime.now(UTC), dt.datetime.now(UTC))
    finally:
        lease.give_back()
    return time.perf_counter() - began


def p99_from_rollups(
    q: JobQueue, since: dt.datetime, until: dt.datetime, via_hours: bool, read: list[int]
) -> float | None:
    """The merged p99 wait; ``read`` gets how many documents came back."""
    merged = Sketch()
    docs = metrics.read(q, since, until, cuts=() if via_hours else None)
    for doc in docs:
        merged.merge(Sketch.from_doc(doc.get("wait")))
    read.append(len(docs))
    return merged.quantile(0.99)


def p99_from_history(q: JobQueue, since: dt.datetime, until: dt.datetime) -> float:
    window = {"ts.done": {"$gte": since, "$lt": until}}
    fields = {"_id": 0, "ts.created": 1, "ts.started": 1}
    rows = q.history_collection.find(window, fields, batch_size=10_000)
    waits = np.array([(d["ts"]["started"] - d["ts"]["created"]).total_seconds() for d in rows])
    return float(np.quantile(waits, 0.99))


def long_view(client, args: argparse.Namespace) -> None:
    with scratch_database(client_for(args.uri_used)) as db:
        q = JobQueue(db, "months", lease=30)
        q.history_collection.create_index([("ts.done", ASCENDING)])
        # the window ends an hour from now, so that on a mongod the TTL monitor (90 days)
        # deletes none of its minutes while the benchmark runs
        until = dt.datetime.now(UTC).replace(second=0, microsecond=0) + dt.timedelta(hours=1)
        start = until - dt.timedelta(days=args.days)
        minutes = args.days * 1440
        seconds = fill_rollups(q, start, args.days, args.per_minute)
        print(f"rollups: {minutes:,} minute documents inserted in {seconds:.0f} s")
        seconds = derive_hours(q)
        hour_docs = hours.collection(q).count_documents({})
        print(f"rollups: {hour_docs:,} hour documents derived from them in {seconds:.1f} s")
        seconds = fill_history(q, start, args.days, args.history_jobs)
        print(
            f"history: {args.history_jobs:,} jobs over {args.days} days inserted in {seconds:.0f} s"
        )
        via: list[int] = []
        rollup_s, rollup_p99 = timed(lambda: p99_from_rollups(q, start, until, True, via))
        minutes_s, minutes_p99 = timed(lambda: p99_from_rollups(q, start, until, False, via))
        frame_s, frame = timed(lambda: q.metrics(start, until, every="1D", roll=False))
        find_s, find_p99 = timed(lambda: p99_from_history(q, start, until))
        stats = "skipped (--no-stats)"
        if not args.no_stats:
            try:
                stats_s, _ = timed(lambda: q.stats(since=start, until=until))
                stats = f"{stats_s:.2f} s ({stats_s / rollup_s:.1f}x)"
            except Exception as exc:  # a server without $percentile, say
                stats = f"failed: {type(exc).__name__}"
        per_job_us = find_s / max(args.history_jobs, 1) * 1e6
        print(f"\n| p99 wait over {args.days} days | seconds | / hours | p99 |")
        print("|---|---:|---:|---:|")
        print(f"| rollups via hours: read {via[0]:,} hour and edge-minute documents, merge "
              f"| {rollup_s:.2f} | 1.00x | {rollup_p99:.3f} |")  # fmt: skip
        print(f"| rollups, minutes only: read {via[1]:,} minutes, merge | {minutes_s:.2f} "
              f"| {minutes_s / rollup_s:.2f}x | {minutes_p99:.3f} |")  # fmt: skip
        print(f"| q.metrics(every='1D') via hours: {len(frame)} rows of p50/p90/p99 "
              f"| {frame_s:.2f} | {frame_s / rollup_s:.2f}x | - |")  # fmt: skip
        print(f"| history: find {args.history_jobs:,} jobs' times, numpy | {find_s:.2f} "
              f"| {find_s / rollup_s:.2f}x | {find_p99:.3f} |")  # fmt: skip
        print(f"| history: q.stats() in the server | {stats} | | |")
        same = "the same" if rollup_p99 == minutes_p99 else "DIFFERENT"
        print(f"p99 via hours and via minutes: {same} ({rollup_p99!r}, {minutes_p99!r})")
        at_1_per_s = per_job_us * args.days * 86_400 / 1e6
        print(f"history read per job: {per_job_us:.1f} us; at 1 job/s over {args.days} days "
              f"({args.days * 86_400:,} jobs) that is ~{at_1_per_s:,.0f} s (extrapolated), "
              f"the rollups' {rollup_s:.2f} s whatever the rate")  # fmt: skip


# -- 2. what the hour step adds to a pass ------------------------------------------------------


@contextlib.contextmanager
def without_hour_step() -> Iterator[None]:
    """Passes as before the hours: no pending mark, no derivation."""
    derive, put = metrics._derive_hours, metrics._Lease.set

    def put_no_mark(self: metrics._Lease, fields: dict) -> None:
        fields = {k: v for k, v in fields.items() if k != "hours_from"}
        if fields:
            put(self, fields)

    metrics._derive_hours = lambda *a, **k: 0  # type: ignore[assignment]
    metrics._Lease.set = put_no_mark  # type: ignore[method-assign]
    try:
        yield
    finally:
        metrics._derive_hours, metrics._Lease.set = derive, put  # type: ignore[method-assign]


def hour_step_cost(client, args: argparse.Namespace) -> None:
    with scratch_database(client_for(args.uri_used)) as db:
        q = JobQueue(db, "passes", lease=30)
        now = dt.datetime.now(UTC).replace(second=0, microsecond=0)
        fill_rollups(q, now - dt.timedelta(days=1), 1, args.per_minute)  # to the last minute
        derive_hours(q)
        q.pub_many([{"n": i} for i in range(20)])  # a few jobs in the trailing minutes
        for _ in range(15):
            q.done(q.next(timeout=5))
        sides: dict[str, list[float]] = {"with the hour step": [], "without": []}
        block = max(args.passes // 4, 1)
        for rnd in range(max(args.passes // block, 1)):
            for name in sides if rnd % 2 == 0 else reversed(list(sides)):
                context = contextlib.nullcontext() if name != "without" else without_hour_step()
                with context:
                    for _ in range(block):
                        seconds, _ = timed(lambda: metrics.roll(q, wait=5))
                        sides[name].append(seconds * 1000)
    with_ms = statistics.median(sides["with the hour step"])
    without_ms = statistics.median(sides["without"])
    print(f"\n| a normal pass ({len(sides['without'])} of each, median) | ms | / without |")
    print("|---|---:|---:|")
    print(f"| with the hour step | {with_ms:.1f} | {with_ms / without_ms:.2f}x |")
    print(f"| without (as before the hours) | {without_ms:.1f} | 1.00x |")
    print(f"the hour step adds {with_ms - without_ms:.1f} ms a pass")


# -- 3. what rolling adds per job --------------------------------------------------------------


def with_roller(q: JobQueue, every: float | None, n: int) -> tuple[float, int]:
    """Per-job ms while a roller rolls ``q`` every ``every`` seconds (None: no roller);
    and how many passes ran."""
    if every is None:
        return per_job_ms(q, n), 0
    stop, passes = threading.Event(), [0]

    def roll() -> None:
        while True:
            metrics.roll(q, wait=0)
            passes[0] += 1
            if stop.wait(every):
                return

    thread = threading.Thread(target=roll, daemon=True)
    thread.start()
    try:
        return per_job_ms(q, n), passes[0]
    finally:
        stop.set()
        thread.join(60)


def roller_cost(client, args: argparse.Namespace) -> None:
    sides: dict[str, float | None] = {
        "no roller": None,
        f"roller every {metrics.ROLL_EVERY_S:g} s (a Worker's)": metrics.ROLL_EVERY_S,
        f"roller every {args.hot_every:g} s": args.hot_every,
    }
    results: dict[str, list[float]] = {name: [] for name in sides}
    passes: dict[str, int] = dict.fromkeys(sides, 0)
    began = time.perf_counter()
    with scratch_database(client_for(args.uri_used)) as db:
        for rnd in range(args.rounds):
            order = list(sides) if rnd % 2 == 0 else list(reversed(sides))
            for name in order:
                q = JobQueue(db, f"r{rnd}_{len(results[name])}_{abs(hash(name)) % 1000}")
                ms, n = with_roller(q, sides[name], args.jobs)
                results[name].append(ms)
                passes[name] += n
            round_done(rnd, args.rounds, began)
    base = statistics.median(results["no roller"])
    print(f"\n| pub+claim+done per job ({args.jobs:,} jobs a round, median of {args.rounds}) "
          "| ms | / no roller | passes |")  # fmt: skip
    print("|---|---:|---:|---:|")
    for name, values in results.items():
        ms = statistics.median(values)
        print(f"| {name} | {ms:.2f} | {ms / base:.2f}x | {passes[name]} |")


def bench(uri: str, args: argparse.Namespace) -> None:
    args.uri_used = uri
    client = client_for(uri)
    print("\n".join(environment(client, args, "")))
    long_view(client, args)
    hour_step_cost(client, args)
    roller_cost(client, args)
    client.close()


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--days", type=int, default=90, help="days of rollups (default 90)")
    p.add_argument("--per-minute", type=int, default=20, help="jobs in each minute's sketches")
    p.add_argument("--history-jobs", type=int, default=100_000, help="jobs in history")
    p.add_argument("--jobs", type=int, default=1500, help="jobs per round of part 2")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--hot-every", type=float, default=1.0, help="the busy roller's period (s)")
    p.add_argument("--passes", type=int, default=40, help="normal passes a side (part 2)")
    p.add_argument("--no-stats", action="store_true", help="skip q.stats() (slow on SecantusDB)")
    args = smoke(
        p.parse_args(),
        days=1,
        per_minute=3,
        history_jobs=500,
        jobs=30,
        rounds=1,
        hot_every=0.2,
        passes=4,
    )
    run_bench(bench, args)


if __name__ == "__main__":
    main()
