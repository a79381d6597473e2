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
3. CPU seconds this process spent per wall second (the server and the load run elsewhere).

    python benchmarks/bench_widgets.py                 # SecantusDB in its own process
    python benchmarks/bench_widgets.py --uri mongodb://localhost:27017   # or MJQ_TEST_MONGODB_URI
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import comm
from _common import environment, parser, round_done
from comm.base_comm import BaseComm

from mjq_notebook import JobQueue, Worker, connect
from mjq_notebook.connection import client_for

STATUS_TIME = {"waiting": "created", "working": "started", "done": "done"}


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
    from mjq_notebook.watch import Watcher

    if polling:  # as on a standalone mongod, which has no change streams
        Watcher.of(q)._mode = "polling"
    tail = q.tail(limit=50)
    tail.table.observe(
        lambda change: seen.saw([(row["id"], row["status"]) for row in change["new"]]),
        names="rows",
    )
    return tail.close


def poll_view(q: JobQueue, seen: Sightings) -> Callable[[], None]:
    """The baseline: re-read q.jobs(limit=50) ten times a second into an HTML widget."""
    import ipywidgets as w

    from mjq_notebook.display import job_list_html

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


def measure(uri: str, args: argparse.Namespace, view: str) -> dict[str, Any]:
    client = client_for(uri)
    db = client[f"mjq_bench_{uuid.uuid4().hex[:8]}"]
    try:
        q = JobQueue(db, "bench", max_jobs=args.ring)
        seen = Sightings()
        RecordingComm.sent = []
        cpu0, wall0 = time.process_time(), time.monotonic()
        if view == "poll":
            close = poll_view(q, seen)
        else:
            close = tail_view(q, seen, polling=view == "tail (polling)")
        load = subprocess.run(
            [sys.executable, __file__, "--load", uri, db.name, "bench",
             str(args.rate), str(args.seconds), str(args.ring)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        time.sleep(2)  # the last changes reach the view
        close()
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        sent = [size for at, size in RecordingComm.sent]
        lags: dict[str, list[float]] = {"insert": [], "status change": []}
        events = 0
        for collection in (q.collection, q.history_collection):
            for doc in collection.find({}, {"ts": 1, "status": 1}):
                for status, stamp in STATUS_TIME.items():
                    when = (doc.get("ts") or {}).get(stamp)
                    if when is None:
                        continue
                    events += collection is q.collection or status != "waiting"
                    shown = seen.first.get((str(doc["_id"]), status))
                    if shown is not None:
                        kind = "insert" if status == "waiting" else "status change"
                        lags[kind].append(shown - when.timestamp())
        return {
            "load": json.loads(load.stdout.strip().splitlines()[-1]),
            "lags": lags,
            "seen": sum(len(v) for v in lags.values()),
            "messages": len(sent),
            "bytes": sum(sent),
            "cpu": cpu,
            "wall": wall,
        }
    finally:
        client.drop_database(db.name)
        client.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    print(
        "\n| view | published/s | lag insert p50 / p99 | lag status p50 / p99 | "
        "(job, status) seen | messages/s | KB/s | CPU s per s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    summary = {}
    for view, runs in results.items():
        ins = [x for r in runs for x in r["lags"]["insert"]]
        sta = [x for r in runs for x in r["lags"]["status change"]]
        wall = sum(r["wall"] for r in runs)
        row = {
            "rate": statistics.median(r["load"]["published"] / r["load"]["seconds"] for r in runs),
            "ins": (percentile(ins, 0.5), percentile(ins, 0.99)),
            "sta": (percentile(sta, 0.5), percentile(sta, 0.99)),
            "seen": sum(r["seen"] for r in runs) / len(runs),
            "mps": sum(r["messages"] for r in runs) / wall,
            "kbps": sum(r["bytes"] for r in runs) / wall / 1000,
            "cpu": sum(r["cpu"] for r in runs) / wall,
        }
        summary[view] = row
        ins, sta = (f"{a * 1000:.0f} / {b * 1000:.0f} ms" for a, b in (row["ins"], row["sta"]))
        print(
            f"| {view} | {row['rate']:.0f} | {ins} | {sta} | {row['seen']:.0f} | "
            f"{row['mps']:.1f} | {row['kbps']:.1f} | {row['cpu']:.3f} |"
        )
    base = summary["poll"]
    print("\nratios against the q.jobs() poll (lower is better):")
    for view, row in summary.items():
        if view == "poll":
            continue
        print(
            f"  {view}: lag insert p50 {row['ins'][0] / base['ins'][0]:.2f}x, "
            f"status p50 {row['sta'][0] / base['sta'][0]:.2f}x, "
            f"bytes/s {row['kbps'] / base['kbps']:.2f}x, CPU {row['cpu'] / base['cpu']:.2f}x"
        )


def serve(folder: str) -> tuple[subprocess.Popen, str]:
    """SecantusDB in its own process (``mjq serve``), so its CPU is not the view's."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "mjq_notebook.cli", "serve", "--path", folder],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = proc.stdout.readline()
    return proc, line.split(" at ", 1)[1].strip()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        uri, db, queue, rate, seconds, ring = sys.argv[2:8]
        run_load(uri, db, queue, float(rate), float(seconds), int(ring))
        return
    p = parser(__doc__)
    p.add_argument("--rate", type=float, default=200, help="jobs published a second")
    p.add_argument("--seconds", type=float, default=20, help="seconds of publishing a round")
    p.add_argument("--rounds", type=int, default=2, help="rounds of each view")
    p.add_argument("--ring", type=int, default=1000, help="the capped collection's max jobs")
    p.add_argument("--polling", action="store_true", help="also the tail with polling forced")
    args = p.parse_args()
    comm.create_comm = RecordingComm
    comm.get_comm_manager = RecordingManager
    server = None
    if args.uri:
        uri = args.uri
    else:
        folder = tempfile.mkdtemp(prefix="mjq-bench-")
        server, uri = serve(folder)
    try:
        client = client_for(uri)
        lines = environment(client, args, "")
        lines[1] = lines[1].replace("embedded, in-process, :memory:", "`mjq serve`, own process")
        print("\n".join(lines))
        print(f"load:    {args.rate:g} jobs/s asked for {args.seconds:g} s, 4 worker threads, "
              f"ring {args.ring}, {args.rounds} rounds")  # fmt: skip
        client.close()
        views = ["tail", "poll"] + (["tail (polling)"] if args.polling else [])
        results: dict[str, list[dict[str, Any]]] = {v: [] for v in views}
        started = time.perf_counter()
        for rnd in range(args.rounds):
            for view in views if rnd % 2 == 0 else reversed(views):
                results[view].append(measure(uri, args, view))
            round_done(rnd, args.rounds, started)
        report(results)
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
