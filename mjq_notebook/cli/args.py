"""The arguments of each ``mjq`` command: only the options it uses, each with its help.

``parser()`` builds them; ``cli.main`` runs the command it names (``args.command``). Commands
that reach a database share ``--uri``/``--db``; those about one queue add ``--queue``; ``work``
takes ``--queue`` several times; ``serve`` and ``queues`` have no ``--queue``. ``$MJQ_QUEUE``
is the default of ``--queue`` (``queue_default``), which beats it.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, NoReturn

from ..analysis.stats import COLUMNS as STATS_COLUMNS
from ..core.job import job_id
from ..core.registry import HEARTBEAT_S, LOST_AFTER
from ..errors import JobIdError
from ..server import DATA_ENV, default_data_dir
from .web.access import DEFAULT_PORT, TOKEN_ENV


def _connection() -> argparse.ArgumentParser:
    """--uri and --db: where the queues are."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--uri",
        help="MongoDB URI (default: $MJQ_MONGODB_URI, $MONGODB_URI, "
        f"else your embedded server, data in ${DATA_ENV} or your user data folder)",
    )
    options.add_argument("--db", default="job_queue", help="database name (default: job_queue)")
    return options


QUEUE_ENV = "MJQ_QUEUE"
_QUEUE_HELP = f"(default: ${QUEUE_ENV}, else jobqueue; --queue beats ${QUEUE_ENV})"


def queue_default() -> str:
    """The queue a command is about when no ``--queue`` is given: ``$MJQ_QUEUE``, else
    ``jobqueue`` (pymjq's)."""
    return os.environ.get(QUEUE_ENV, "").strip() or "jobqueue"


def _one_queue(default: str | None = None) -> argparse.ArgumentParser:
    """--uri, --db and one --queue (by default ``queue_default()``)."""
    options = argparse.ArgumentParser(add_help=False, parents=[_connection()])
    helps = f"queue name (default: {default})" if default else f"queue name {_QUEUE_HELP}"
    options.add_argument("--queue", default=default or queue_default(), help=helps)
    return options


def _several_queues() -> argparse.ArgumentParser:
    """--uri, --db and --queue, which may be given several times."""
    options = argparse.ArgumentParser(add_help=False, parents=[_connection()])
    options.add_argument(
        "--queue",
        action="append",
        help=f"queue name {_QUEUE_HELP}; give it again to work several queues, "
        "each claim taking from the first one with a due job",
    )
    return options


def job_arg(text: str) -> Any:
    """An argparse type: a job's id as the displays show it (``job.job_id``)."""
    try:
        return job_id(text)
    except JobIdError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    """An argparse type: a whole number, 1 or more."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number, 1 or more, not {text!r}")
    return int(text)


def _port(text: str) -> int:
    """An argparse type: a TCP port, 1 to 65535."""
    if not text.strip().isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a port, 1 to 65535, not {text!r}")
    return int(text)


class _Refused(argparse.Action):
    """``--token VALUE``: refused, since a command line is visible to every user (``ps``);
    ``const`` says where a token goes instead."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        parser.error(
            f"{option}: not on the command line, which every user sees in `ps`: use "
            f"{self.const or f'${TOKEN_ENV} or --token-file'}"
        )


class _Parser(argparse.ArgumentParser):
    """A parser whose mistakes are one line saying where help is, not usage and then an error."""

    def error(self, message: str, prog: str | None = None) -> NoReturn:
        prog = prog or self.prog
        self.exit(2, f"{prog}: {message} (see `{prog} --help`)\n")

    def parse_args(self, args: Any = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]  # argparse's is overloaded: only its Namespace form here
        """As argparse's, but an unknown option is blamed on its command (``mjq tail``)."""
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            command = getattr(parsed, "command", None)
            prog = f"{self.prog} {command}" if command else self.prog
            self.error(f"unrecognized arguments: {' '.join(extra)}", prog)
        return parsed


def parser() -> argparse.ArgumentParser:
    """The ``mjq`` parser; ``args.command`` is the command's name."""
    one, several = _one_queue(), _several_queues()

    top = _Parser(
        prog="mjq",
        description="A MongoDB job queue you can see.",
        epilog="Start with `mjq demo`.",
    )
    commands = top.add_subparsers(title="commands", required=True, metavar="COMMAND")

    def command(name: str, help: str, *parents: Any) -> Any:
        sub = commands.add_parser(name, parents=list(parents), help=help, description=help)
        sub.set_defaults(command=name)
        return sub

    sub = command(
        "serve",
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

    sub = command(
        "pub",
        "publish jobs (creating the queue if need be): a JSON document, or JSON lines from a file",
        one,
    )
    sub.add_argument("json", nargs="?", help='job data as JSON, e.g. \'{"message": "hi"}\'')
    sub.add_argument("--file", help="a file of JSON lines, one job each ('-' for stdin)")
    sub.add_argument("--priority", type=int, default=0, help="higher is claimed first")
    sub.add_argument("--delay", type=float, default=0, help="seconds before it can be claimed")
    sub.add_argument(
        "--evict",
        action="store_true",
        help="publish even if the ring must evict unfinished jobs for it (a lossy ring); "
        "without it such a publish is refused and nothing is written",
    )

    sub = command("work", "run a handler over the queue(s) until stopped", several)
    sub.add_argument("handler", help="the function to run per job, as package.module:function")
    sub.add_argument("--concurrency", type=_positive, default=1, help="threads (default: 1)")
    sub.add_argument("--lease", type=float, default=60, help="lease seconds per claim")
    sub.add_argument("--max-jobs", type=_positive, help="stop after this many jobs")
    sub.add_argument("--drain", action="store_true", help="stop when the queue is empty")
    sub.add_argument(
        "--heartbeat",
        type=float,
        default=HEARTBEAT_S,
        help="seconds between heartbeats in the worker registry (default: %(default)g); "
        f"a worker silent for {LOST_AFTER} of them reads as lost",
    )
    sub.add_argument("--name", help="the worker's name in `mjq workers` (default: its id)")

    command("queues", "every queue in the database: counts, paused, workers", _connection())
    command("workers", "the queue's workers: state, host, what each runs, counts", one)
    command("pause", "stop every process taking jobs from the queue (within 1 s)", one)
    command("resume", "let workers take jobs again after `mjq pause`", one)
    sub = command("prune", "delete from history the jobs finished over an age ago", one)
    sub.add_argument(
        "--older-than", required=True, type=_age, metavar="AGE",
        help="30d, 12h, 90min, 45s, or seconds; counts() stays true",
    )  # fmt: skip

    sub = command(
        "resize",
        "grow the queue's ring in place (MongoDB 6.0+), or shrink it to no less than it holds",
        one,
    )
    sub.add_argument(
        "--size-bytes", type=_size, metavar="SIZE", help="its size: bytes, or e.g. 256MiB, 1GiB"
    )
    sub.add_argument("--max-jobs", type=_positive, help="the most jobs it holds")

    for name, what in (("retry", "failed jobs back to waiting"), ("cancel", "waiting jobs "
                       "cancelled"), ("promote", "delayed jobs due now")):  # fmt: skip
        sub = command(name, f"every job matching QUERY: {what} (asks first; see --yes)", one)
        only = f"it acts on {what.split()[0]} jobs only, whatever it says of status"
        sub.add_argument("query", metavar="QUERY", help=f"a job query, e.g. data.kind:x; {only}")
        sub.add_argument("--yes", action="store_true", help="act without asking")

    sub = command(
        "tail",
        "a log of the queue's jobs: the newest, each at its latest change, then every change "
        "of any job as it happens, one line each at the time it happened: time (UTC), job, "
        "change (waiting -> working), worker, attempt (of the most allowed), progress, and "
        "the job's data or, for a failure, the error's first line",
        one,
    )
    sub.add_argument("--limit", type=_positive, default=50, help="newest jobs shown first")
    sub.add_argument("--duration", type=float, help="stop after this many seconds")
    sub.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="aligned columns, or one JSON object per change (default: table)",
    )

    sub = command(
        "job",
        "one job as JSON, or an action on it (recorded in the audit); the job as the displays "
        "show its id, 24 hex digits",
        one,
    )
    sub.add_argument("job", type=job_arg, help="the job's id: 24 hex digits")
    action = sub.add_mutually_exclusive_group()
    action.add_argument(
        "--retry",
        dest="action",
        action="store_const",
        const="retry",
        help="a failed job back to waiting, with more attempts",
    )
    action.add_argument(
        "--cancel",
        dest="action",
        action="store_const",
        const="cancel",
        help="a waiting job -> cancelled (final, never claimed)",
    )
    action.add_argument(
        "--run-now",
        dest="action",
        action="store_const",
        const="run_now",
        help="a delayed job, or a retry in its back-off, due now",
    )
    action.add_argument("--release", dest="action", action="store_const", const="release",
                        help="a working job back to waiting now (its worker is lost)")  # fmt: skip

    sub = command(
        "audit",
        "who did what to the queue from mjq, a notebook or the dashboard, newest first",
        one,
    )
    sub.add_argument("--limit", type=_positive, default=50, help="entries (default: 50)")
    sub.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="a table, or one JSON object per line (default: table)",
    )

    sub = command("find", "the jobs a query matches, newest first (README: Finding jobs)", one)
    sub.add_argument("query", help='e.g. "status:failed data.customer:42 created:>1d"')
    sub.add_argument("--limit", type=_positive, default=100, help="jobs (default: 100)")
    sub.add_argument("--all", action="store_true", help="look past the newest 100,000 jobs")
    sub.add_argument("--format", choices=("table", "csv", "json"), default="table",
                     help="a table, CSV, or one JSON object per line (default: table)")  # fmt: skip

    sub = command(
        "stats",
        "each group's jobs by status, with its failure rate, then their wait and run times",
        one,
    )
    sub.epilog = "columns: " + "; ".join(f"{name}: {text}" for name, text in STATS_COLUMNS.items())
    sub.add_argument("--by", help="group by a field, e.g. data.kind, status, worker")
    sub.add_argument("--since", help="only jobs created since: a time, or a duration like 1h")
    sub.add_argument("--exact", action="store_true", help="exact percentiles (else approximate)")

    sub = command(
        "dashboard",
        "every queue of the database live in a browser tab (Voilà; pip install "
        "'mjq-notebook[web]')",
        _connection(),
    )
    sub.add_argument("--queue", help="open this queue's dashboard too")
    sub.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT})"
    )
    sub.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to listen on (default: 127.0.0.1, this machine only); another "
        "needs --allow-host",
    )
    sub.add_argument(
        "--allow-host",
        action="append",
        metavar="NAME",
        help="a host name visitors use (repeatable); the page answers only these and "
        "localhost (a foreign Host header gets 403)",
    )
    sub.add_argument(
        "--token-file",
        metavar="PATH",
        help=f"read the token from this file (else ${TOKEN_ENV}, else a random one "
        "at each start); 16 characters or more",
    )
    sub.add_argument("--token", action=_Refused, help=argparse.SUPPRESS)
    sub.add_argument(
        "--no-token",
        action="store_true",
        help="serve without a token: every user of this machine can then drive the page",
    )
    sub.add_argument(
        "--viewers",
        action="store_true",
        help="a second token for read-only viewers (from --viewer-token-file, else "
        "$MJQ_DASHBOARD_VIEWER_TOKEN, else a random one): they see everything, change nothing",
    )
    sub.add_argument(
        "--viewer-token-file",
        metavar="PATH",
        help="read the viewers' token from this file (implies --viewers); 16 characters or more",
    )
    sub.add_argument(
        "--viewer-token",
        action=_Refused,
        const="$MJQ_DASHBOARD_VIEWER_TOKEN or --viewer-token-file",
        help=argparse.SUPPRESS,
    )
    sub.add_argument("--open", action="store_true", help="open the page in your browser")
    sub.add_argument(
        "--max-pages",
        type=_positive,
        default=5,
        help="pages open at once, each a kernel (default: 5); more are told to wait",
    )

    sub = command(
        "metrics",
        "every queue of the database as a Prometheus endpoint, /metrics (pip install "
        "'mjq-notebook[metrics]'; README: Prometheus)",
        _connection(),
    )
    sub.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: "
                     "127.0.0.1, this machine only)")  # fmt: skip
    sub.add_argument("--port", type=_port, default=9464, help="port (default: 9464)")
    sub.add_argument(
        "--allow-host", action="append", metavar="NAME",
        help="a host name scrapers use (repeatable); beside addresses and localhost, the "
        "only names answered (another Host header gets 403)",
    )  # fmt: skip
    sub.add_argument(
        "--token-file", metavar="PATH",
        help="read the bearer token from this file (else $MJQ_METRICS_TOKEN, else a random "
        "one at each start, written to a file of yours); 16 characters or more",
    )  # fmt: skip
    sub.add_argument("--token", action=_Refused, const="$MJQ_METRICS_TOKEN or --token-file",
                     help=argparse.SUPPRESS)  # fmt: skip
    sub.add_argument("--no-token", action="store_true",
                     help="serve without a token (this machine's loopback only)")  # fmt: skip

    demo = _one_queue(default="demo")  # not $MJQ_QUEUE: the demo empties its queue first
    sub = command("demo", "publish a realistic workload, work it, print a summary", demo)
    sub.add_argument("--jobs", type=_positive, default=300, help="jobs to publish (default: 300)")
    sub.add_argument("--concurrency", type=_positive, default=4, help="worker threads (default: 4)")
    return top


_UNITS = {"": 1, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def _size(text: str) -> int:
    """An argparse type: bytes, as a whole number or with KiB, MiB or GiB."""
    number = text.strip().rstrip("BbIiKkMmGg").strip()
    unit = text.strip()[len(number) :].strip().upper()
    if not number.isdigit() or unit not in _UNITS or int(number) < 1:
        raise argparse.ArgumentTypeError(f"a size in bytes, or e.g. 256MiB, not {text!r}")
    return int(number) * _UNITS[unit]


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
