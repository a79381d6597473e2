"""Who is connected to a server (the peer processes of its TCP connections): for its idle stop
and for ``mjq serve --status``. ``client.py`` makes this package's own client."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from ..errors import ServerUnavailable
from .client import client_for
from .records import PING_TIMEOUT


def _tcp_sockets() -> list[tuple[int, int, str, int]] | None:
    """(local port, remote port, state, inode) of every TCP socket of this network namespace,
    from /proc/net/tcp and tcp6; None where there is no /proc (not Linux)."""
    rows = []
    found = False
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as table:
                lines = table.readlines()[1:]
        except OSError:
            continue
        found = True
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            rows.append((int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16),
                         state, int(inode)))  # fmt: skip
    return rows if found else None


_ESTABLISHED = "01"


def count_connections(port: int, uri: str | None = None) -> int | None:
    """Client connections open to the server on ``port``: the server's ESTABLISHED TCP
    sockets, from /proc/net/tcp (no connection of our own, so nothing to subtract). Without
    /proc, asks the server (``currentOp``) through ``uri``, leaving out its own connections.
    None when neither works."""
    sockets = _tcp_sockets()
    if sockets is not None:
        return sum(1 for local, _, state, _ in sockets if local == port and state == _ESTABLISHED)
    if uri is None:
        return None
    return _count_by_current_op(uri)


_MONITOR_APP = "mjq-server-monitor"


def _count_by_current_op(uri: str) -> int | None:
    try:
        client = client_for(uri, timeout=PING_TIMEOUT, appname=_MONITOR_APP)
    except ServerUnavailable:
        return None
    try:
        ops = client.admin.command("currentOp", {"$all": True})["inprog"]
    except Exception:
        return None
    finally:
        client.close()
    connections = [o for o in ops if o.get("type") == "op"]
    return sum(1 for o in connections if _app_name(o) != _MONITOR_APP)


def _app_name(op: dict) -> str | None:
    application = (op.get("clientMetadata") or {}).get("application") or {}
    return application.get("name")


def client_pids(port: int) -> list[int]:
    """Pids of the processes (those we may inspect) with a connection open to ``port``."""
    sockets = _tcp_sockets() or []
    inodes = {
        f"socket:[{inode}]"
        for _, remote, state, inode in sockets
        if remote == port and state == _ESTABLISHED and inode
    }
    pids = []
    for proc in Path("/proc").glob("[0-9]*") if inodes else ():
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                pids.append(int(proc.name))
    return sorted(pids)
