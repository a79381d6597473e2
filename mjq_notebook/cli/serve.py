"""``mjq serve``: the user's embedded server in the foreground, detached, its status, or
stopped (only a process proven to be that user's server for that folder is signalled)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..server import DATA_ENV, data_dir, mask_uri
from ..text import format_seconds


def cmd_serve(args: argparse.Namespace) -> int:
    from .. import server

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
    from .. import server

    info = server.read_info(folder)  # checks the folder as connect() does
    if info is None or not server.pid_alive(info.pid):
        print(f"mjq: no server runs for {folder}")
        return 1
    why = server.check_server(folder, info.pid)
    if why is not None:
        print(
            f"mjq: no server runs for {folder} (its URI file names process {info.pid}, which {why})"
        )
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
    print(f"  uptime:  {format_seconds(info.uptime)}")
    print(f"  clients: {clients}")
    return 0
