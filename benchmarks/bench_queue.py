"""Benchmark ``JobQueue`` against raw pymongo doing the least a correct queue must do.

Both sides run in one process against the same server, on capped collections with the same
indexes, in alternating rounds (ours first in even rounds, the baseline first in odd ones);
each figure is the median over rounds. Measured:

1. pub->claim latency with a consumer blocked in a wait (small gaps, and "idle" gaps that
   spread the publish over the consumer's whole wait cycle);
2. pub + claim + done per job, sequentially in one thread;
3. ``pub_many`` against ``pub`` per job.

A profile pass then counts round trips per job with a pymongo command listener.

    python benchmarks/bench_queue.py                      # embedded SecantusDB, in-process
    python benchmarks/bench_queue.py --uri mongodb://localhost:27017   # or MJQ_TEST_MONGODB_URI
"""

from __future__ import annotations

import argparse
import contextlib
import queue as stdqueue
import random
import statistics
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from _common import environment, parser, round_done, run_bench, scratch_database, smoke, verdict
from pymongo import ASCENDING, DESCENDING, CursorType, ReturnDocument, monitoring
from pymongo.database import Database

from mjq_notebook import Empty, JobQueue
from mjq_notebook.core.job import new_document, utcnow
from mjq_notebook.server import client_for

AWAIT_MS = 250  # the awaitData time of both sides' tailable cursors
CAPPED_SIZE = 64 * 2**20
CAPPED_MAX = 100_000
STOP = "__stop__"


# -- the two queues under test ---------------------------------------------------------------


class Queue(Protocol):
    """What the benchmark needs of either side."""

    def pub(self, data: Any) -> None: ...
    def pub_many(self, items: list[Any]) -> None: ...
    def next(self, timeout: float) -> dict[str, Any]: ...
    def done(self, job: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class Ours:
    """``JobQueue``, called exactly as a user would."""

    def __init__(self, db: Database, name: str) -> None:
        self.q = JobQueue(db, name, max_jobs=CAPPED_MAX, size_bytes=CAPPED_SIZE)

    def pub(self, data: Any) -> None:
        self.q.pub(data)

    def pub_many(self, items: list[Any]) -> None:
        self.q.pub_many(items)

    def next(self, timeout: float) -> dict[str, Any]:
        return self.q.next(timeout=timeout)

    def done(self, job: dict[str, Any]) -> None:
        self.q.done(job)  # type: ignore[arg-type]

    def close(self) -> None:
        self.q._wakeup.close()


class Raw:
    """The baseline: insert, one atomic claim sorted by ``_id``, an update to done, and a
    tailable awaitData cursor as the wake-up signal. No history, counters or leases."""

    def __init__(self, db: Database, name: str) -> None:
        if name not in db.list_collection_names(filter={"name": name}):
            db.create_collection(name, capped=True, size=CAPPED_SIZE, max=CAPPED_MAX)
        self.coll = db[name]
        self.coll.create_index(
            [("status", ASCENDING), ("priority", DESCENDING), ("_id", ASCENDING)]
        )
        self.coll.create_index([("status", ASCENDING), ("lease_until", ASCENDING)])
        self._cursor: Any = None

    @staticmethod
    def _doc(data: Any) -> dict[str, Any]:
        """The same document shape as ours."""
        now = utcnow()
        return new_document(data, priority=0, available_at=now, max_attempts=3, now=now)

    def pub(self, data: Any) -> None:
        self.coll.insert_one(self._doc(data))

    def pub_many(self, items: list[Any]) -> None:
        self.coll.insert_many([self._doc(data) for data in items], ordered=True)

    def claim(self) -> dict[str, Any] | None:
        """waiting -> working, oldest first, in one atomic round trip."""
        return self.coll.find_one_and_update(
            {"status": "waiting"},
            {"$set": {"status": "working", "ts.started": utcnow()}, "$inc": {"attempts": 1}},
            sort=[("_id", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )

    def next(self, timeout: float) -> dict[str, Any]:
        """Claim; when there is nothing, wait for one getMore (an insert or AWAIT_MS)."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.claim()
            if job is not None:
                return job
            if time.monotonic() >= deadline:
                raise Empty("no job")
            self._wait()

    def _wait(self) -> None:
        """One awaitData getMore on a cursor kept open across waits."""
        if self._cursor is None or not self._cursor.alive:
            # the last document inserted: a $natural hint (SecantusDB ignores a $natural sort)
            last = self.coll.find_one({}, {"_id": 1}, hint=[("$natural", -1)])
            if last is None:  # an empty capped collection has no tailable cursor: poll
                time.sleep(AWAIT_MS / 1000)
                return
            self._cursor = self.coll.find(
                {"_id": {"$gte": last["_id"]}}, {"_id": 1}, cursor_type=CursorType.TAILABLE_AWAIT
            ).max_await_time_ms(AWAIT_MS)
            next(self._cursor, None)  # the anchor document itself
            return
        next(self._cursor, None)  # None when the await time passed without an insert

    def done(self, job: dict[str, Any]) -> None:
        self.coll.update_one(
            {"_id": job["_id"], "status": "working"},
            {"$set": {"status": "done", "ts.done": utcnow()}},
        )

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()


SIDES: dict[str, Callable[[Database, str], Queue]] = {"baseline": Raw, "ours": Ours}


# -- measurements ----------------------------------------------------------------------------


@contextlib.contextmanager
def fresh(db: Database, side: str, label: str) -> Iterator[str]:
    """A new collection name for one measurement; its collections are dropped afterwards."""
    name = f"{side}_{label}_{uuid.uuid4().hex[:6]}"
    try:
        yield name
    finally:
        for suffix in ("", ".history", ".meta"):
            db.drop_collection(name + suffix)


def consume(q: Queue, out: stdqueue.Queue[float | BaseException]) -> None:
    """Consumer thread: claim, stamp the time, finish the job, hand the stamp back."""
    try:
        while True:
            job = q.next(timeout=60)
            claimed = time.perf_counter()
            q.done(job)
            if job["data"] == STOP:
                return
            out.put(claimed)
    except BaseException as exc:  # hand it to the main thread rather than die quietly
        out.put(exc)


def handed_back(out: stdqueue.Queue[float | BaseException]) -> float:
    """The consumer's next time stamp; its exception is raised here."""
    item = out.get(timeout=60)
    if isinstance(item, BaseException):
        raise item
    return item


def pub_claim_latency(db: Database, side: str, gaps: list[float]) -> list[float]:
    """Seconds from just before each publish until the blocked consumer holds the job."""
    with fresh(db, side, "lat") as name:
        producer, consumer = SIDES[side](db, name), SIDES[side](db, name)
        out: stdqueue.Queue[float | BaseException] = stdqueue.Queue()
        thread = threading.Thread(target=consume, args=(consumer, out), daemon=True)
        thread.start()
        for _ in range(3):  # warm up: a non-empty collection and an open cursor
            producer.pub("warm-up")
            handed_back(out)
        latencies = []
        for gap in gaps:
            time.sleep(gap)
            start = time.perf_counter()
            producer.pub({"n": len(latencies)})
            latencies.append(handed_back(out) - start)
        producer.pub(STOP)
        thread.join(timeout=30)
        consumer.close()
        producer.close()
    return latencies


def per_job(db: Database, side: str, n: int) -> list[float]:
    """Seconds per job for pub, claim and done in sequence in one thread."""
    with fresh(db, side, "seq") as name:
        q = SIDES[side](db, name)
        times = []
        for i in range(n):
            start = time.perf_counter()
            q.pub({"n": i})
            q.done(q.next(timeout=5))
            times.append(time.perf_counter() - start)
        q.close()
    return times


def pub_one_by_one(db: Database, side: str, n: int) -> float:
    """Seconds per job publishing ``n`` jobs with one call each."""
    with fresh(db, side, "pub") as name:
        q = SIDES[side](db, name)
        start = time.perf_counter()
        for i in range(n):
            q.pub({"n": i})
        return (time.perf_counter() - start) / n


def probe_insert(db: Database, n: int = 30) -> float:
    """Median seconds of a raw insert_one into a fresh collection: the server's drift."""
    with fresh(db, "probe", "ins") as name:
        q = Raw(db, name)
        times = []
        for i in range(n):
            start = time.perf_counter()
            q.pub(i)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def pub_batch(db: Database, side: str, n: int) -> float:
    """Seconds per job publishing ``n`` jobs in one ``pub_many`` call."""
    with fresh(db, side, "many") as name:
        q = SIDES[side](db, name)
        items = [{"n": i} for i in range(n)]
        start = time.perf_counter()
        q.pub_many(items)
        return (time.perf_counter() - start) / n


# -- statistics ------------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Linear-interpolated percentile (``pct`` in 0..100)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * pct / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class Results:
    """Per-round figures of each metric and side: ``rounds[metric][side] -> [value, ...]``."""

    rounds: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )

    def add(self, metric: str, side: str, value: float) -> None:
        self.rounds[metric][side].append(value)

    def median(self, metric: str, side: str) -> float:
        return statistics.median(self.rounds[metric][side])


def gaps_small(rng: random.Random, n: int, low: float, high: float) -> list[float]:
    """``n`` random pauses between publishes, uniform in [low, high] seconds."""
    return [rng.uniform(low, high) for _ in range(n)]


def gaps_spread(rng: random.Random, n: int, span: float) -> list[float]:
    """``n`` stratified random pauses covering [0, span] evenly, shuffled."""
    gaps = [(i + rng.random()) * span / n for i in range(n)]
    rng.shuffle(gaps)
    return gaps


def run_round(db: Database, args: argparse.Namespace, rnd: int, res: Results) -> None:
    """One round of every measurement, ours first in even rounds, the baseline in odd ones."""
    order = ["ours", "baseline"] if rnd % 2 == 0 else ["baseline", "ours"]
    rng = random.Random(args.seed + rnd)
    small = gaps_small(rng, args.latency_n, args.gap_min, args.gap_max)
    spread = gaps_spread(rng, args.idle_n, args.idle_span)
    res.add("probe", "server", probe_insert(db))
    for side in order:
        lat = pub_claim_latency(db, side, small)
        res.add("lat_p50", side, percentile(lat, 50))
        res.add("lat_p99", side, percentile(lat, 99))
    for side in order:
        if args.idle_n:
            lat = pub_claim_latency(db, side, spread)
            res.add("idle_p50", side, percentile(lat, 50))
            res.add("idle_mean", side, statistics.mean(lat))
            res.add("idle_max", side, max(lat))
    for side in order:
        jobs = per_job(db, side, args.jobs)
        res.add("job_mean", side, statistics.mean(jobs))
        res.add("job_p50", side, percentile(jobs, 50))
    for side in order:
        res.add("pub", side, pub_one_by_one(db, side, args.pub_n))
        res.add("pub_many", side, pub_batch(db, side, args.many_n))


# -- profile: round trips per job --------------------------------------------------------------


def collection_kind(target: Any) -> str:
    """'history', 'meta' or 'queue', from the collection name a command was sent to."""
    name = target if isinstance(target, str) else ""
    return next((k for k in ("history", "meta") if name.endswith(f".{k}")), "queue")


class CommandLog(monitoring.CommandListener):
    """Counts commands by name and sums their round-trip time."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.micros: Counter[str] = Counter()
        self._kinds: dict[int, str] = {}
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        """Remember which collection each request went to."""
        target = event.command.get(event.command_name)
        kind = "queue"
        if isinstance(target, str):
            kind = (
                "history"
                if target.endswith(".history")
                else "meta"
                if target.endswith(".meta")
                else "queue"
            )
        with self._lock:
            self._kinds[event.request_id] = f"{event.command_name}[{kind}]"

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        with self._lock:
            key = self._kinds.pop(event.request_id, event.command_name)
            self.count[key] += 1
            self.micros[key] += event.duration_micros

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.succeeded(event)  # type: ignore[arg-type]

    def reset(self) -> None:
        with self._lock:
            self.count.clear()
            self.micros.clear()


def profile(uri: str, dbname: str, args: argparse.Namespace) -> list[str]:
    """Commands per job (and their mean round trip) for the sequential and latency runs."""
    log = CommandLog()
    client = client_for(uri, event_listeners=[log], retryWrites=args.retry_writes)
    db = client[dbname]
    lines = [
        "| run | side | commands per job (mean ms each) | total per job |",
        "|---|---|---|---|",
    ]
    rng = random.Random(args.seed)
    runs: list[tuple[str, Callable[[str], Any], int]] = [
        ("pub+claim+done", lambda side: per_job(db, side, args.profile_n), args.profile_n),
        (
            "latency, small gaps",
            lambda side: pub_claim_latency(
                db, side, gaps_small(rng, args.profile_n, args.gap_min, args.gap_max)
            ),
            args.profile_n + 4,
        ),  # 3 warm-up jobs and the stop job are published too
    ]
    for label, run, n in runs:
        for side in ("baseline", "ours"):
            run(side)  # warm: indexes, code paths
            log.reset()
            run(side)
            lines.append(profile_row(label, side, log, n))
    client.close()
    return lines


def latency_run(db: Database, side: str, rng: random.Random, args: argparse.Namespace) -> None:
    """A short small-gap latency run for the profile."""
    pub_claim_latency(db, side, gaps_small(rng, args.profile_n, args.gap_min, args.gap_max))


def profile_row(label: str, side: str, log: CommandLog, n: int) -> str:
    """One markdown row: each command's count per job and mean duration."""
    skip = {"create", "createIndexes", "listCollections", "drop", "killCursors", "endSessions"}
    names = sorted(
        (k for k in log.count if k.split("[")[0] not in skip), key=lambda k: -log.count[k]
    )
    parts = [
        f"{name} {log.count[name] / n:.2f} ({log.micros[name] / log.count[name] / 1000:.2f})"
        for name in names
    ]
    total = sum(log.count[k] for k in names) / n
    return f"| {label} | {side} | {', '.join(parts)} | {total:.2f} |"


# -- report ----------------------------------------------------------------------------------


@dataclass
class Row:
    """A table row: label, how to format values, and the target on ours/baseline."""

    metric: str
    label: str
    unit: str
    scale: float
    target: float | None  # the largest passing ratio ours/baseline


ROWS = [
    Row("lat_p50", "pub->claim latency p50, small gaps", "ms", 1e3, 1.2),
    Row("lat_p99", "pub->claim latency p99, small gaps", "ms", 1e3, 1.2),
    Row("idle_p50", "pub->claim latency p50, idle gaps (extra)", "ms", 1e3, 1.2),
    Row("idle_mean", "pub->claim latency mean, idle gaps (extra)", "ms", 1e3, 1.2),
    Row("idle_max", "pub->claim latency max, idle gaps (extra)", "ms", 1e3, 1.2),
    Row("job_mean", "pub+claim+done per job, mean", "ms", 1e3, 1.3),
    Row("job_p50", "pub+claim+done per job, p50", "ms", 1e3, 1.3),
    Row("pub", "pub per job (insert_one)", "ms", 1e3, None),
    Row("pub_many", "pub_many per job (insert_many)", "ms", 1e3, None),
]


def table(res: Results) -> list[str]:
    """The results as markdown table lines."""
    lines = [
        "| metric | baseline | ours | ratio ours/baseline | target | result |",
        "|---|---:|---:|---:|---|---|",
    ]
    for row in ROWS:
        if row.metric not in res.rounds:
            continue
        base, ours = res.median(row.metric, "baseline"), res.median(row.metric, "ours")
        ratio = ours / base
        target = "-" if row.target is None else f"<= {row.target:.1f}x"
        lines.append(
            f"| {row.label} ({row.unit}) | {base * row.scale:.3f} | {ours * row.scale:.3f} "
            f"| {ratio:.2f}x | {target} | {verdict(ratio, row.target)} |"
        )
    speed = {s: res.median("pub", s) / res.median("pub_many", s) for s in ("baseline", "ours")}
    speed_up = "PASS" if speed["ours"] >= 10 else "FAIL"
    lines.append(
        f"| pub_many speed-up per job over pub (x) | {speed['baseline']:.1f} | "
        f"{speed['ours']:.1f} | - | ours >= 10x | {speed_up} |"
    )
    return lines


def per_round(res: Results) -> list[str]:
    """Every round's figure, so the spread behind each median is visible."""
    probes = " ".join(f"{v * 1e3:.2f}" for v in res.rounds["probe"]["server"])
    lines = [f"  server drift probe, raw insert_one p50 at each round's start, ms: {probes}"]
    for row in ROWS:
        if row.metric not in res.rounds:
            continue
        cells = [
            f"{side} " + " ".join(f"{v * row.scale:.2f}" for v in res.rounds[row.metric][side])
            for side in ("baseline", "ours")
        ]
        lines.append(f"  {row.metric:9} {row.unit}: {cells[0]:40} | {cells[1]}")
    return lines


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; defaults finish in about two minutes on the embedded server."""
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--latency-n", type=int, default=100, help="latency samples per round")
    p.add_argument("--gap-min", type=float, default=0.005, help="smallest gap, s (0.005)")
    p.add_argument("--gap-max", type=float, default=0.060, help="largest gap, s (0.060)")
    p.add_argument(
        "--idle-n", type=int, default=16, help="idle-gap latency samples per round, 0 to skip (16)"
    )
    p.add_argument(
        "--idle-span", type=float, default=1.25, help="idle gaps spread over [0, span] s (1.25)"
    )
    p.add_argument("--jobs", type=int, default=200, help="jobs for pub+claim+done (200)")
    p.add_argument("--pub-n", type=int, default=200, help="jobs published one by one (200)")
    p.add_argument("--many-n", type=int, default=500, help="jobs in one pub_many (500)")
    p.add_argument(
        "--profile-n",
        type=int,
        default=50,
        help="jobs per side in the round-trip profile, 0 to skip (50)",
    )
    p.add_argument("--seed", type=int, default=1, help="random seed for the gaps (1)")
    p.add_argument(
        "--retry-writes",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the client's retryWrites (default: off for the embedded server, whose\n"
        "retryable-write table slows every write as it grows; on with --uri)",
    )
    args = smoke(
        p.parse_args(argv),
        rounds=1, latency_n=5, idle_n=2, idle_span=0.2, jobs=10, pub_n=10, many_n=20, profile_n=5,
    )  # fmt: skip
    if args.retry_writes is None:
        args.retry_writes = bool(args.uri)
    return args


def bench(uri: str, args: argparse.Namespace) -> None:
    """Run every round and the profile against ``uri``, then print the report."""
    client = client_for(uri, retryWrites=args.retry_writes)
    print("\n".join(environment(client, args, f" (retryWrites={args.retry_writes})")), flush=True)
    res = Results()
    started = time.perf_counter()
    with scratch_database(client) as db:
        for rnd in range(args.rounds):
            run_round(db, args, rnd, res)
            round_done(rnd, args.rounds, started)
        prof = profile(uri, db.name, args) if args.profile_n else []
    print(f"\nmedians over {args.rounds} rounds ({time.perf_counter() - started:.0f}s):\n")
    print("\n".join(table(res)))
    print("\nper round:")
    print("\n".join(per_round(res)))
    if prof:
        print(f"\nround trips per job ({args.profile_n} jobs, listener on a separate client):\n")
        print("\n".join(prof))


def main(argv: list[str] | None = None) -> None:
    run_bench(bench, parse_args(argv))


if __name__ == "__main__":
    main()
