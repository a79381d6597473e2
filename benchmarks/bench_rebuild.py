"""Benchmark a long pass of the rollups (``q.rebuild_metrics()``, a queue's first pass): in
windows of ``minutes.WINDOW`` (one hour) against one pass over the whole history, as before
windows (``WINDOW`` set beyond the history's span), on the same filled database.

1. ``--jobs`` finished jobs spread over ``--days`` days in history, each attempt recorded in
   ``<queue>.attempts`` (a tenth of the jobs retried once, a few failed for good), as the
   queue writes them. Each rebuild runs in a process of its own connected to the server, so
   its peak RSS growth (``VmHWM`` after resetting it) is the rebuild's alone, not the
   server's; sides in alternating order (before, after, after, before, ...), ``--rounds``.
   The indexes a windowed pass reads by are built once first (timed: what the first pass on
   an old queue pays).
2. What those indexes (history ``ts.created``, ``ts.started``; attempts ``started``) add to
   pub + claim + done per job: fresh queues with the rollups' indexes of before and of now,
   alternating, medians of ``--hot-rounds`` rounds of ``--hot-jobs`` jobs.

    python benchmarks/bench_rebuild.py                      # embedded SecantusDB, in-process
    python benchmarks/bench_rebuild.py --uri mongodb://localhost:27017
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import random
import statistics
import struct
import subprocess
import sys
import time

from _common import (
    environment,
    parser,
    per_job_ms,
    round_done,
    run_bench,
    scratch_database,
    smoke,
    status_kb,
)
from bson import ObjectId
from pymongo import ASCENDING

from mjq_notebook import JobQueue
from mjq_notebook.core import metrics, minutes
from mjq_notebook.server import client_for

UTC = dt.timezone.utc
QUEUE = "rebuild"
SIDES = {"before": "one pass over the whole history", "after": "windows of an hour"}


# -- the filled history -------------------------------------------------------------------


def _oid(at: dt.datetime) -> ObjectId:
    return ObjectId(struct.pack(">I", int(at.timestamp())) + os.urandom(8))


def fill(q: JobQueue, start: dt.datetime, days: int, jobs: int) -> float:
    """``jobs`` finished jobs over ``days`` from ``start`` into history and their attempts'
    records, generated a day at a time; returns the seconds it took."""
    rng, began = random.Random(26), time.perf_counter()
    per_day = -(-jobs // days)
    for day in range(days):
        rows, records = [], []
        for _ in range(min(per_day, jobs - day * per_day)):
            created = start + dt.timedelta(days=day, seconds=rng.uniform(0, 86_400))
            tries = 2 if rng.random() < 0.1 else 1
            status = "failed" if rng.random() < 0.03 else "done"
            clock, job_id = created, _oid(created)
            for attempt in range(1, tries + 1):
                started = clock + dt.timedelta(seconds=rng.lognormvariate(1, 1.5))
                done = started + dt.timedelta(seconds=rng.lognormvariate(0, 1.5))
                outcome = status if attempt == tries else "failed"
                records.append({
                    "_id": {"job": job_id, "attempt": attempt}, "kind": "attempt",
                    "job": job_id, "attempt": attempt, "worker": "bench", "started": started,
                    "ended": done, "outcome": outcome, "error": None, "progress": None,
                })  # fmt: skip
                clock = done + dt.timedelta(seconds=1)
            rows.append({
                "_id": job_id, "status": status, "data": {"n": 1}, "priority": 0,
                "ts": {"created": created, "started": started, "done": done},
                "attempts": tries, "max_attempts": 3, "worker": "bench",
            })  # fmt: skip
        for i in range(0, len(rows), 10_000):
            q.history_collection.insert_many(rows[i : i + 10_000], ordered=False)
        for i in range(0, len(records), 10_000):
            q.attempts_collection.insert_many(records[i : i + 10_000], ordered=False)
    return time.perf_counter() - began


# -- one rebuild, in a process of its own ---------------------------------------------------


def child(uri: str, db: str, side: str) -> None:
    """Rebuild the rollups once, as ``side`` says; print seconds, peak RSS growth (MB) and
    the minute documents written as JSON."""
    if side == "before":
        minutes.WINDOW = dt.timedelta(days=100 * 365)  # the whole history in one window
    q = JobQueue(client_for(uri)[db], QUEUE)
    q.counts()  # connected, everything imported
    gc.collect()
    with open("/proc/self/clear_refs", "w") as clear:  # "5": reset the peak RSS (Linux 4.0+)
        clear.write("5")
    rss = status_kb("VmRSS")
    started = time.perf_counter()
    written = q.rebuild_metrics()
    seconds = time.perf_counter() - started
    growth = (status_kb("VmHWM") - rss) / 1024
    print(json.dumps({"seconds": seconds, "mb": growth, "written": written}))


def rebuild_in_child(uri: str, db: str, side: str) -> dict:
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", side, "--child-db", db,
         "--uri", uri],
        capture_output=True, text=True, check=True, timeout=6 * 3600,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def rebuild_sides(args: argparse.Namespace) -> None:
    client = client_for(args.uri_used)
    with scratch_database(client) as db:
        q = JobQueue(db, QUEUE)
        end = dt.datetime.now(UTC).replace(second=0, microsecond=0) - dt.timedelta(hours=1)
        start = end - dt.timedelta(days=args.days)
        seconds = fill(q, start, args.days, args.jobs)
        print(f"fill: {args.jobs:,} jobs over {args.days} days (history and attempts) "
              f"in {seconds:.0f} s", flush=True)  # fmt: skip
        began = time.perf_counter()
        metrics.ensure_indexes(q)
        metrics.ensure_window_indexes(q)
        print(f"indexes a windowed pass reads by, built on it: {time.perf_counter() - began:.1f} s")
        results: dict[str, list[dict]] = {side: [] for side in SIDES}
        began = time.perf_counter()
        for rnd in range(args.rounds):
            for side in SIDES if rnd % 2 == 0 else reversed(SIDES):
                results[side].append(rebuild_in_child(args.uri_used, db.name, side))
                print(f"{side}: {json.dumps(results[side][-1])}", file=sys.stderr, flush=True)
            round_done(rnd, args.rounds, began)
    print(f"\n| rebuild_metrics(), {args.jobs:,} jobs over {args.days} days | seconds | "
          "peak RSS growth MB | minutes written |")  # fmt: skip
    print("|---|---|---|---:|")
    for side, label in SIDES.items():
        runs = results[side]
        secs = ", ".join(f"{r['seconds']:.1f}" for r in runs)
        mbs = ", ".join(f"{r['mb']:.0f}" for r in runs)
        print(f"| {side}: {label} | {secs} | {mbs} | {runs[0]['written']:,} |")
    before, after = results["before"], results["after"]
    time_ratio = statistics.median(r["seconds"] for r in after) / statistics.median(
        r["seconds"] for r in before
    )
    mb_after = statistics.median(r["mb"] for r in after)
    mb_ratio = mb_after / max(statistics.median(r["mb"] for r in before), 1e-9)
    print(f"after/before: time {time_ratio:.2f}x, peak RSS growth {mb_ratio:.2f}x "
          f"({mb_after:.0f} MB)")  # fmt: skip


# -- what the indexes add per job ---------------------------------------------------------------


def indexes_before(q: JobQueue) -> None:
    """The rollups' indexes before windows: the TTL index and the attempts' ended."""
    metrics.collection(q).create_index([("at", ASCENDING)], expireAfterSeconds=90 * 86_400)
    q.attempts_collection.create_index([("ended", ASCENDING)])


def _all_indexes(q: JobQueue) -> None:
    metrics.ensure_indexes(q)
    metrics.ensure_window_indexes(q)


def hot_path(args: argparse.Namespace) -> None:
    sides = {"rollups' indexes before": indexes_before, "and a long pass's": _all_indexes}
    results: dict[str, list[float]] = {name: [] for name in sides}
    began = time.perf_counter()
    with scratch_database(client_for(args.uri_used)) as db:
        for rnd in range(args.hot_rounds):
            for name in sides if rnd % 2 == 0 else reversed(sides):
                q = JobQueue(db, f"hot{rnd}_{len(results[name])}_{len(name)}")
                sides[name](q)
                results[name].append(per_job_ms(q, args.hot_jobs))
            round_done(rnd, args.hot_rounds, began)
    base = statistics.median(results["rollups' indexes before"])
    print(f"\n| pub+claim+done per job ({args.hot_jobs:,} jobs a round, median of "
          f"{args.hot_rounds}) | ms | / before |")  # fmt: skip
    print("|---|---:|---:|")
    for name, values in results.items():
        ms = statistics.median(values)
        print(f"| {name} | {ms:.2f} | {ms / base:.2f}x |")


def bench(uri: str, args: argparse.Namespace) -> None:
    args.uri_used = uri
    client = client_for(uri)
    print("\n".join(environment(client, args, "")))
    client.close()
    rebuild_sides(args)
    hot_path(args)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--jobs", type=int, default=200_000, help="jobs in history")
    p.add_argument("--days", type=int, default=30, help="days they span")
    p.add_argument("--rounds", type=int, default=2, help="rebuilds of each side")
    p.add_argument("--hot-jobs", type=int, default=1000, help="jobs per round of part 2")
    p.add_argument("--hot-rounds", type=int, default=4)
    p.add_argument("--child", choices=sorted(SIDES), help=argparse.SUPPRESS)
    p.add_argument("--child-db", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.uri, args.child_db, args.child)
        return
    args = smoke(args, jobs=300, days=2, rounds=1, hot_jobs=20, hot_rounds=2)
    run_bench(bench, args)


if __name__ == "__main__":
    main()
