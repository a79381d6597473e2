"""Benchmark ``q.find`` (the job query language over the ring and history) against the raw
``collection.find`` of the same compiled filter on the same server.

History is filled once with ``--jobs`` finished jobs (bench_history's generator: created over
the last day, 3% failed, ``data.user`` one of 200), the ring with a few waiting ones. Then,
in alternating rounds, each figure the median over the rounds, for each query:

- ``q.find(query)``: compile, the scan cap's cutoff read per collection (``_id`` index, skip
  99,999), the find in history and in the ring (newest first, limit 100), the merge;
- the baseline: ``history.find(compile_query(query)).sort(_id, -1).limit(100)`` alone;
- ``count_matches(q, query)`` (what a bulk action confirms), for the figure only.

    python benchmarks/bench_find.py                    # embedded SecantusDB, 100,000 jobs
    python benchmarks/bench_find.py --uri mongodb://localhost:27017
    python benchmarks/bench_find.py --smoke            # CI: tiny sizes, one round
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from _common import environment, parser, round_done, run_bench, scratch_database, smoke
from bench_history import CHUNK, Ids, history_documents, worker_names
from pymongo import DESCENDING

from mjq_notebook import JobQueue
from mjq_notebook.core.parts import find
from mjq_notebook.core.parts.find import count_matches
from mjq_notebook.core.query import compile_query
from mjq_notebook.server import client_for

QUERIES = {
    "indexed": "status:failed done:>1d",  # status and ts.done have indexes
    "data": "data.user:user042",  # no index: the newest first until 100 match
}


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = call()
    return time.perf_counter() - start, out


def bench(uri: str, args: Any) -> None:
    client = client_for(uri)
    print("\n".join(environment(client, args, "")), flush=True)
    with scratch_database(client) as db:
        q = JobQueue(db, "bench")
        rng = random.Random(42)
        ids, workers = Ids(rng), worker_names(rng)
        now = dt.datetime.now(dt.timezone.utc)
        start = time.perf_counter()
        docs = history_documents(rng, ids, workers, args.jobs, now)
        for at in range(0, len(docs), CHUNK):
            q.history_collection.insert_many(docs[at : at + CHUNK], ordered=False)
        q.pub_many([{"user": f"user{n:03d}"} for n in range(50)])
        setup = time.perf_counter() - start
        print(f"setup:   {args.jobs:,} jobs in history, 50 in the ring, in {setup:.1f} s")
        print(f"maxTimeMS: {find.MAX_TIME_MS:,} per read")
        figures: dict[str, dict[str, list[float]]] = {
            name: {"find": [], "raw": [], "count": []} for name in QUERIES
        }
        found: dict[str, int] = {}
        started = time.perf_counter()
        for rnd in range(args.rounds):
            order = list(QUERIES) if rnd % 2 == 0 else list(QUERIES)[::-1]
            for name in order:
                text = QUERIES[name]
                match = compile_query(text)

                def raw(match: dict = match) -> list:
                    cursor = q.history_collection.find(match).sort("_id", DESCENDING).limit(100)
                    return list(cursor)

                took, jobs = timed(lambda text=text: q.find(text, limit=100))
                figures[name]["find"].append(took)
                took, _ = timed(raw)
                figures[name]["raw"].append(took)
                took, _ = timed(lambda text=text: count_matches(q, text))
                figures[name]["count"].append(took)
                found[name] = len(jobs)
            round_done(rnd, args.rounds, started)
        print(f"\nmedian of {args.rounds} round(s), {args.jobs:,} jobs in history, limit 100:")
        head = "| query | q.find (ms) | raw history.find, same filter (ms) | ratio | count |"
        print(head)
        print("|---|---|---|---|---|")
        for name, text in QUERIES.items():
            f, r, c = (statistics.median(figures[name][k]) * 1000 for k in ("find", "raw", "count"))
            print(
                f"| `{text}` ({found[name]} found) | {f:.1f} | {r:.1f} | {f / r:.2f}x | {c:.1f} |"
            )


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--jobs", type=int, default=100_000, help="finished jobs in history")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument(
        "--max-time-ms", type=int, default=find.MAX_TIME_MS,
        help="each read's maxTimeMS (default: the package's; SecantusDB scans without indexes)",
    )  # fmt: skip
    args = smoke(p.parse_args(), jobs=2_000, rounds=1)
    find.MAX_TIME_MS = args.max_time_ms
    run_bench(bench, args)


if __name__ == "__main__":
    main()
