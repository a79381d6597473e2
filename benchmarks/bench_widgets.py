"""Benchmark the live tail against a naive ``q.jobs()`` poll, with jobs flowing.

A load process publishes jobs at a steady rate (default 200/s for 20 s) while a ``Worker``
with 4 threads claims and finishes them. This process plays the notebook kernel: it shows

- **the tail** — ``q.tail(limit=50)``: the shared watcher (a change stream where the server
  has one, else polling), rows patched by id, at most 10 messages a second; or
- **the baseline** — a thread that re-reads ``q.jobs(limit=50)`` 10 times a second and
  replaces an ``HTML`` widget's value with the table (what a hand-rolled live view does).

Both send their widget messages through a recording comm (there is no front end), so the
figures are what a front end would receive. Measured per view, in alternating rounds:

1. lag, from an insert or a status change to the view's state showing it: the view's first
   sight of (job, status) minus the job's own ``ts.created``/``ts.started``/``ts.done``,
   which the load process stamps just before its write (same machine, same clock);
2. messages/s and bytes/s sent to the front end;
3. CPU seconds this process spent per wall second (the server and the load run elsewhere);
4. change events the watcher read a second, and this process's resident memory.

2 and 3 are counted from the view shown to the moment before its close; what opening it cost
(CPU, messages: a dashboard is some 30 widgets) is reported apart.

With ``--dashboard`` the real run also shows ``q.dashboard()`` (lag read from its tail's
rows). Issue 13 asks that a live view cost per refresh, not per job, so three more parts
measure the dashboard when far more changes go by than the embedded server can make:

- ``--synthetic``: the dashboard's watcher fed by the synthetic change stream of
  ``tests/support/feed.py`` (real BSON change events, no server in the loop for them; the
  refresh reads still go to the server) at 100 to 30,000 events/s, and idle (the real change
  stream, no writes);
- ``--million``: current and peak RSS before and after 1,000,000 events at 30,000/s;
- ``--three``: three dashboards on three queues against one, and the process after closing.

    python benchmarks/bench_widgets.py                 # SecantusDB in its own process
    python benchmarks/bench_widgets.py --uri mongodb://localhost:27017   # or MJQ_TEST_MONGODB_URI
    python benchmarks/bench_widgets.py --synthetic --million --three     # issue 13's goals
    python benchmarks/bench_widgets.py --dashboard --rate 40 --seconds 20  # jobs flowing
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import comm
from _common import environment, parser, round_done, scratch_database, smoke, verdict
from comm.base_comm import BaseComm

from mjq_notebook import JobQueue, Worker, connect
from mjq_notebook.server import client_for, read_credentials

STATUS_TIME = {"waiting": "created", "working": "started", "done": "done"}

# Issue 13's goals for an open dashboard.
GOAL_BUSY_CPU = 0.05  # CPU s/s at 30,000 events/s (10,000 jobs/s): 5 % of one core
GOAL_BUSY_MPS = 10.0  # messages/s to the front end at 30,000 events/s
GOAL_IDLE_CPU = 0.005  # CPU s/s with nothing happening, and after closing
GOAL_RSS_MB = 2.0  # "memory flat": current RSS grows at most this over a million events
GOAL_THREE = 3.5  # three dashboards on three queues cost at most ~3x one
WARMUP_S = 3.0  # a view's first snapshots and full widget state are not its steady cost
AFTER_CLOSE_S = 5.0  # the process's CPU measured this long after closing


class RecordingComm(BaseComm):
    """A comm that sends nothing and counts what it would have sent."""

    sent: list[tuple[float, int]] = []  # (time, bytes) of every message, all comms

    def publish_msg(self, msg_type: str, data: Any = None, metadata: Any = None,
                    buffers: Any = None, **keys: Any) -> None:  # fmt: skip
        size = len(json.dumps(data, default=str)) + sum(len(b) for b in buffers or ())
        RecordingComm.sent.append((time.monotonic(), size))


class RecordingManager:
    """The least ``BaseComm`` needs of a comm manager."""

    def register_comm(self, c: BaseComm) -> str:
        return c.comm_id

    def unregister_comm(self, c: BaseComm) -> None:
        pass


# -- the load process --------------------------------------------------------------------------


def run_load(uri: str, db: str, queue: str, rate: float, seconds: float, ring: int) -> None:
    """Publish ``rate`` jobs a second for ``seconds`` while 4 worker threads finish them."""
    q = JobQueue(connect(uri, db), queue, max_jobs=ring)
    worker = Worker(q, lambda job: None, concurrency=4, poll=0.2).start()
    start, n = time.monotonic(), 0
    while (now := time.monotonic()) < start + seconds:
        due = start + n / rate
        if due > now:
            time.sleep(due - now)
        q.pub({"n": n, "kind": ("email", "report", "resize")[n % 3]})
        n += 1
    deadline = time.monotonic() + 20
    while q.queue_count() and time.monotonic() < deadline:
        time.sleep(0.2)
    worker.stop()
    worker.join(10)
    print(json.dumps({"published": n, "seconds": time.monotonic() - start}), flush=True)


# -- the two views -----------------------------------------------------------------------------


class Sightings:
    """The first moment the view showed each (job id, status)."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()

    def saw(self, rows: list[tuple[str, str]]) -> None:
        now = time.time()
        with self.lock:
            for key in rows:
                self.first.setdefault(key, now)


def tail_view(q: JobQueue, seen: Sightings, polling: bool) -> Callable[[], None]:
    """Show ``q.tail()``; returns its close."""
    from mjq_notebook.live.watch import Watcher

    if polling:  # as on a standalone mongod, which has no change streams
        Watcher.of(q)._mode = "polling"
    tail = q.tail(limit=50)
    tail.table.observe(
        lambda change: seen.saw([(row["id"], row["status"]) for row in change["new"]]),
        names="rows",
    )
    return tail.close


def dashboard_view(q: JobQueue, seen: Sightings) -> Callable[[], None]:
    """Show ``q.dashboard()``; its tail's rows are what it shows of each job. Returns its
    close."""
    dashboard = q.dashboard()
    dashboard.tail.table.observe(
        lambda change: seen.saw([(row["id"], row["status"]) for row in change["new"]]),
        names="rows",
    )
    return dashboard.close


def poll_view(q: JobQueue, seen: Sightings) -> Callable[[], None]:
    """The baseline: re-read q.jobs(limit=50) ten times a second into an HTML widget."""
    import ipywidgets as w

    from mjq_notebook.notebook.display import job_list_html

    html, stop = w.HTML(), threading.Event()

    def loop() -> None:
        while not stop.wait(0.1):
            jobs = q.jobs(limit=50)
            seen.saw([(str(job.id), job["status"]) for job in jobs])
            html.value = job_list_html(jobs)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def close() -> None:
        stop.set()
        thread.join()
        html.close()

    return close


# -- one measurement ---------------------------------------------------------------------------


def load_command(q: JobQueue, rate: float, seconds: float, ring: int) -> list[str]:
    """The command line of a load process (``run_load``) publishing into ``q``; the server's
    URI, login included, goes in its environment (``load_env``), never on a command line."""
    where = [q.db.name, q.name]
    return [sys.executable, __file__, "--load", *where, str(rate), str(seconds), str(ring)]


def load_env(uri: str) -> dict[str, str]:
    """The environment of a load process: this one's, with the server's URI."""
    return {**os.environ, "MJQ_MONGODB_URI": uri}


def open_view(q: JobQueue, view: str, seen: Sightings) -> Callable[[], None]:
    """Show ``view`` of ``q``, its sightings going to ``seen``; returns its close."""
    if view == "poll":
        return poll_view(q, seen)
    if view == "dashboard":
        return dashboard_view(q, seen)
    return tail_view(q, seen, polling=view == "tail (polling)")


def lags_of(q: JobQueue, seen: Sightings) -> dict[str, list[float]]:
    """Each (job, status) the view showed: its first sighting less the job's own stamp."""
    lags: dict[str, list[float]] = {"insert": [], "status change": []}
    for collection in (q.collection, q.history_collection):
        for doc in collection.find({}, {"ts": 1, "status": 1}):
            for status, stamp in STATUS_TIME.items():
                when = (doc.get("ts") or {}).get(stamp)
                shown = seen.first.get((str(doc["_id"]), status))
                if when is not None and shown is not None:
                    kind = "insert" if status == "waiting" else "status change"
                    lags[kind].append(shown - when.timestamp())
    return lags


def measure(uri: str, args: argparse.Namespace, view: str) -> dict[str, Any]:
    """One view of a fresh queue while the load runs. CPU, messages and bytes are counted
    from the view shown to the moment before its close (its opening is reported apart)."""
    client = client_for(uri)
    db = client[f"mjq_bench_{uuid.uuid4().hex[:8]}"]
    try:
        q = JobQueue(db, "bench", max_jobs=args.ring)
        seen = Sightings()
        count_reads(q)
        start = Sample.now()
        close = open_view(q, view, seen)
        shown = Sample.now()
        load = subprocess.run(
            load_command(q, args.rate, args.seconds, args.ring), env=load_env(uri),
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        time.sleep(2)  # the last changes reach the view
        row = between(shown, Sample.now(), 0)
        close()
        lags = lags_of(q, seen)
        return {
            **row,
            "load": json.loads(load.stdout.strip().splitlines()[-1]),
            "lags": lags,
            "seen": sum(len(v) for v in lags.values()),
            "open": (shown.cpu - start.cpu, shown.messages - start.messages),
            "rss": (start.rss, row["rss"][1]),
        }
    finally:
        client.drop_database(db.name)
        client.close()


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values``: NaN for none, the value itself for one (a smoke run
    under load may see a single lag)."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def as_ratio(value: float, baseline: float) -> str:
    """``value / baseline`` as "1.23x"; "n/a" when either was not measured (a view that saw
    no job waiting, as a short run under load may: every job was claimed before a refresh)."""
    if math.isnan(value) or math.isnan(baseline) or not baseline:
        return "n/a"
    return f"{value / baseline:.2f}x"


def over_rounds(runs: list[dict[str, Any]], key: str) -> float:
    """A per-second figure over all rounds (each weighted by its length)."""
    return sum(r[key] * r["wall"] for r in runs) / sum(r["wall"] for r in runs)


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    print(
        "\n| view | published/s | lag insert p50 / p99 | lag status p50 / p99 | "
        "(job, status) seen | messages/s | KB/s | CPU s per s | events read/s | "
        "opening: CPU s, messages | RSS MB before → after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for view, runs in results.items():
        ins = [x for r in runs for x in r["lags"]["insert"]]
        sta = [x for r in runs for x in r["lags"]["status change"]]
        row = {
            "rate": statistics.median(r["load"]["published"] / r["load"]["seconds"] for r in runs),
            "ins": (percentile(ins, 0.5), percentile(ins, 0.99)),
            "sta": (percentile(sta, 0.5), percentile(sta, 0.99)),
            "seen": sum(r["seen"] for r in runs) / len(runs),
            "mps": over_rounds(runs, "mps"),
            "kbps": over_rounds(runs, "kbps"),
            "cpu": over_rounds(runs, "cpu"),
            "read": sum(r["read"] for r in runs) / sum(r["wall"] for r in runs),
        }
        summary[view] = row
        ins, sta = (f"{a * 1000:.0f} / {b * 1000:.0f} ms" for a, b in (row["ins"], row["sta"]))
        opening = f"{statistics.mean(r['open'][0] for r in runs):.2f}, " + str(
            round(statistics.mean(r["open"][1] for r in runs))
        )
        rss = f"{runs[0]['rss'][0]:.0f} → {runs[-1]['rss'][1]:.0f}"
        print(
            f"| {view} | {row['rate']:.0f} | {ins} | {sta} | {row['seen']:.0f} | "
            f"{row['mps']:.1f} | {row['kbps']:.1f} | {row['cpu']:.3f} | {row['read']:.1f} | "
            f"{opening} | {rss} |"
        )
    base = summary["poll"]
    print("\nratios against the q.jobs() poll (lower is better):")
    for view, row in summary.items():
        if view == "poll":
            continue
        print(
            f"  {view}: lag insert p50 {as_ratio(row['ins'][0], base['ins'][0])}, "
            f"status p50 {as_ratio(row['sta'][0], base['sta'][0])}, "
            f"bytes/s {as_ratio(row['kbps'], base['kbps'])}, "
            f"CPU {as_ratio(row['cpu'], base['cpu'])}"
        )
    if "dashboard" in summary:
        ratio = summary["dashboard"]["cpu"] / base["cpu"]
        print(
            f"goal: the dashboard costs no more CPU than the poll (at 40 jobs/s; here "
            f"{summary['dashboard']['rate']:.0f} published/s): {ratio:.2f}x {verdict(ratio, 1.0)}"
        )


# -- what this process spends --------------------------------------------------------------


def rss_mb() -> float:
    """This process's resident memory now, in MB (``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """The most resident memory this process has had, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_stream() -> Any:
    """``tests/support/feed.py``'s ``SyntheticStream`` class and ``feed_queue`` (the repository's
    root is not on ``sys.path`` when a benchmark runs as a script)."""
    root = str(pathlib.Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from tests.support import feed

    return feed


class CountingStream:
    """A real change stream that counts the events the watcher reads from it."""

    read = 0  # over every stream (a watcher reopens its stream after each refresh)

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    @property
    def alive(self) -> bool:
        return self._stream.alive

    def try_next(self) -> Any:
        event = self._stream.try_next()
        if event is not None:
            CountingStream.read += 1
        return event

    def close(self) -> None:
        self._stream.close()


def count_reads(q: JobQueue) -> None:
    """Have the watcher's real change streams on ``q`` count what it reads."""
    watch = q.collection.watch
    q.collection.watch = lambda *a, **k: CountingStream(watch(*a, **k))


def unpatch(q: JobQueue) -> None:
    """Give ``q``'s collection its own ``watch`` back (after ``feed_queue``/``count_reads``)."""
    vars(q.collection).pop("watch", None)


@dataclass(frozen=True)
class Sample:
    """Running totals of this process at one moment."""

    wall: float
    cpu: float
    messages: int
    bytes: int
    offered: int  # synthetic events made available to an open stream
    read: int  # events the watchers read, synthetic or real
    rss: float
    peak: float

    @classmethod
    def now(cls) -> Sample:
        feed = synthetic_stream().SyntheticStream
        sent = RecordingComm.sent
        return cls(
            wall=time.monotonic(),
            cpu=time.process_time(),
            messages=len(sent),
            bytes=sum(size for _, size in sent),
            offered=feed.offered,
            read=feed.read + CountingStream.read,
            rss=rss_mb(),
            peak=peak_rss_mb(),
        )


def between(before: Sample, after: Sample, rate: float) -> dict[str, Any]:
    """What happened from ``before`` to ``after``, per wall second where it is a rate."""
    wall = after.wall - before.wall
    return {
        "rate": rate,
        "wall": wall,
        "going by": rate * wall,
        "offered": after.offered - before.offered,
        "read": after.read - before.read,
        "cpu": (after.cpu - before.cpu) / wall,
        "mps": (after.messages - before.messages) / wall,
        "kbps": (after.bytes - before.bytes) / wall / 1000,
        "rss": (before.rss, after.rss),
        "peak": (before.peak, after.peak),
    }


def idle_cpu(seconds: float) -> float:
    """CPU seconds a second this process spends over the next ``seconds``."""
    cpu0, wall0 = time.process_time(), time.monotonic()
    time.sleep(seconds)
    return (time.process_time() - cpu0) / (time.monotonic() - wall0)


def mjq_threads() -> list[str]:
    """The package's threads still running in this process."""
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("mjq-"))


# -- the dashboard fed synthetic events ---------------------------------------------------------


def seed_queue(q: JobQueue, published: int = 200, finished: int = 100) -> None:
    """Publish ``published`` jobs and finish ``finished`` of them, so the dashboard's refresh
    reads (newest jobs, counts, charts, latency) have real documents to read."""
    q.pub_many([{"n": n, "kind": ("email", "report", "resize")[n % 3]} for n in range(published)])
    for _ in range(finished):
        q.done(q.next(), result={"ok": True})


def feed(q: JobQueue, rate: float) -> None:
    """Synthetic change events at ``rate`` a second to ``q``'s watcher; at 0 the real change
    stream (no writes happen, so no events), counted."""
    unpatch(q)
    if rate:
        synthetic_stream().feed_queue(q, rate)
    else:
        count_reads(q)


@contextlib.contextmanager
def dashboards(queues: list[JobQueue], rate: float) -> Iterator[list[Any]]:
    """One open dashboard on each queue, each fed at ``rate``; closed and unpatched after."""
    for q in queues:
        feed(q, rate)
    shown = []
    try:
        shown.extend(q.dashboard() for q in queues)
        yield shown
    finally:
        for dashboard in shown:
            dashboard.close()
        for q in queues:
            unpatch(q)


def synthetic_run(q: JobQueue, rate: float, seconds: float) -> dict[str, Any]:
    """One dashboard fed at ``rate`` events a second, measured for ``seconds`` after the
    warm-up."""
    with dashboards([q], rate):
        time.sleep(WARMUP_S)
        before = Sample.now()
        time.sleep(seconds)
        return between(before, Sample.now(), rate)


def synthetic_goal(row: dict[str, Any], top: float) -> str:
    """PASS/FAIL of a row against the goal of its rate (the busiest, or idle), else ``-``."""
    if row["rate"] == 0:
        return f"idle CPU ≤ {GOAL_IDLE_CPU:g}: {verdict(row['cpu'], GOAL_IDLE_CPU)}"
    if row["rate"] == top:
        cpu, mps = verdict(row["cpu"], GOAL_BUSY_CPU), verdict(row["mps"], GOAL_BUSY_MPS)
        return f"CPU ≤ {GOAL_BUSY_CPU:g}: {cpu}; messages/s ≤ {GOAL_BUSY_MPS:g}: {mps}"
    return "-"


def synthetic_with_load(q: JobQueue, uri: str, rate: float, args: argparse.Namespace) -> dict:
    """The dashboard fed ``rate`` synthetic events a second while a load process really
    publishes ``--synthetic-load`` jobs a second into ``q``: the events say nothing true, but
    each refresh now finds changed jobs, counts and charts to send, as it would at 10,000
    jobs/s."""
    seconds = WARMUP_S + args.synthetic_seconds + 1
    command = load_command(q, args.synthetic_load, seconds, args.ring)
    with subprocess.Popen(command, env=load_env(uri), stdout=subprocess.PIPE, text=True) as load:
        row = synthetic_run(q, rate, args.synthetic_seconds)
        load.communicate()
    return {**row, "jobs": args.synthetic_load}


def report_synthetic(rows: list[dict[str, Any]]) -> None:
    """The synthetic runs' table (lag is not measurable: the events are made up)."""
    top = max(row["rate"] for row in rows)
    print(
        "\n| events/s | going by | offered to open streams | read | CPU s per s | messages/s "
        "| KB/s | RSS MB before → after | goal |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        rate = f"{row['rate']:,.0f}" if row["rate"] else "0 (idle, real stream)"
        if row.get("jobs"):
            rate += f" + {row['jobs']:g} jobs/s real"
        offered = f"{row['offered']:,}" if row["rate"] else "-"
        print(
            f"| {rate} | {row['going by']:,.0f} | {offered} | {row['read']:,} | "
            f"{row['cpu']:.4f} | {row['mps']:.2f} | {row['kbps']:.2f} | "
            f"{row['rss'][0]:.1f} → {row['rss'][1]:.1f} | {synthetic_goal(row, top)} |"
        )
    print("lag: not measurable here (the events are synthetic: no job went through the queue)")


def synthetic_part(q: JobQueue, uri: str, args: argparse.Namespace) -> None:
    """``--synthetic``: the dashboard at each rate of ``--synthetic-rates``, the busiest again
    with real jobs flowing (``--synthetic-load``), then idle."""
    rows = []
    for rate in args.synthetic_rates:
        rows.append(synthetic_run(q, rate, args.synthetic_seconds))
        say_done(f"{rate:g} events/s")
    if args.synthetic_load:
        rows.append(synthetic_with_load(q, uri, max(args.synthetic_rates), args))
        say_done(f"{max(args.synthetic_rates):g} events/s + {args.synthetic_load:g} jobs/s")
    rows.append(synthetic_run(q, 0.0, args.synthetic_seconds))
    say_done("idle")
    report_synthetic(rows)


def say_done(what: str) -> None:
    """Progress on stderr, with the machine's load (other work shares its 2 cores)."""
    print(f"  {what} done, load average {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)


def million_part(q: JobQueue, rate: float, events: float) -> None:
    """``--million``: memory before and after ``events`` synthetic events at ``rate``, with
    current RSS every few seconds between."""
    seconds = events / rate
    with dashboards([q], rate):
        time.sleep(WARMUP_S)
        before, trace = Sample.now(), []
        end = before.wall + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(5.0, left))
            trace.append(rss_mb())
        row = between(before, Sample.now(), rate)
    growth = row["rss"][1] - row["rss"][0]
    print(
        f"\nmemory: {row['going by']:,.0f} events at {rate:,.0f}/s in {row['wall']:.1f} s "
        f"({row['offered']:,} offered to open streams, {row['read']:,} read); "
        f"CPU {row['cpu']:.4f} s/s, {row['mps']:.2f} messages/s"
    )
    print(
        f"  current RSS {row['rss'][0]:.1f} → {row['rss'][1]:.1f} MB ({growth:+.1f} MB), "
        f"peak RSS {row['peak'][0]:.1f} → {row['peak'][1]:.1f} MB"
    )
    print("  current RSS every 5 s: " + ", ".join(f"{mb:.1f}" for mb in trace))
    print(f"goal: memory flat (≤ {GOAL_RSS_MB:g} MB growth): {verdict(growth, GOAL_RSS_MB)}")


def three_part(db: Any, args: argparse.Namespace) -> None:
    """``--three``: one dashboard, then three on three queues, each fed ``--three-rate``
    synthetic events a second; then the process after closing them."""
    queues = [JobQueue(db, f"bench{i}", max_jobs=args.ring) for i in range(3)]
    for q in queues:
        seed_queue(q)
    baseline = idle_cpu(AFTER_CLOSE_S)
    cpu = {}
    for n in (1, 3):
        with dashboards(queues[:n], args.three_rate):
            time.sleep(WARMUP_S)
            before = Sample.now()
            time.sleep(args.synthetic_seconds)
            cpu[n] = between(before, Sample.now(), args.three_rate)
    left = mjq_threads()
    after = idle_cpu(AFTER_CLOSE_S)
    ratio = cpu[3]["cpu"] / cpu[1]["cpu"]
    print(f"\n| dashboards ({args.three_rate:,.0f} events/s each) | CPU s per s | messages/s |")
    print("|---|---|---|")
    for n, row in cpu.items():
        print(f"| {n} | {row['cpu']:.4f} | {row['mps']:.2f} |")
    print(f"three / one: {ratio:.2f}x — goal ≈ 3x (≤ {GOAL_THREE:g}): {verdict(ratio, GOAL_THREE)}")
    print(
        f"idle before opening {baseline:.4f} CPU s/s; the {AFTER_CLOSE_S:g} s after closing "
        f"{after:.4f} (goal ≤ {GOAL_IDLE_CPU:g}: {verdict(after, GOAL_IDLE_CPU)}); "
        f"mjq- threads left at close: {left or 'none'}, {AFTER_CLOSE_S:g} s later: "
        f"{mjq_threads() or 'none'} ({'PASS' if not left and not mjq_threads() else 'FAIL'})"
    )


def synthetic_parts(uri: str, args: argparse.Namespace) -> None:
    """The parts that feed synthetic events, in one scratch database of the server."""
    with scratch_database(client_for(uri)) as db:
        q = JobQueue(db, "bench", max_jobs=args.ring)
        seed_queue(q)
        if args.synthetic:
            synthetic_part(q, uri, args)
        if args.million:
            million_part(q, max(args.synthetic_rates), 1_000_000)
        if args.three:
            three_part(db, args)


# -- the real run ---------------------------------------------------------------------------


def warm_imports() -> None:
    """Import what the views import, so the first view measured does not pay for it."""
    import anywidget  # noqa: F401
    import ipywidgets  # noqa: F401

    import mjq_notebook.notebook.display
    import mjq_notebook.notebook.widgets.dashboard
    import mjq_notebook.notebook.widgets.tail  # noqa: F401


def real_part(uri: str, args: argparse.Namespace) -> None:
    """The views side by side while the load process publishes at ``--rate``."""
    views = ["tail", "poll"]
    views += ["tail (polling)"] if args.polling else []
    views += ["dashboard"] if args.dashboard else []
    print(
        f"load:    {args.rate:g} jobs/s asked for {args.seconds:g} s, 4 worker threads, "
        f"ring {args.ring}, {args.rounds} rounds, views {', '.join(views)}"
    )
    warm_imports()
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in views}
    started = time.perf_counter()
    for rnd in range(args.rounds):
        for view in views if rnd % 2 == 0 else reversed(views):
            results[view].append(measure(uri, args, view))
        round_done(rnd, args.rounds, started)
    report(results)


# -- the command line -------------------------------------------------------------------------


def serve(folder: str) -> tuple[subprocess.Popen, str]:
    """SecantusDB in its own process (``mjq serve``), so its CPU is not the view's; its URI
    with the login the server keeps in ``folder`` (it refuses clients without one)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mjq_notebook.cli", "serve", "--path", folder],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = proc.stdout.readline()
    credentials = read_credentials(folder)
    if " at " not in line or credentials is None:
        proc.terminate()
        raise SystemExit(f"mjq serve did not start ({line.strip() or proc.wait(30)})")
    return proc, credentials.in_uri(line.split(" at ", 1)[1].strip())


@contextlib.contextmanager
def server_uri(args: argparse.Namespace) -> Iterator[str]:
    """``--uri``, else a SecantusDB of our own in its own process, stopped afterwards."""
    if args.uri:
        yield args.uri
        return
    server, uri = serve(tempfile.mkdtemp(prefix="mjq-bench-"))
    try:
        yield uri
    finally:
        server.terminate()
        server.wait(30)


def arguments() -> argparse.Namespace:
    p = parser(__doc__)
    p.add_argument("--rate", type=float, default=200, help="jobs published a second")
    p.add_argument("--seconds", type=float, default=20, help="seconds of publishing a round")
    p.add_argument("--rounds", type=int, default=2, help="rounds of each view")
    p.add_argument("--ring", type=int, default=1000, help="the capped collection's max jobs")
    p.add_argument("--polling", action="store_true", help="also the tail with polling forced")
    p.add_argument("--dashboard", action="store_true", help="also the dashboard, jobs flowing")
    p.add_argument("--synthetic", action="store_true", help="the dashboard fed synthetic events")
    p.add_argument(
        "--synthetic-rates",
        type=lambda text: [float(r) for r in text.split(",")],
        default=[100.0, 1000.0, 10000.0, 30000.0],
        help="synthetic events a second, comma-separated (default 100,1000,10000,30000)",
    )
    p.add_argument("--synthetic-seconds", type=float, default=15, help="seconds measured a rate")
    p.add_argument(
        "--synthetic-load",
        type=float,
        default=40,
        help="jobs/s really published during a last busiest-rate run (0: none; default 40)",
    )
    p.add_argument("--million", action="store_true", help="RSS over 1,000,000 synthetic events")
    p.add_argument("--three", action="store_true", help="three dashboards against one")
    p.add_argument("--three-rate", type=float, default=1000, help="--three: events/s each")
    args = smoke(
        p.parse_args(),
        synthetic=True, synthetic_rates=[1000.0], synthetic_seconds=0.5, synthetic_load=0,
        million=False, three=False, dashboard=False, rate=20, seconds=1, rounds=1,
    )  # fmt: skip
    # the real run goes with --dashboard, or alone when no synthetic part is asked for
    args.real = args.dashboard or args.smoke or not (args.synthetic or args.million or args.three)
    return args


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        db, queue, rate, seconds, ring = sys.argv[2:7]
        run_load(os.environ["MJQ_MONGODB_URI"], db, queue, float(rate), float(seconds), int(ring))
        return
    args = arguments()
    comm.create_comm = RecordingComm
    comm.get_comm_manager = RecordingManager
    with server_uri(args) as uri:
        client = client_for(uri)
        lines = environment(client, args, "")
        lines[1] = lines[1].replace("embedded, in-process, :memory:", "`mjq serve`, own process")
        lines.append(f"machine: load average {os.getloadavg()[0]:.2f} (1 min) at the start")
        print("\n".join(lines))
        client.close()
        if args.synthetic or args.million or args.three:
            synthetic_parts(uri, args)
        if args.real:
            real_part(uri, args)
        print(f"machine: load average {os.getloadavg()[0]:.2f} (1 min) at the end")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
