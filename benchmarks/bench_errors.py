"""Benchmark ``q.errors()``: failures grouped by error inside MongoDB (one aggregation), against
the least a user could do by hand, reading the same failures' error fields into Python with a
plain ``find`` (no grouping at all, so the baseline is generous).

``--failures`` failed jobs go into ``bench.history``, as ``fail()`` stores them (their errors
made by ``error_document`` from real exceptions raised in a few functions, with ids and
numbers varying per job: ``--kinds`` groups), ``--foreign`` percent of them as pymjq stores
its errors (a plain string, no fingerprint: grouped by the fallback in Python after the
server's grouping by message), spread over ``--hours`` hours by 12 workers. Then, in
alternating rounds, each figure the median: ``q.errors()`` and the baseline ``find``. The
check afterwards: the groups' counts add up to the failures.

    python benchmarks/bench_errors.py                      # embedded SecantusDB, 100,000 failures
    python benchmarks/bench_errors.py --uri mongodb://localhost:27017
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import time

from _common import environment, parser, round_done, run_bench, scratch_database, smoke
from bson import ObjectId

from mjq_notebook import JobQueue
from mjq_notebook.core.job import error_document
from mjq_notebook.server import client_for

QUEUE = "bench"
CHUNK = 2_000  # documents per insert_many
# the error's type, message (or the error itself when a string) and group, time and worker
FIELDS = {"type": "$error.type", "group": "$error.group", "done": "$ts.done", "worker": 1,
          "message": {"$cond": [{"$eq": [{"$type": "$error"}, "string"]}, "$error",
                                "$error.message"]}}  # fmt: skip
START = dt.datetime(2026, 12, 1, tzinfo=dt.timezone.utc)


def _raise(kind: int, n: int) -> BaseException:
    """A real exception of kind ``kind`` (its type and raising function) with ``n`` in its
    message."""
    makers = [
        lambda: {}[f"user-{n}"],
        lambda: open(f"/data/in/{n}.csv"),  # noqa: SIM115
        lambda: int(f"x{n}"),
        lambda: (_ for _ in ()).throw(
            TimeoutError(f"timed out after {n % 60}s to 10.0.{n % 250}.1:5432")
        ),
    ]
    try:
        if kind < len(makers):
            makers[kind]()
        raise RuntimeError(f"stage {chr(97 + kind % 26)} failed: job {ObjectId()} step {n}")
    except BaseException as exc:
        return exc


def fill(q: JobQueue, failures: int, kinds: int, foreign: float, hours: int) -> None:
    rng = random.Random(25)
    span = hours * 3600
    docs = []
    for i in range(failures):
        done = START + dt.timedelta(seconds=rng.uniform(0, span))
        kind = rng.randrange(kinds)
        if rng.random() < foreign / 100:
            error: object = f"ValueError: bad row {rng.randrange(10**6)} in batch {kind}"
        else:
            exc = _raise(kind, rng.randrange(10**6))
            error = error_document(exc)
        docs.append({
            "_id": ObjectId(), "status": "failed", "data": {"i": i}, "attempts": 1,
            "max_attempts": 1, "worker": f"host-{i % 12}:1:{i % 12:06x}",
            "ts": {"created": done - dt.timedelta(seconds=2), "started": done, "done": done},
            "error": error,
        })  # fmt: skip
        if len(docs) == CHUNK:
            q.history_collection.insert_many(docs, ordered=False)
            docs = []
    if docs:
        q.history_collection.insert_many(docs, ordered=False)


def bench(uri: str, args) -> None:
    client = client_for(uri)
    with scratch_database(client) as db:
        for line in environment(client, args, " (baseline: a find of the error fields)"):
            print(line)
        q = JobQueue(db, QUEUE)
        started = time.perf_counter()
        fill(q, args.failures, args.kinds, args.foreign, args.hours)
        print(f"filled: {args.failures:,} failures in {time.perf_counter() - started:.1f} s")
        ours, baseline = [], []
        groups: list = []
        began = time.perf_counter()
        for rnd in range(args.rounds):
            steps = [("ours", ours), ("base", baseline)]
            for name, times in steps if rnd % 2 == 0 else steps[::-1]:
                t0 = time.perf_counter()
                if name == "ours":
                    groups = list(q.errors())
                else:
                    rows = list(q.history_collection.find({"status": "failed"}, FIELDS))
                    assert len(rows) == args.failures
                times.append(time.perf_counter() - t0)
            round_done(rnd, args.rounds, began)
        counted = sum(g["count"] for g in groups)
        assert counted == args.failures, (counted, args.failures)
        a, b = statistics.median(ours), statistics.median(baseline)
        print(f"groups: {len(groups)} (counts add up to {counted:,})")
        print("| figure | failures | ours (s) | baseline | baseline (s) | ours/baseline |")
        print("|---|---:|---:|---|---:|---:|")
        print(f"| q.errors() | {args.failures} | {a:.2f} | find of the error fields | {b:.2f} "
              f"| {a / b:.2f}x |")  # fmt: skip


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--failures", type=int, default=100_000)
    p.add_argument("--kinds", type=int, default=8, help="kinds of failure (groups, about)")
    p.add_argument("--foreign", type=float, default=5.0, help="percent stored as pymjq does")
    p.add_argument("--hours", type=int, default=24, help="hours the failures spread over")
    p.add_argument("--rounds", type=int, default=3)
    args = smoke(p.parse_args(), failures=500, rounds=1)
    run_bench(bench, args)


if __name__ == "__main__":
    main()
