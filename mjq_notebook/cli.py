"""The ``mjq`` command: serve, pub, work, workers, tail, stats and demo."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import JobQueueError
from .queue import JobQueue
from .registry import HEARTBEAT_S, LOST_AFTER, read_workers, workers_text
from .server import DATA_ENV, connect, data_dir, default_data_dir, env_uri, mask_uri


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    try:
        return args.command(args) or 0
    except JobQueueError as exc:
        print(f"mjq: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _connection_options(*, queues: bool = False) -> argparse.ArgumentParser:
    """--uri, --db and --queue; ``queues``: --queue may be given several times."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--uri",
        help="MongoDB URI (default: $MJQ_MONGODB_URI, $MONGODB_URI, "
        f"else your embedded server, data in ${DATA_ENV} or your user data folder)",
    )
    common.add_argument("--db", default="job_queue", help="database name (default: job_queue)")
    if queues:
        common.add_argument(
            "--queue",
            action="append",
            help="queue name (default: jobqueue); give it again to work several queues, "
            "each claim taking from the first one with a due job",
        )
    else:
        common.add_argument("--queue", default="jobqueue", help="queue name (default: jobqueue)")
    return common


def _parser() -> argparse.ArgumentParser:
    common, several = _connection_options(), _connection_options(queues=True)

    parser = argparse.ArgumentParser(
        prog="mjq",
        description="A MongoDB job queue you can see.",
        epilog="Start with `mjq demo`.",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def command(name: str, func: Any, help: str, parent: Any = common) -> Any:
        sub = commands.add_parser(name, parents=[parent], help=help, description=help)
        sub.set_defaults(command=func)
        return sub

    sub = command(
        "serve",
        cmd_serve,
        "run the embedded MongoDB server in the foreground; or start, show or stop the "
        "shared one that connect() starts in the background",
    )
    sub.add_argument(
        "--path", help=f"data folder (default: ${DATA_ENV}, else {default_data_dir()})"
    )
    sub.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    sub.add_argument(
        "--idle-timeout",
        type=float,
        help="stop after this many seconds with no client connected (0: never; default: "
        "never in the foreground, $MJQ_SERVER_IDLE_TIMEOUT or 3600 with --detach)",
    )
    action = sub.add_mutually_exclusive_group()
    action.add_argument(
        "--detach", action="store_true", help="start the shared server in the background"
    )
    action.add_argument(
        "--status", action="store_true", help="where the shared server runs, uptime, clients"
    )
    action.add_argument("--stop", action="store_true", help="stop the shared server cleanly")

    sub = command("pub", cmd_pub, "publish jobs: a JSON document, or JSON lines from a file")
    sub.add_argument("json", nargs="?", help='job data as JSON, e.g. \'{"message": "hi"}\'')
    sub.add_argument("--file", help="a file of JSON lines, one job each ('-' for stdin)")
    sub.add_argument("--priority", type=int, default=0, help="higher is claimed first")
    sub.add_argument("--delay", type=float, default=0, help="seconds before it can be claimed")

    sub = command("work", cmd_work, "run a handler over the queue(s) until stopped", several)
    sub.add_argument("handler", help="the function to run per job, as package.module:function")
    sub.add_argument("--concurrency", type=int, default=1, help="threads (default: 1)")
    sub.add_argument("--lease", type=float, default=60, help="lease seconds per claim")
    sub.add_argument("--max-jobs", type=int, help="stop after this many jobs")
    sub.add_argument("--drain", action="store_true", help="stop when the queue is empty")
    sub.add_argument(
        "--heartbeat",
        type=float,
        default=HEARTBEAT_S,
        help="seconds between heartbeats in the worker registry (default: %(default)g); "
        f"a worker silent for {LOST_AFTER} of them reads as lost",
    )
    sub.add_argument("--name", help="the worker's name in `mjq workers` (default: its id)")

    command("workers", cmd_workers, "the queue's workers: state, host, what each runs, counts")
    command("pause", cmd_pause, "stop every process taking jobs from the queue (within 1 s)")
    command("resume", cmd_resume, "let workers take jobs again after `mjq pause`")
    sub = command("prune", cmd_prune, "delete from history the jobs finished over an age ago")
    sub.add_argument(
        "--older-than", required=True, type=_age, metavar="AGE",
        help="30d, 12h, 90min, 45s, or seconds; counts() stays true",
    )  # fmt: skip

    sub = command("tail", cmd_tail, "show new jobs and status changes as they happen")
    sub.add_argument("--limit", type=int, default=50, help="newest jobs to follow")
    sub.add_argument("--duration", type=float, help="stop after this many seconds")

    sub = command("stats", cmd_stats, "counts per status and wait/run time percentiles")
    sub.add_argument("--by", help="group by a field, e.g. data.kind, status, worker")
    sub.add_argument("--since", help="only jobs created since: a time, or a duration like 1h")
    sub.add_argument("--exact", action="store_true", help="exact percentiles (else approximate)")

    sub = command("demo", cmd_demo, "publish a realistic workload, work it, print a summary")
    sub.add_argument("--jobs", type=int, default=300, help="jobs to publish (default: 300)")
    sub.add_argument("--concurrency", type=int, default=4, help="worker threads (default: 4)")
    return parser


def _queue(args: argparse.Namespace, **options: Any) -> JobQueue:
    return JobQueue(connect(args.uri, args.db), args.queue, **options)


def cmd_serve(args: argparse.Namespace) -> int:
    from . import server

    folder = data_dir(args.path)
    if args.status:
        return _serve_status(folder)
    if args.stop:
        info = server.stop_server(folder)
        if info is None:
            print(f"mjq: no server runs for {folder}; nothing to stop")
        else:
            print(f"mjq: stopped the server for {folder} (pid {info.pid}, {info.uri})")
        return 0
    if args.detach:
        info = server.ensure_server(folder, idle_timeout=args.idle_timeout)
        print(f"mjq: the server for {folder} runs at {info.uri} (pid {info.pid})", flush=True)
        return 0

    def ready(embedded: Any) -> None:
        print(f"mjq: serving {folder} at {embedded.address}", flush=True)
        print(
            "     connect(), mjq and workers of yours find it and its login there; "
            f"elsewhere, set {DATA_ENV}={folder}",
            flush=True,
        )

    # SIGTERM and Ctrl-C stop it cleanly: data flushed, URI file removed, exit 0
    server.serve(
        folder, port=args.port, idle_timeout=args.idle_timeout, take_lock=True, on_ready=ready
    )
    return 0


def _serve_status(folder: Path) -> int:
    from . import server

    info = server.read_info(folder)
    if info is None or not server.pid_alive(info.pid):
        print(f"mjq: no server runs for {folder}")
        return 1
    connections = server.count_connections(info.port)  # before our ping adds some
    pids = server.client_pids(info.port)
    if not server.answers(info.uri, server.BUSY_TIMEOUT):
        print(f"mjq: no server answers for {folder} (pid {info.pid} recorded at {info.uri})")
        return 1
    if connections is None:  # no /proc: ask the server, leaving out our own connections
        connections = server.count_connections(info.port, info.uri)
    clients = "unknown" if connections is None else f"{connections} connections"
    if pids:
        many = len(pids) > 1
        clients += f" from {len(pids)} process{'es' * many} (pid{'s' * many} "
        clients += ", ".join(map(str, pids)) + ")"
    print(f"mjq: the server for {folder} is running")
    print(f"  uri:     {mask_uri(info.uri)}")
    print(f"  pid:     {info.pid}")
    print(f"  folder:  {info.path}")
    print(f"  login:   in {server.CREDENTIALS_FILE} there (yours only; connect() reads it)")
    print(f"  uptime:  {_duration(info.uptime)}")
    print(f"  clients: {clients}")
    return 0


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    text = f"{hours}h {minutes:02d}m {secs:02d}s" if hours or days else f"{minutes}m {secs:02d}s"
    return f"{days}d {text}" if days else text


def cmd_pub(args: argparse.Namespace) -> int:
    if (args.json is None) == (args.file is None):
        print("mjq pub: give job data as JSON, or --file", file=sys.stderr)
        return 2
    try:
        if args.file is None:
            lines = [args.json]
        elif args.file == "-":
            lines = sys.stdin.read().splitlines()
        else:
            with open(args.file, encoding="utf-8") as stream:
                lines = stream.read().splitlines()
        items = []
        for number, line in enumerate(lines, 1):
            if line.strip():
                where = f"line {number}: " if args.file else ""
                items.append(_json(line, where))
    except (ValueError, OSError) as exc:
        print(f"mjq pub: {exc}; nothing was published", file=sys.stderr)
        return 2
    queue = _queue(args)
    ids = queue.pub_many(items, priority=args.priority, delay=args.delay)
    for job_id in ids:
        print(job_id)
    return 0


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}invalid JSON: {exc}") from None


def _load_handler(spec: str) -> Any:
    module_name, _, func_name = spec.partition(":")
    if not func_name:
        raise SystemExit(f"mjq work: handler must be module:function, got {spec!r}")
    sys.path.insert(0, "")  # like `python -m`: the current folder is importable
    return getattr(importlib.import_module(module_name), func_name)


def cmd_work(args: argparse.Namespace) -> int:
    from .worker import Worker

    handler = _load_handler(args.handler)
    db = connect(args.uri, args.db)
    names = list(dict.fromkeys(args.queue or ["jobqueue"]))  # in order, each once
    queues = [JobQueue(db, name, lease=args.lease) for name in names]
    worker = Worker(
        queues, handler, concurrency=args.concurrency, heartbeat=args.heartbeat, name=args.name
    )
    where = ", ".join(f"{db.name}.{name}" for name in names)
    print(f"mjq: working {where} as {worker.id}", flush=True)
    stats = worker.run(drain=args.drain, max_jobs=args.max_jobs)
    print(
        f"mjq: stopped: {stats.done} done, {stats.failed} failed, {stats.retried} retried, "
        f"{stats.released} released",
        flush=True,
    )
    return 0


def cmd_workers(args: argparse.Namespace) -> int:
    print(workers_text(read_workers(_queue(args))), flush=True)
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    q = _queue(args)
    q.pause()
    print(f"mjq: {args.db}.{args.queue} paused: no worker takes a job until `mjq resume`")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    q = _queue(args)
    q.resume()
    print(f"mjq: {args.db}.{args.queue} resumed")
    return 0


def _age(text: str) -> float:
    """Seconds in an age such as "30d", "12h", "90min" or "45" (seconds)."""
    import pandas as pd

    try:
        seconds = float(text) if text.replace(".", "", 1).isdigit() else None
        seconds = pd.Timedelta(text).total_seconds() if seconds is None else seconds
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an age: {text!r} (e.g. 30d, 12h, 90min)") from None
    if not seconds >= 0:
        raise argparse.ArgumentTypeError(f"an age is 0 or more, not {text!r}")
    return seconds


def cmd_prune(args: argparse.Namespace) -> int:
    n = _queue(args).prune_history(args.older_than)
    print(f"mjq: pruned {n:,} job(s) finished over {_duration(args.older_than)} ago from "
          f"{args.db}.{args.queue}.history")  # fmt: skip
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from .notebook.watch import changes

    queue = _queue(args)
    for job, previous in changes(queue, limit=args.limit, duration=args.duration):
        ts = job.get("ts") or {}
        when = ts.get("done") or ts.get("started") or ts.get("created")
        stamp = when.strftime("%H:%M:%S.%f")[:-3] if when else "?"
        change = job["status"] if previous is None else f"{previous} -> {job['status']}"
        data = json.dumps(job.get("data"), default=str)
        if len(data) > 80:
            data = data[:77] + "..."
        print(f"{stamp}  {job.id}  {change:<18} {data}", flush=True)
    return 0


def _print_stats(queue: JobQueue, by: str | None = None, **options: Any) -> None:
    counts = queue.counts()
    print("jobs: " + "  ".join(f"{k} {v}" for k, v in counts.items() if k != "lost" or v))
    table = queue.stats(by=by, **options)  # computed in MongoDB: nothing big is loaded
    print("\nlatency (seconds)" + (f" by {by}" if by else "") + ":")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))


def cmd_stats(args: argparse.Namespace) -> int:
    _print_stats(_queue(args), by=args.by, since=args.since, exact=args.exact)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .demo import handle, workload
    from .worker import Worker

    db = connect(args.uri, args.db)
    name = "demo" if args.queue == "jobqueue" else args.queue
    queue = JobQueue(db, name, lease=30, backoff=0.05)
    queue.clear_queue()
    host, port = db.client.address or ("?", 0)
    print(
        f"mjq demo: {args.jobs} jobs into {db.name}.{queue.name} on {host}:{port}, "
        f"{args.concurrency} worker threads"
    )
    queue.pub_many(workload(args.jobs))
    worker = Worker(queue, handle, concurrency=args.concurrency, poll=0.2).start(drain=True)
    with tqdm(total=args.jobs, unit="job", desc="finished") as bar:
        while not worker.join(timeout=0.25):
            bar.update(queue.history_collection.count_documents({}) - bar.n)
        bar.update(args.jobs - bar.n)
    print()
    _print_stats(queue, by="data.kind", exact=True)
    print(
        f"\nnext: `mjq stats --queue {queue.name} --by data.kind`, or in a notebook:\n"
        f"  df = JobQueue(connect(), {queue.name!r}).history()\n"
        '  df.mjq.summary(by="data.kind"); df.mjq.plot_latency()'
    )
    if not (args.uri or env_uri()):
        print(
            "\nthe embedded server keeps running for your notebooks and workers "
            "(`mjq serve --status`); `mjq serve --stop` stops it, and it stops by itself "
            "after an hour unused"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
