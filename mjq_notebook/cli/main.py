"""The ``mjq`` command: serve, pub, work, queues, workers, tail, stats, find, job, pause,
resume, prune, resize, retry/cancel/promote QUERY (``bulk``), audit, dashboard (``web``), metrics,
demo.

Commands that read or steer a queue open it without creating anything, so a mistyped name is
an error that lists the queues there are; only ``pub``, ``work`` and ``demo`` create one. A
user's mistake (a bad name, URI or JSON, a handler that can't be imported, a server that is
away) ends in one line on stderr saying what to do, not a traceback; output piped into
``head`` ends quietly. What a person does to a queue here (pub, pause, resume, prune,
resize) goes through ``Steering``, which records it in the queue's audit.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from pymongo.errors import PyMongoError

from ..core.audit import Actor, Steering
from ..core.catalog import queue_names, queues, queues_text
from ..core.job import new_documents
from ..core.outage import failure_reason
from ..core.queue import JobQueue
from ..core.registry import read_workers, workers_text
from ..errors import DataFolderError, JobQueueError, ServerUnavailable
from ..server import connect, env_uri, mask_uri
from ..text import format_seconds, printable
from .args import parser, queue_default
from .serve import cmd_serve


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    try:
        code = COMMANDS[args.command](args) or 0
        sys.stdout.flush()  # a reader that left (`| head`) shows here, inside this try
        return code
    except BrokenPipeError:
        # As Python's docs advise for SIGPIPE: point stdout at devnull, so the flush at exit
        # doesn't raise again, and exit 1.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except JobQueueError as exc:
        if isinstance(exc, USAGE_ERRORS):  # blame the command, as argparse's mistakes do
            print(f"mjq {args.command}: {exc}", file=sys.stderr)
            return 2
        print(f"mjq: {exc}", file=sys.stderr)
        return 1
    except PyMongoError as exc:  # the server refused (a login, a permission, a bad filter)
        print(f"mjq: {_refused(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# input or set-up the user gives that can't be used: exit 2, as for argparse's mistakes
USAGE_ERRORS = (ValueError, DataFolderError)  # data, priority, delay, name, data folder

_REFUSED_HINTS = {  # MongoDB error codes -> what to do
    18: "check the user and password in --uri or $MJQ_MONGODB_URI",  # AuthenticationFailed
    13: "log in as a user allowed to read and write the database: user:password@ in the URI",
}


def _refused(exc: PyMongoError) -> str:
    """One line for an error the server answered with: its message (no URI, no password)
    and, for a login or a permission, what to do."""
    details = getattr(exc, "details", None) or {}
    message = details.get("errmsg") if isinstance(details, dict) else None
    text = f"MongoDB refused: {printable(message) if message else failure_reason(exc)}"
    hint = _REFUSED_HINTS.get(getattr(exc, "code", None) or 0)
    return f"{text} ({hint})" if hint else text


def _connect(args: argparse.Namespace) -> Any:
    """The database of --uri/--db; a URI that is no URI, or a server that doesn't answer,
    ends the command with one line saying which and what to do."""
    if args.uri and not args.uri.startswith(("mongodb://", "mongodb+srv://")):
        raise SystemExit(
            f"mjq: --uri takes a MongoDB URI, mongodb://host:port or mongodb+srv://host, "
            f"not {mask_uri(args.uri)!r}"
        )
    try:
        return connect(args.uri, args.db)
    except ServerUnavailable as exc:
        where = "--uri" if args.uri else "$MJQ_MONGODB_URI / $MONGODB_URI" if env_uri() else ""
        hint = f"; is it running? check {where}" if where and "mjq serve" not in str(exc) else ""
        raise SystemExit(f"mjq: {exc}{hint}") from None


def _queue(args: argparse.Namespace, **options: Any) -> JobQueue:
    """The queue named by --queue, created if missing (for the commands that publish)."""
    return JobQueue(_connect(args), args.queue, **options)


def _existing(args: argparse.Namespace) -> JobQueue:
    """The queue named by --queue, which must exist: nothing is created. Otherwise the
    command ends with one line naming the queues the database has."""
    db = _connect(args)
    names = queue_names(db)
    if args.queue not in names:
        other = db.list_collection_names(filter={"name": args.queue})  # not a queue, then
        raise SystemExit(_no_such_queue(db.name, args.queue, names, bool(other)))
    return JobQueue.open(db, args.queue)


def _no_such_queue(db: str, name: str, names: list[str], exists: bool, shown: int = 20) -> str:
    where = f"no queue {printable(name)!r} in database {printable(db)}"
    if exists:
        where += " (a collection of that name is there, but it is not a capped job queue)"
    if not names:
        return (
            f"mjq: {where}, which has no queues (`mjq pub --queue NAME` creates one; "
            "--db picks another database)"
        )
    listed = ", ".join(printable(n) for n in names[:shown])
    if len(names) > shown:
        listed += f" and {len(names) - shown} more (`mjq queues` lists them)"
    return f"mjq: {where}; its queues: {listed}"


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
        if args.file is None and not args.json.strip():
            raise ValueError("the job data is empty: give a JSON document, e.g. '{}'")
        items = []
        for number, line in enumerate(lines, 1):
            if line.strip():
                where = f"line {number}: " if args.file else ""
                items.append(_json(line, where))
    except (ValueError, OSError) as exc:
        print(f"mjq pub: {exc}; nothing was published", file=sys.stderr)
        return 2
    # PublishError for data, --priority or --delay MongoDB can't take, before the queue is made
    new_documents(items, priority=args.priority, delay=args.delay, max_attempts=1)
    queue = _steering(_queue(args))
    ids = queue.pub_many(items, priority=args.priority, delay=args.delay, evict=args.evict)
    for job_id in ids:
        print(job_id)
    return 0


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where}invalid JSON: {exc}") from None
    except RecursionError:
        raise ValueError(f"{where}JSON nested too deeply to read") from None


def _load_handler(spec: str) -> Any:
    """The function named by ``module:function``; a mistake ends in one line saying why."""
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise SystemExit(f"mjq: a handler is module:function (e.g. tasks:handle), not {spec!r}")
    sys.path.insert(0, "")  # like `python -m`: the current folder is importable
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = exc.name or ""
        ours = module_name == missing or module_name.startswith(missing + ".")
        hint = (
            "is it on PYTHONPATH? run mjq from its folder"
            if ours or not missing
            else f"{module_name} imports it: install it where mjq runs"
        )
        raise SystemExit(f"mjq: can't import handler {spec}: {exc} ({hint})") from None
    except SyntaxError as exc:
        raise SystemExit(f"mjq: can't import handler {spec}: SyntaxError: {exc}") from None
    func = getattr(module, func_name, None)
    if not callable(func):
        what = "has no" if func is None else "has no function named"
        raise SystemExit(f"mjq: handler {spec}: module {module_name} {what} {func_name!r}")
    return func


def cmd_work(args: argparse.Namespace) -> int:
    from ..core.worker import Worker

    handler = _load_handler(args.handler)
    db = _connect(args)
    names = list(dict.fromkeys(args.queue or [queue_default()]))  # in order, each once
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


def cmd_queues(args: argparse.Namespace) -> int:
    rows = queues(_connect(args))
    if not rows:
        print(f"no queues in database {args.db} (`mjq pub --queue NAME` creates one)")
    else:
        print(queues_text(rows))
    return 0


def cmd_workers(args: argparse.Namespace) -> int:
    print(workers_text(read_workers(_existing(args))), flush=True)
    return 0


def _steering(queue: JobQueue) -> Steering:
    """``queue``'s actions, each recorded in its audit as done by this user through mjq."""
    return Steering(queue, Actor.here("cli"))


def cmd_pause(args: argparse.Namespace) -> int:
    _steering(_existing(args)).pause()
    print(f"mjq: {args.db}.{args.queue} paused: no worker takes a job until `mjq resume`")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    _steering(_existing(args)).resume()
    print(f"mjq: {args.db}.{args.queue} resumed")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    n = _steering(_existing(args)).prune_history(args.older_than)
    print(f"mjq: pruned {n:,} job(s) finished over {format_seconds(args.older_than)} ago from "
          f"{args.db}.{args.queue}.history")  # fmt: skip
    return 0


def cmd_resize(args: argparse.Namespace) -> int:
    if args.size_bytes is None and args.max_jobs is None:
        print("mjq resize: give --size-bytes, --max-jobs or both", file=sys.stderr)
        return 2
    q = _existing(args)
    before = q.limits()
    after = _steering(q).resize(size_bytes=args.size_bytes, max_jobs=args.max_jobs)
    print(f"mjq: {args.db}.{args.queue} resized: it held at most {before}, now {after}")
    return 0


def cmd_bulk(args: argparse.Namespace) -> int:  # retry, cancel, promote QUERY
    from .bulk import act

    return act(_steering(_existing(args)), args.command, args.query, args.yes)


def cmd_tail(args: argparse.Namespace) -> int:
    from .tail import tail

    return tail(_existing(args), limit=args.limit, duration=args.duration, form=args.format)


def _print_stats(queue: JobQueue, by: str | None = None, **options: Any) -> None:
    from .stats import print_stats

    print_stats(queue, by, **options)


def cmd_job(args: argparse.Namespace) -> int:
    from .job import job_command

    return job_command(_steering(_existing(args)), args.job, args.action)


def cmd_find(args: argparse.Namespace) -> int:
    from .find import print_found

    queue = _existing(args)
    return print_found(queue, args.query, limit=args.limit, form=args.format, all=args.all)


def cmd_audit(args: argparse.Namespace) -> int:
    from .audit import print_audit

    return print_audit(_existing(args), limit=args.limit, form=args.format)


def cmd_stats(args: argparse.Namespace) -> int:
    _print_stats(_existing(args), by=args.by, since=args.since, exact=args.exact)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from .web import access as web_access
    from .web import serve as web

    token = None if args.no_token else web_access.given_token(token_file=args.token_file)
    viewer = None
    if args.viewers or args.viewer_token_file is not None:
        viewer = web_access.viewer_token(
            token, token_file=args.viewer_token_file, no_token=args.no_token
        )
    web.check(args.host, args.port, args.no_token, args.allow_host)  # before a server starts
    if args.queue is not None:
        _existing(args)  # a mistyped name is an error here, not a page that says so
    else:
        queue_names(_connect(args))  # the server answers, before the page is served
    return web.serve(args.db, args.queue, uri=args.uri, host=args.host, port=args.port,
                     token=token, no_token=args.no_token, allow_hosts=args.allow_host,
                     open_browser=args.open, max_pages=args.max_pages,
                     viewer_token=viewer)  # fmt: skip


def cmd_metrics(args: argparse.Namespace) -> int:
    from . import metrics
    from .web.access import given_token

    metrics.require_library()
    token = None
    if not args.no_token:
        token = given_token(token_file=args.token_file, env_name=metrics.TOKEN_ENV)
    metrics.check(args.host, args.no_token, args.allow_host)
    db = _connect(args)
    queue_names(db)  # the server answers, before anything listens
    return metrics.serve(db, host=args.host, port=args.port, token=token,
                         no_token=args.no_token, allow_hosts=args.allow_host)  # fmt: skip


def cmd_demo(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..core.worker import Worker
    from .demo import handle, workload

    db = _connect(args)
    queue = JobQueue(db, args.queue, lease=30, backoff=0.05)
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


COMMANDS = {
    "serve": cmd_serve,
    "pub": cmd_pub,
    "work": cmd_work,
    "queues": cmd_queues,
    "workers": cmd_workers,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "prune": cmd_prune,
    "resize": cmd_resize,
    "tail": cmd_tail,
    **dict.fromkeys(("retry", "cancel", "promote"), cmd_bulk),
    "stats": cmd_stats,
    "job": cmd_job,
    "audit": cmd_audit,
    "find": cmd_find,
    "dashboard": cmd_dashboard,
    "metrics": cmd_metrics,
    "demo": cmd_demo,
}

if __name__ == "__main__":
    sys.exit(main())
