"""The server process itself: ``python -m mjq_notebook.server`` and ``mjq serve``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence

from ..errors import JobQueueError, ServerUnavailable
from ..signals import StopFlag, handling_stop_signals
from .access import private_folder, private_umask
from .embedded import EmbeddedServer, start_server
from .folder import DataFolder
from .lifecycle import DEFAULT_IDLE_TIMEOUT, START_TIMEOUT
from .peers import count_connections
from .records import (
    BUSY_TIMEOUT,
    answers,
    find_running,
    hold_folder,
    remove_info,
    start_lock,
    write_info,
)

log = logging.getLogger("mjq_notebook.server")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def serve(
    folder: str | os.PathLike,
    *,
    port: int = 0,
    prefer_port: int = 0,
    idle_timeout: float | None = None,
    take_lock: bool = False,
    on_ready: Callable[[EmbeddedServer], None] | None = None,
) -> str:
    """Run the server for ``folder`` in this process until SIGTERM/SIGINT, or until no client
    has been connected for ``idle_timeout`` seconds (None or 0: never). Records it in the URI
    file once it answers, removes the file at exit. Returns why it stopped.

    ``take_lock`` (the foreground ``mjq serve``): hold the start lock while starting, and
    refuse when a live server already serves the folder. A process that ``ensure_server``
    spawned must not: its parent holds that lock while waiting for it.
    """
    private_umask()  # WiredTiger's files, the log, the URI file: this user's only
    with private_folder(folder) as opened:
        return _serve(opened, port, prefer_port, idle_timeout, take_lock, on_ready)


def _serve(
    folder: DataFolder,
    port: int,
    prefer_port: int,
    idle_timeout: float | None,
    take_lock: bool,
    on_ready: Callable[[EmbeddedServer], None] | None,
) -> str:
    stop = StopFlag()
    reason = ["stopped by signal"]
    with handling_stop_signals(stop.set):
        lock = start_lock(folder, START_TIMEOUT + 10) if take_lock else contextlib.nullcontext()
        with lock:
            running = find_running(folder) if take_lock else None
            if running is not None:
                raise JobQueueError(
                    f"a server already serves {folder.path} at {running.uri} (pid "
                    f"{running.pid}); use it, or stop it first with `mjq serve --stop`"
                )
            hold_folder(folder)  # for as long as this server runs: proves the URI file's pid
            if not port and prefer_port >= 1024 and _port_free(prefer_port):
                port = prefer_port
            server = start_server(folder, port=port)
            started = time.time()
            if not answers(server.address, BUSY_TIMEOUT):
                server.stop()
                raise ServerUnavailable(f"the server at {server.address} does not answer")
            write_info(folder, server.address, os.getpid(), started)
        log.info("serving %s at %s (pid %d)", folder.path, server.address, os.getpid())
        try:
            if on_ready is not None:
                on_ready(server)
            _run(server, stop, idle_timeout, reason)
        finally:
            # under the start lock (if we get it soon): a connect() arriving now waits, then
            # starts a new server once this one has let go of the folder
            with contextlib.ExitStack() as stack:
                with contextlib.suppress(ServerUnavailable):
                    stack.enter_context(start_lock(folder, 10))
                remove_info(folder, os.getpid())
                server.stop()  # flushes the data (WiredTiger checkpoint)
    log.info("stopped (%s)", reason[0])
    return reason[0]


def _run(server: EmbeddedServer, stop: StopFlag, idle_timeout: float | None, reason: list) -> None:
    poll = min(1.0, idle_timeout / 4) if idle_timeout else 3600.0
    last_client = time.monotonic()
    while not stop.wait(poll):
        if not idle_timeout:
            continue
        connections = count_connections(server.port, server.uri)
        now = time.monotonic()
        if connections is None or connections > 0:
            last_client = now  # can't count: never stop for idleness
        elif now - last_client >= idle_timeout:
            reason[0] = f"no client for {idle_timeout:g}s"
            return


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mjq_notebook.server",
        description="Run the shared embedded MongoDB server (SecantusDB) for a data folder.",
    )
    parser.add_argument("--path", required=True, help="data folder")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    parser.add_argument(
        "--prefer-port", type=int, default=0, help="use this port if it is free (else any)"
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=DEFAULT_IDLE_TIMEOUT,
        help=f"stop after this many seconds with no client (0: never; "
        f"default {DEFAULT_IDLE_TIMEOUT:g})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        serve(
            args.path,
            port=args.port,
            prefer_port=args.prefer_port,
            idle_timeout=args.idle_timeout or None,
        )
    except JobQueueError as exc:
        log.error("%s", exc)
        return 1
    return 0
