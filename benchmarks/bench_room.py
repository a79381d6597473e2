"""What the room check costs a publish: ``pub``/``pub_many`` checked against unchecked.

A publish first checks that its jobs fit in the ring without evicting unfinished ones
(``mjq_notebook/room.py``): a ``collStats`` read, skipped while a read under a second old
leaves the ring at most half full with what this queue object published since. Four sides
publish the same jobs in alternating rounds on the same server, each into fresh collections;
every figure is the median over rounds:

- ``raw``: pymongo ``insert_one``/``insert_many`` (``bench_queue.py``'s baseline);
- ``evict``: ``q.pub(..., evict=True)``: no check, i.e. a publish as it was before the check;
- ``checked``: ``q.pub(...)`` as users call it;
- ``uncached``: ``q.pub(...)`` with ``room.CHECK_EVERY_S = 0``: the read on every publish.

Measured per job: ``pub`` one by one into an empty ring (``--pub-n``); one ``pub_many``
(``--many-n``); and ``pub`` into a ring already over half full of waiting jobs
(``--busy-fill`` of ``--busy-max``), where the check reads on every publish.

    python benchmarks/bench_room.py                  # embedded SecantusDB, ~1 min on 2 cores
    python benchmarks/bench_room.py --uri mongodb://localhost:27017
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator

from _common import environment, parser, round_done, run_bench, scratch_database, smoke
from bench_queue import CAPPED_MAX, CAPPED_SIZE, Raw, Results, fresh
from pymongo.database import Database

from mjq_notebook import JobQueue
from mjq_notebook.core.parts import room
from mjq_notebook.server import client_for

SIDES = ("raw", "evict", "checked", "uncached")


class Publisher:
    """One side's ``pub`` and ``pub_many`` on the collection ``name``."""

    def __init__(self, db: Database, name: str, side: str, max_jobs: int) -> None:
        self.side = side
        if side == "raw":
            self.raw = Raw(db, name)
        else:
            self.q = JobQueue(db, name, max_jobs=max_jobs, size_bytes=CAPPED_SIZE)

    def pub(self, data: object) -> None:
        if self.side == "raw":
            self.raw.pub(data)
        else:
            self.q.pub(data, evict=self.side == "evict")

    def pub_many(self, items: list[object]) -> None:
        if self.side == "raw":
            self.raw.pub_many(items)
        else:
            self.q.pub_many(items, evict=self.side == "evict")


@contextlib.contextmanager
def reads_every_publish(side: str) -> Iterator[None]:
    """The ``uncached`` side: no cached read of the ring's use."""
    saved = room.CHECK_EVERY_S
    room.CHECK_EVERY_S = 0.0 if side == "uncached" else saved
    try:
        yield
    finally:
        room.CHECK_EVERY_S = saved


def per_pub(db: Database, side: str, n: int, fill: int = 0, max_jobs: int = CAPPED_MAX) -> float:
    """Seconds per job publishing ``n`` jobs one by one into a ring holding ``fill`` waiting."""
    with fresh(db, side, "pub") as name, reads_every_publish(side):
        if fill:
            Publisher(db, name, "evict", max_jobs).pub_many([{"fill": i} for i in range(fill)])
        p = Publisher(db, name, side, max_jobs)
        start = time.perf_counter()
        for i in range(n):
            p.pub({"n": i})
        return (time.perf_counter() - start) / n


def per_many(db: Database, side: str, n: int) -> float:
    """Seconds per job publishing ``n`` jobs in one ``pub_many``."""
    with fresh(db, side, "many") as name, reads_every_publish(side):
        p = Publisher(db, name, side, CAPPED_MAX)
        items = [{"n": i} for i in range(n)]
        start = time.perf_counter()
        p.pub_many(items)
        return (time.perf_counter() - start) / n


METRICS = {
    "pub": "pub per job, empty ring",
    "pub_many": "pub_many per job",
    "pub_busy": "pub per job, ring over half full",
}


def bench(uri: str, args: argparse.Namespace) -> None:
    client = client_for(uri, retryWrites=bool(args.uri))
    print("\n".join(environment(client, args, f" (retryWrites={bool(args.uri)})")), flush=True)
    res = Results()
    started = time.perf_counter()
    with scratch_database(client) as db:
        for rnd in range(args.rounds):
            order = SIDES[rnd % len(SIDES) :] + SIDES[: rnd % len(SIDES)]  # each first in turn
            for side in order:
                res.add("pub", side, per_pub(db, side, args.pub_n))
                res.add("pub_many", side, per_many(db, side, args.many_n))
                busy = per_pub(db, side, args.busy_n, args.busy_fill, args.busy_max)
                res.add("pub_busy", side, busy)
            round_done(rnd, args.rounds, started)
    print(f"\nmedians over {args.rounds} rounds ({time.perf_counter() - started:.0f}s):\n")
    print("| metric (ms per job) | raw | evict | checked | uncached | checked/raw | "
          "evict/raw | checked/evict | uncached/evict |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for metric, label in METRICS.items():
        m = {side: res.median(metric, side) for side in SIDES}
        print(
            f"| {label} | {m['raw'] * 1e3:.3f} | {m['evict'] * 1e3:.3f} | "
            f"{m['checked'] * 1e3:.3f} | {m['uncached'] * 1e3:.3f} | "
            f"{m['checked'] / m['raw']:.2f}x | {m['evict'] / m['raw']:.2f}x | "
            f"{m['checked'] / m['evict']:.2f}x | {m['uncached'] / m['evict']:.2f}x |"
        )
    print("\nper round, ms:")
    for metric in METRICS:
        for side in SIDES:
            values = " ".join(f"{v * 1e3:.2f}" for v in res.rounds[metric][side])
            print(f"  {metric:8} {side:8} {values}")


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=6, help="alternating rounds (default 6)")
    p.add_argument("--pub-n", type=int, default=200, help="jobs published one by one (200)")
    p.add_argument("--many-n", type=int, default=500, help="jobs in one pub_many (500)")
    p.add_argument("--busy-n", type=int, default=50, help="jobs into the busy ring (50)")
    p.add_argument("--busy-fill", type=int, default=250, help="waiting jobs in it (250)")
    p.add_argument("--busy-max", type=int, default=400, help="its max_jobs (400)")
    tiny = dict(rounds=1, pub_n=10, many_n=20, busy_n=5, busy_fill=20, busy_max=40)
    run_bench(bench, smoke(p.parse_args(argv), **tiny))


if __name__ == "__main__":
    main()
