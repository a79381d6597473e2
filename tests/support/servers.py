"""The MongoDB server the tests run against, and the embedded servers they start in a data
folder of their own: finding a free port, an environment that names no server, stopping
every server of a folder."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import uuid
from pathlib import Path

from mjq_notebook.server import IDLE_ENV, pid_alive, stop_server

TEST_URI = os.environ.get("MJQ_TEST_MONGODB_URI")  # a real mongod; else SecantusDB
NO_URI = {"MJQ_MONGODB_URI": None, "MONGODB_URI": None}  # for run_mjq's env: no server named


# free_port() hands out the ports of this process's own block, below Linux's ephemeral range
# (32768-60999, where bind(0) and outgoing connections take theirs), each once in turn: a port
# one test found free, or left closed on purpose, is not handed to a test of another xdist
# worker (nor taken by a server on port 0) a moment later. gw0: 20100-20599, gw1: 20600-...
_PORT_BLOCK = 500
_FIRST_PORT = 20100 + _PORT_BLOCK * (int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:]) % 24)
_next_port = itertools.count(uuid.uuid4().int % _PORT_BLOCK)  # another run beside: elsewhere


def free_port() -> int:
    """A port nothing listens on now (a server to start there, or one to find closed)."""
    for _ in range(_PORT_BLOCK):
        port = _FIRST_PORT + next(_next_port) % _PORT_BLOCK
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port in {_FIRST_PORT}-{_FIRST_PORT + _PORT_BLOCK - 1}")


def server_env() -> dict[str, str]:
    """This process's environment with no server URI: a process started with it finds (or
    starts) the embedded server of $MJQ_DATA_DIR."""
    env = {k: v for k, v in os.environ.items() if k not in NO_URI}
    env[IDLE_ENV] = "120"  # a safety net: a server a broken test leaves behind stops by itself
    return env


def server_pids(folder: Path) -> list[int]:
    """Pids of the server processes (`python -m mjq_notebook.server`) of ``folder``."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            ours = b"mjq_notebook.server" in argv and str(folder).encode() in argv
            if ours and pid_alive(int(proc.name)):
                pids.append(int(proc.name))
    return pids


def stop_servers(folder: Path) -> None:
    """Stop the server of ``folder`` cleanly (no client starts it again), and kill by pid,
    never by name, any server of it that did not stop."""
    with contextlib.suppress(Exception):
        stop_server(folder, timeout=20)
    for pid in server_pids(folder):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def force_polling(monkeypatch, queue) -> None:
    """Make ``queue``'s change streams fail as on a standalone mongod, which has none, so
    the watcher falls back to polling."""
    from pymongo.errors import OperationFailure

    def no_change_streams(*args, **kwargs):
        raise OperationFailure("$changeStream is only supported on replica sets", code=40573)

    monkeypatch.setattr(queue.collection, "watch", no_change_streams)
