"""What durable writes cost: the embedded server as it was against as it is now.

The shared embedded server (``mjq_notebook.server.embedded.start_server``) used to be a plain
``SecantusDBServer`` on its data folder: WiredTiger journals every commit but does not fsync
it, so a ``kill -9`` of the server could lose writes it had acknowledged. It now starts with
``sync_on_commit=True`` (every commit fsyncs the journal before the reply) and a SCRAM login.
This script starts, in this process, one server of each kind on a fresh folder of its own on
the same disk and measures the real ``JobQueue`` API on each, in alternating rounds (like
``bench_queue.py``, whose measurements it reuses); every figure is the median over rounds:

- ``before``: ``SecantusDBServer(storage_path=<dir>, sync_on_commit=False)``, no login: the
  old ``start_server``;
- ``now``: ``mjq_notebook.embedded_server(<dir>)``, i.e. ``start_server`` as it is now
  (login, ``sync_on_commit=True``);
- ``j``: a server like ``before``, and the queue asking for the journal on every write with
  ``JobQueue(db, write_concern=WriteConcern(w=1, j=True))``. SecantusDB 0.7.0b3 fsyncs for
  ``j: true`` on insert, update, delete and findAndModify but not inside a client
  ``bulkWrite``, which is how the queue publishes and finishes on it: so here only the claim
  is fsynced (on mongod, ``j`` holds for all of them);
- ``auth``: a server with the login and without the fsync, to tell the two changes apart.

``--configs`` picks some of them (``before`` always).

Measured: a raw pymongo ``insert_one`` (the drift probe of ``bench_queue.py``); ``q.pub`` one
by one; ``q.pub_many`` in batches; ``pub`` + ``next`` + ``done`` one after another; pub->claim
latency with a consumer blocked in ``q.next(timeout=60)``. Each is printed for ``before``, the
others, and their ratio to ``before``. The disk (fsync costs nothing on tmpfs) and one raw
``os.fsync`` on it are printed too. ``SECANTUS_TEST_FAST_STORAGE=1`` (which turns the journal
off) is refused.

    python benchmarks/bench_durability.py              # ~2 min on 2 cores
    python benchmarks/bench_durability.py --quick      # ~20 s
    python benchmarks/bench_durability.py --dir /data/scratch --configs before,now
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import SMOKE_HELP, environment, round_done, smoke
from bench_queue import (
    CAPPED_MAX,
    CAPPED_SIZE,
    SIDES,
    Ours,
    Results,
    gaps_small,
    per_job,
    percentile,
    probe_insert,
    pub_batch,
    pub_claim_latency,
    pub_one_by_one,
)
from pymongo import WriteConcern
from pymongo.database import Database

from mjq_notebook import JobQueue, embedded_server
from mjq_notebook.server import client_for
from mjq_notebook.server.access import Credentials, add_login

FAST_STORAGE = "SECANTUS_TEST_FAST_STORAGE"  # "1" opens WiredTiger without its journal
RAM_FILESYSTEMS = {"tmpfs", "ramfs"}


class Journaled(Ours):
    """``JobQueue`` asking for a journaled acknowledgement on every write."""

    def __init__(self, db: Database, name: str) -> None:
        self.q = JobQueue(
            db,
            name,
            max_jobs=CAPPED_MAX,
            size_bytes=CAPPED_SIZE,
            write_concern=WriteConcern(w=1, j=True),
        )


SIDES["ours_j"] = Journaled  # so bench_queue's measurements can build it by name


# -- the servers -----------------------------------------------------------------------------


@dataclass
class Config:
    """One way of running the server: what it is, and the queue class it is measured with."""

    name: str
    what: str
    side: str  # bench_queue.SIDES key
    start: Callable[[Path], contextlib.AbstractContextManager[tuple[str, Any]]]


@contextlib.contextmanager
def plain_server(folder: Path, *, sync: bool = False, login: bool = False) -> Iterator[Any]:
    """A SecantusDBServer on ``folder`` as the old ``start_server`` made it (no login, no
    fsync), or with ``login`` and/or ``sync``; yields (uri, server)."""
    from secantus import SecantusDBServer

    credentials = Credentials.new() if login else None
    server = SecantusDBServer(
        host="127.0.0.1",
        port=0,
        storage_path=str(folder),
        sync_on_commit=sync,
        require_auth=login,
    )
    if credentials is not None:
        add_login(server, credentials)
    server.start()
    uri = f"{server.uri.rstrip('/')}/?retryWrites=false"
    if credentials is not None:
        uri = uri.replace("://", f"://{credentials.user}:{credentials.password}@", 1)
        uri += "&authSource=admin"
    try:
        yield uri, server
    finally:
        with contextlib.suppress(Exception):
            server.stop()


@contextlib.contextmanager
def current_server(folder: Path) -> Iterator[Any]:
    """The embedded server exactly as mjq_notebook starts it now; yields (uri, server)."""
    with embedded_server(folder) as running:
        yield running.uri, running.server


CONFIGS = {
    "before": Config(
        "before", "old start_server: sync_on_commit=False, no login", "ours", plain_server
    ),
    "now": Config(
        "now", "embedded_server(): sync_on_commit=True, SCRAM login", "ours", current_server
    ),
    "j": Config(
        "j",
        "sync_on_commit=False, no login; queue write_concern=WriteConcern(w=1, j=True)",
        "ours_j",
        plain_server,
    ),
    "auth": Config(
        "auth",
        "sync_on_commit=False, SCRAM login (the login alone)",
        "ours",
        lambda folder: plain_server(folder, login=True),
    ),
}


# -- the disk --------------------------------------------------------------------------------


def filesystem(path: Path) -> tuple[str, str, str]:
    """(device, type, mount point) of the mount holding ``path``, from /proc/mounts."""
    real = os.path.realpath(path)
    best = ("?", "?", "")
    with contextlib.suppress(OSError), open("/proc/mounts") as mounts:
        for line in mounts:
            device, point, kind = line.split()[:3]
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and len(point) > len(best[2]):
                best = (device, kind, point)
    return best


def df_line(path: Path) -> str:
    """``df -T``'s line for ``path`` (or why there is none)."""
    try:
        out = subprocess.run(
            ["df", "-T", str(path)], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"(df -T failed: {exc})"
    return " ".join(out.stdout.strip().splitlines()[-1].split())


def fsync_probe(folder: Path, n: int = 50) -> float:
    """Median seconds of appending 512 bytes to a file in ``folder`` and ``os.fsync``-ing it."""
    path = folder / "fsync-probe"
    times = []
    with open(path, "ab") as file:
        for _ in range(n):
            file.write(b"x" * 512)
            file.flush()
            start = time.perf_counter()
            os.fsync(file.fileno())
            times.append(time.perf_counter() - start)
    path.unlink()
    return statistics.median(times)


def scratch_parent(requested: str | None) -> Path:
    """Where the data folders go: ``--dir``, else the temp folder unless it lives in RAM (then
    the home folder), so that fsync is a real disk's."""
    if requested:
        return Path(requested).expanduser().resolve()
    parent = Path(tempfile.gettempdir()).resolve()
    if filesystem(parent)[1] in RAM_FILESYSTEMS:
        parent = Path.home().resolve()
        print(f"note: the temp folder is in RAM; using {parent} instead", file=sys.stderr)
    return parent


# -- measurements ----------------------------------------------------------------------------


def run_round(
    dbs: dict[str, Database],
    configs: list[Config],
    args: argparse.Namespace,
    rnd: int,
    res: Results,
) -> None:
    """Every measurement once on each configuration, the order reversed every other round."""
    order = configs if rnd % 2 == 0 else configs[::-1]
    gaps = gaps_small(random.Random(args.seed + rnd), args.latency_n, args.gap_min, args.gap_max)
    for c in order:
        res.add("probe", c.name, probe_insert(dbs[c.name]))
    for c in order:
        res.add("pub", c.name, pub_one_by_one(dbs[c.name], c.side, args.pub_n))
    for c in order:
        batches = [pub_batch(dbs[c.name], c.side, args.batch) for _ in range(args.batches)]
        res.add("pub_many", c.name, statistics.mean(batches))
    for c in order:
        jobs = per_job(dbs[c.name], c.side, args.jobs)
        res.add("job_mean", c.name, statistics.mean(jobs))
        res.add("job_p50", c.name, percentile(jobs, 50))
    for c in order:
        lat = pub_claim_latency(dbs[c.name], c.side, gaps)
        res.add("lat_p50", c.name, percentile(lat, 50))
        res.add("lat_p95", c.name, percentile(lat, 95))


# -- report ----------------------------------------------------------------------------------


ROWS = [
    ("probe", "raw pymongo insert_one (probe, no queue)"),
    ("pub", "q.pub, per job"),
    ("pub_many", "q.pub_many, per job"),
    ("job_mean", "pub + next + done, per job, mean"),
    ("job_p50", "pub + next + done, per job, p50"),
    ("lat_p50", "pub->claim latency p50"),
    ("lat_p95", "pub->claim latency p95"),
]


def table(res: Results, configs: list[Config]) -> list[str]:
    """Markdown: each figure in ms for every configuration, and its ratio to ``before``."""
    others = [c.name for c in configs if c.name != "before"]
    head = "| metric (ms) | before | " + " | ".join(f"{o} | {o}/before" for o in others) + " |"
    lines = [head, "|---|---:|" + "---:|---:|" * len(others)]
    for metric, label in ROWS:
        base = res.median(metric, "before")
        cells = [f"{base * 1e3:.3f}"]
        for other in others:
            value = res.median(metric, other)
            cells += [f"{value * 1e3:.3f}", f"{value / base:.2f}x"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def per_round(res: Results, configs: list[Config]) -> list[str]:
    """Every round's figure, so the spread behind each median shows."""
    lines = []
    for metric, _ in ROWS:
        cells = [
            f"{c.name} " + " ".join(f"{v * 1e3:.2f}" for v in res.rounds[metric][c.name])
            for c in configs
        ]
        lines.append(f"  {metric:8} ms: " + " | ".join(cells))
    return lines


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults take about 2 minutes on 2 cores."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="2 short rounds (~20 s)")
    p.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    p.add_argument(
        "--configs", default="before,now,j,auth", help="comma-separated, from before,now,j,auth"
    )
    p.add_argument("--dir", help="parent of the data folders (default: the temp folder)")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (5)")
    p.add_argument("--pub-n", type=int, default=200, help="jobs published one by one (200)")
    p.add_argument("--batch", type=int, default=100, help="jobs per pub_many (100)")
    p.add_argument("--batches", type=int, default=10, help="pub_many calls per round (10)")
    p.add_argument("--jobs", type=int, default=200, help="jobs for pub+next+done (200)")
    p.add_argument("--latency-n", type=int, default=100, help="latency samples per round (100)")
    p.add_argument("--gap-min", type=float, default=0.005, help="smallest gap, s (0.005)")
    p.add_argument("--gap-max", type=float, default=0.060, help="largest gap, s (0.060)")
    p.add_argument("--seed", type=int, default=1, help="random seed for the gaps (1)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.pub_n, args.batches = 2, 60, 3
        args.jobs, args.latency_n = 60, 30
    smoke(args, rounds=1, pub_n=10, batch=10, batches=1, jobs=10, latency_n=5)
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = set(names) - set(CONFIGS)
    if unknown or "before" not in names:
        p.error(f"--configs: must include before, and only {', '.join(CONFIGS)}")
    args.config_list = [CONFIGS[n] for n in dict.fromkeys(names)]
    return args


def durability_lines(servers: dict[str, Any]) -> list[str]:
    """What each server's storage says it does; refuses a server whose journal is off."""
    lines = []
    for name, server in servers.items():
        storage = server.storage
        durable = getattr(storage, "_durable", None)
        sync = getattr(storage, "sync_on_commit", None)
        if durable is False:
            sys.exit(f"{name}: WiredTiger opened without its journal ({FAST_STORAGE}?)")
        lines.append(
            f"storage: {name}: journal {'on' if durable else durable}, sync_on_commit={sync}, "
            f"login {'required' if server.require_auth else 'none'}"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if os.environ.get(FAST_STORAGE) == "1":
        sys.exit(f"{FAST_STORAGE}=1 turns the journal off: unset it to measure durability")
    configs: list[Config] = args.config_list
    parent = scratch_parent(args.dir)
    device, kind, point = filesystem(parent)
    if kind in RAM_FILESYSTEMS:
        print(f"WARNING: {parent} is on {kind}: fsync costs nothing there", file=sys.stderr)
    with contextlib.ExitStack() as stack:
        top = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mjq-dur-", dir=parent)))
        uris, servers = {}, {}
        for c in configs:
            uris[c.name], servers[c.name] = stack.enter_context(c.start(top / c.name))
        clients = {name: client_for(uri, retryWrites=False) for name, uri in uris.items()}
        for client in clients.values():
            stack.callback(client.close)
        dbs = {name: client["mjq_bench_durability"] for name, client in clients.items()}
        main_client = clients["now" if "now" in clients else "before"]
        where = argparse.Namespace(uri=None, embedded_path=f"on disk, one folder each in {top}")
        lines = environment(main_client, where, " (retryWrites=False)")
        lines += durability_lines(servers)
        lines += [
            f"env:     {FAST_STORAGE}={os.environ.get(FAST_STORAGE, '(unset)')}, "
            f"SECANTUS_FORCE_DURABLE={os.environ.get('SECANTUS_FORCE_DURABLE', '(unset)')}",
            f"disk:    {device} {kind} mounted on {point}; df -T: {df_line(top)}",
            f"fsync:   os.fsync of a 512-byte append there, p50 {fsync_probe(top) * 1e3:.3f} ms",
            "load:    {:.2f} {:.2f} {:.2f} (1/5/15 min) at the start".format(*os.getloadavg()),
        ]
        lines += [f"config:  {c.name}: {c.what}" for c in configs]
        print("\n".join(lines), flush=True)
        res = Results()
        started = time.perf_counter()
        for rnd in range(args.rounds):
            run_round(dbs, configs, args, rnd, res)
            round_done(rnd, args.rounds, started)
        elapsed = time.perf_counter() - started
    print(
        f"\nmedians over {args.rounds} rounds ({elapsed:.0f}s; pub {args.pub_n} jobs, pub_many "
        f"{args.batches} x {args.batch}, pub+next+done {args.jobs} jobs, latency {args.latency_n} "
        f"samples with {args.gap_min * 1e3:g}-{args.gap_max * 1e3:g} ms gaps); "
        f"load {os.getloadavg()[0]:.2f} at the end:\n"
    )
    print("\n".join(table(res, configs)))
    print("\nper round:")
    print("\n".join(per_round(res, configs)))


if __name__ == "__main__":
    main()
