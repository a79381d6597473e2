"""What the benchmarks share: the command line's ``--uri`` and ``--smoke``, the server and the
scratch database to run in, the report's environment lines, round progress and PASS/FAIL
verdicts.

The scripts run as ``python benchmarks/bench_x.py``, which puts this folder on ``sys.path``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pymongo
from pymongo.database import Database

import mjq_notebook
from mjq_notebook import embedded_server

SMOKE_HELP = "tiny sizes, one round, a few seconds: that the script still runs (CI); no figures"


def parser(description: str | None) -> argparse.ArgumentParser:
    """An argument parser with the script's docstring as its help, ``--uri`` and ``--smoke``."""
    p = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument(
        "--uri",
        default=os.environ.get("MJQ_TEST_MONGODB_URI"),
        help="MongoDB URI (default: $MJQ_TEST_MONGODB_URI, else embedded SecantusDB)",
    )
    p.add_argument(
        "--embedded-path",
        default=":memory:",
        help="without --uri: the in-process server's data folder (default :memory:)",
    )
    p.add_argument("--smoke", action="store_true", help=SMOKE_HELP)
    return p


def smoke(args: argparse.Namespace, **tiny: Any) -> argparse.Namespace:
    """With ``--smoke``, the options named in ``tiny`` take its values (sizes, rounds), so the
    whole script runs in seconds: CI runs it so, and a benchmark that no longer starts fails
    the build. Its figures then mean nothing, and the report says so first."""
    if args.smoke:
        vars(args).update(tiny)
        print("smoke:   --smoke: tiny sizes, one round; these figures mean nothing", flush=True)
    return args


def run_bench(bench: Callable[[str, argparse.Namespace], None], args: argparse.Namespace) -> None:
    """``bench(uri, args)`` against ``--uri``, else against an embedded SecantusDB."""
    if args.uri:
        bench(args.uri, args)
        return
    with embedded_server(args.embedded_path) as server:
        bench(server.uri, args)


@contextlib.contextmanager
def scratch_database(client: Any) -> Iterator[Database]:
    """A database of its own, ``mjq_bench_<random>``; dropped afterwards, the client closed."""
    name = f"mjq_bench_{uuid.uuid4().hex[:8]}"
    try:
        yield client[name]
    finally:
        client.drop_database(name)
        client.close()


def package_commit() -> str:
    """The mjq_notebook checkout's git commit (``-dirty`` with local changes), if known."""
    folder = os.path.dirname(os.path.abspath(mjq_notebook.__file__))
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


def environment(client: Any, args: argparse.Namespace, pymongo_note: str) -> list[str]:
    """Server, Python and pymongo versions and the date; ``pymongo_note`` follows pymongo's
    version on its line (the client's settings, or further libraries' versions)."""
    info = client.server_info()
    if "secantusVersion" in info:
        server = f"SecantusDB {info['secantusVersion']} (reports MongoDB {info['version']})"
    else:
        server = f"mongod {info['version']}"
    where = "--uri" if args.uri else f"embedded, in-process, {args.embedded_path}"
    return [
        f"date:    {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"server:  {server} [{where}]",
        f"python:  {platform.python_version()} ({platform.platform()})",
        f"pymongo: {pymongo.version}{pymongo_note}",
        f"cpus:    {os.cpu_count()}",
        f"package: mjq_notebook {mjq_notebook.__version__} at commit {package_commit()}",
    ]


def round_done(rnd: int, rounds: int, started: float) -> None:
    """Say on stderr that round ``rnd`` (from 0) is over, and when since ``started``."""
    print(
        f"round {rnd + 1}/{rounds} done at {time.perf_counter() - started:.0f}s",
        file=sys.stderr,
        flush=True,
    )


def verdict(ratio: float, target: float | None) -> str:
    """PASS or FAIL of ``ratio`` against the largest passing ``target``; ``-`` without one."""
    if target is None:
        return "-"
    return "PASS" if ratio <= target else "FAIL"


def per_job_ms(q: Any, n: int) -> float:
    """Mean milliseconds of pub + next + done of ``n`` jobs on ``q``, one job at a time."""
    started = time.perf_counter()
    for i in range(n):
        q.pub({"probe": i})
        q.done(q.next(timeout=5))
    return (time.perf_counter() - started) / n * 1000


def status_kb(field: str) -> int:
    """A ``/proc/self/status`` figure in kB (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)
