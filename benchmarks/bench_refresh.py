"""What one refresh of the live views costs with a small and a large history.

A live view's watcher re-reads, per refresh, the newest jobs (``q.jobs``), the counts
(``q.counts``) and the charts' activity (``activity.ActivityReader``). None of these should
scan ``<queue>.history``: this times each part, in this process's CPU and in wall time (the
server's share), with ``--small`` and then ``--large`` finished jobs in history (the large
one first filled, then timed after the same warm-up), and prints the ratio large / small.
The baseline is the same reads at the small size, in the same run.

    python benchmarks/bench_refresh.py                   # 1,000 vs 100,000 in history
    python benchmarks/bench_refresh.py --large 1000000 --uri mongodb://localhost:27017
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from _common import environment, parser, run_bench, scratch_database, smoke
from bson import ObjectId

from mjq_notebook import JobQueue
from mjq_notebook.live.activity import ActivityReader
from mjq_notebook.server import client_for

CHUNK = 5000


def fill_history(q: JobQueue, n: int) -> None:
    """``n`` finished jobs in history, finished over the last 20 minutes (some in the charts'
    window), 5% failed, as ``JobQueue`` finishes them (owned.py)."""
    rng = random.Random()  # unseeded: a second fill must not make the same ids again
    now = time.time()
    for start in range(0, n, CHUNK):
        docs = []
        for _ in range(min(CHUNK, n - start)):
            done = now - rng.uniform(0, 1200)
            created = done - rng.uniform(0.01, 5)
            stamp = dt.datetime.fromtimestamp
            docs.append(
                {
                    "_id": ObjectId(int(created).to_bytes(4, "big") + rng.randbytes(8)),
                    "status": "failed" if rng.random() < 0.05 else "done",
                    "ts": {
                        "created": stamp(created, dt.timezone.utc),
                        "started": stamp(created + 0.005, dt.timezone.utc),
                        "done": stamp(done, dt.timezone.utc),
                    },
                    "data": {"kind": "email"},
                    "attempts": 1,
                    "max_attempts": 3,
                    "priority": 0,
                }
            )
        q.history_collection.insert_many(docs, ordered=False)


def timed(call: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``call`` over ``repeat`` runs."""
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def measure(q: JobQueue, repeat: int) -> dict[str, tuple[float, float]]:
    parts: dict[str, Callable[[], Any]] = {
        "newest 50 jobs": lambda: q.jobs(limit=50),
        "counts": lambda: q.counts(warn=False),
        "activity, first read (whole span)": lambda: ActivityReader(q).read(time.time()),
    }
    reader = ActivityReader(q)
    reader.read(time.time())
    parts["activity, next read"] = lambda: reader.read(time.time())
    return {name: timed(call, repeat) for name, call in parts.items()}


def bench(uri: str, args: Any) -> None:
    client = client_for(uri)
    print("\n".join(environment(client, args, "")))
    results = {}
    with scratch_database(client) as db:  # dropped, and the client closed, after
        q = JobQueue(db, "bench")
        q.pub_many([{"n": n} for n in range(100)])  # a backlog in the ring
        filled = 0
        for size in (args.small, args.large):
            started = time.perf_counter()
            fill_history(q, size - filled)
            filled = size
            print(f"history filled to {size:,} in {time.perf_counter() - started:.0f} s")
            measure(q, 2)  # warm up
            results[size] = measure(q, args.repeat)
    small, large = results[args.small], results[args.large]
    print(f"\n| read | {args.small:,}: wall / CPU ms | {args.large:,}: wall / CPU ms | ratio |")
    print("|---|---|---|---|")
    for name in small:
        (ws, cs), (wl, cl) = small[name], large[name]
        print(
            f"| {name} | {ws * 1000:.1f} / {cs * 1000:.1f} | {wl * 1000:.1f} / {cl * 1000:.1f} "
            f"| {wl / ws:.2f}x wall, {cl / max(cs, 1e-9):.2f}x CPU |"
        )


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--small", type=int, default=1000, help="finished jobs, the baseline")
    p.add_argument("--large", type=int, default=100_000, help="finished jobs, the large case")
    p.add_argument("--repeat", type=int, default=15, help="timed runs of each read")
    run_bench(bench, smoke(p.parse_args(), small=50, large=200, repeat=1))


if __name__ == "__main__":
    main()
