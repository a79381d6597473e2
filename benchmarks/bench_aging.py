"""Benchmark a queue's speed as jobs pile up: fresh, then after N jobs have gone through it.

Finished jobs leave the capped ring for ``<queue>.history`` (``mjq_notebook.core.parts.sweep``), so
the ring holds only unfinished work and per-write costs that grow with the ring (SecantusDB
pays ~7 µs per document in a capped collection on every write) stay flat. Measured on one
queue, in one run:

1. pub + claim + done per job, one after another in one thread (``--probe`` jobs);
2. pub->claim latency with a consumer blocked in ``next(timeout=60)``;

first on the fresh queue, then after ``--jobs`` jobs (default 20,000) went through it
(published in batches of 20, each claimed and finished), then (``--unswept N``) the same on
a second queue with the sweep turned off, fresh and after N jobs, to show what it prevents.

    python benchmarks/bench_aging.py                      # embedded SecantusDB, in-process
    python benchmarks/bench_aging.py --uri mongodb://localhost:27017   # or MJQ_TEST_MONGODB_URI
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
import threading
import time
from typing import Any

from _common import environment, parser, per_job_ms, run_bench, scratch_database, smoke, verdict

from mjq_notebook import JobQueue
from mjq_notebook.core.parts import sweep as sweep_module
from mjq_notebook.server import client_for

TARGET = 1.5  # aged / fresh, the goal


def pub_to_claim_ms(q: JobQueue, n: int, seed: int = 7) -> list[float]:
    """pub->claim latency (ms) of ``n`` jobs, with a consumer blocked in ``next``."""
    rng = random.Random(seed)
    latencies: list[float] = []
    sent: dict[Any, float] = {}
    done = threading.Event()

    def consume() -> None:
        for _ in range(n):
            job = q.next(timeout=60)
            latencies.append((time.perf_counter() - sent[job.data["lat"]]) * 1000)
            q.done(job)
        done.set()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    for i in range(n):
        time.sleep(rng.uniform(0.005, 0.3))  # gaps from busy to idle (the wait cycle is 1 s)
        sent[i] = time.perf_counter()
        q.pub({"lat": i})
    done.wait(120)
    return latencies


def age(q: JobQueue, jobs: int, batch: int = 20) -> float:
    """Put ``jobs`` jobs through ``q``: ``pub_many`` of ``batch``, then claim and finish each
    (one thread: on SecantusDB competing workers only queue up on its one lock). Returns the
    seconds it took."""
    started = time.perf_counter()
    for start in range(0, jobs, batch):
        items = [{"n": n} for n in range(start, min(start + batch, jobs))]
        q.pub_many(items)
        for _ in items:
            q.done(q.next(timeout=5))
        if (start + batch) % 2000 == 0:
            print(f"  {start + batch:,} of {jobs:,} jobs through at "
                  f"{time.perf_counter() - started:.0f}s", file=sys.stderr, flush=True)  # fmt: skip
    return time.perf_counter() - started


def measure(q: JobQueue, args: argparse.Namespace) -> dict[str, Any]:
    latencies = pub_to_claim_ms(q, args.latency)
    return {
        "per_job": per_job_ms(q, args.probe),
        "lat_p50": statistics.median(latencies),
        "lat_p90": statistics.quantiles(latencies, n=10)[-1],
        "ring": q.collection.estimated_document_count(),
    }


def row(name: str, m: dict[str, Any]) -> str:
    return (
        f"| {name} | {m['per_job']:.2f} ms | {m['lat_p50']:.1f} / {m['lat_p90']:.1f} ms | "
        f"{m['ring']:,} |"
    )


def bench(uri: str, args: argparse.Namespace) -> None:
    client = client_for(uri)
    print("\n".join(environment(client, args, "")))
    with scratch_database(client) as db:
        q = JobQueue(db, "aging", lease=30)
        fresh = measure(q, args)
        seconds = age(q, args.jobs)
        print(f"aged: {args.jobs:,} jobs through the queue in {seconds:.0f} s")
        aged = measure(q, args)
        results = [("fresh", fresh), (f"after {args.jobs:,} jobs", aged)]
        if args.unswept:
            unswept = JobQueue(db, "unswept", lease=30)
            saved = sweep_module.SWEEP_EVERY_S, sweep_module.SWEEP_AFTER
            sweep_module.SWEEP_EVERY_S = sweep_module.SWEEP_AFTER = math.inf
            try:
                unswept_fresh = measure(unswept, args)
                age(unswept, args.unswept)
                unswept_aged = measure(unswept, args)
            finally:
                sweep_module.SWEEP_EVERY_S, sweep_module.SWEEP_AFTER = saved
            results += [
                ("no sweep, fresh", unswept_fresh),
                (f"no sweep, after {args.unswept:,} jobs", unswept_aged),
            ]
    print("\n| queue | pub+claim+done per job | pub->claim p50 / p90 | documents in the ring |")
    print("|---|---|---|---|")
    for name, m in results:
        print(row(name, m))
    ratio = aged["per_job"] / fresh["per_job"]
    latency = aged["lat_p50"] / fresh["lat_p50"]
    print(
        f"\naged/fresh: pub+claim+done {ratio:.2f}x ({verdict(ratio, TARGET)}, target "
        f"<= {TARGET}x), pub->claim p50 {latency:.2f}x ({verdict(latency, TARGET)})"
    )
    if args.unswept:
        print(
            f"without the sweep, after {args.unswept:,} jobs: pub+claim+done "
            f"{unswept_aged['per_job'] / unswept_fresh['per_job']:.2f}x its fresh figure"
        )


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--jobs", type=int, default=20_000, help="jobs put through before re-measuring")
    p.add_argument("--probe", type=int, default=200, help="jobs timed for pub+claim+done")
    p.add_argument("--latency", type=int, default=40, help="jobs timed for pub->claim")
    p.add_argument("--unswept", type=int, default=2_000, help="jobs through an unswept queue")
    run_bench(bench, smoke(p.parse_args(), jobs=300, probe=10, latency=5, unswept=50))


if __name__ == "__main__":
    main()
