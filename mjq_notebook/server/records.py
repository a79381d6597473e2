"""What a data folder records about its server, so that every process finds the same one.

``mjq-server.uri``
    uri (no login), pid and start time (unix seconds), one a line. Written atomically once the
    server accepts connections, removed when it stops cleanly. A file whose pid is gone, or
    whose server does not answer a ping, is stale: a crash left it, and the next server
    replaces it.
``mjq-server.lock``
    ``flock``-ed while a process checks for and starts a server, and while a server shuts
    down, so processes racing to start one end up with one.
``mjq-server.log``
    the detached server's output.
``mjq-server.credentials``
    the server's login (see ``access.py``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ServerUnavailable
from .access import private_open, write_private
from .client import client_for

URI_FILE = "mjq-server.uri"  # written by a running embedded server so other processes find it
LOCK_FILE = "mjq-server.lock"
LOG_FILE = "mjq-server.log"
PING_TIMEOUT = 1.0  # a live server answers a ping within this
BUSY_TIMEOUT = 5.0  # ...unless busy: a second, longer chance before it counts as gone


@dataclass(frozen=True)
class ServerInfo:
    """What a server's URI file says: where it runs, its pid, when it started."""

    uri: str
    pid: int
    started: float
    path: Path

    @property
    def port(self) -> int:
        return int(self.uri.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])

    @property
    def uptime(self) -> float:
        return max(0.0, time.time() - self.started)


def read_info(folder: str | os.PathLike) -> ServerInfo | None:
    """The server recorded for ``folder``, alive or not; None when there is no record."""
    path = Path(folder) / URI_FILE
    try:
        lines = path.read_text().split()
        started = float(lines[2]) if len(lines) > 2 else path.stat().st_mtime
        return ServerInfo(lines[0], int(lines[1]), started, Path(folder).resolve())
    except (OSError, ValueError, IndexError):
        return None


def write_info(folder: str | os.PathLike, uri: str, pid: int, started: float) -> None:
    """Record a server atomically: readers see the old file or the whole new one."""
    write_private(Path(folder) / URI_FILE, f"{uri}\n{pid}\n{started:.3f}\n")


def remove_info(folder: str | os.PathLike, pid: int) -> None:
    """Remove the URI file if it still records ``pid`` (never a newer server's)."""
    info = read_info(folder)
    if info is not None and info.pid == pid:
        with contextlib.suppress(OSError):
            (Path(folder) / URI_FILE).unlink()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except (OSError, OverflowError):
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return not Path("/proc/self").exists()  # no /proc here: trust kill()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def answers(uri: str, timeout: float = PING_TIMEOUT) -> bool:
    """Whether a MongoDB server answers a ping at ``uri`` within ``timeout`` seconds."""
    try:
        client = client_for(uri, timeout=timeout)
    except ServerUnavailable:
        return False
    client.close()
    return True


def find_running(folder: str | os.PathLike, timeout: float = PING_TIMEOUT) -> ServerInfo | None:
    """The live server for ``folder``: its pid exists and it answers; else None."""
    info = read_info(folder)
    if info is not None and pid_alive(info.pid) and answers(info.uri, timeout):
        return info
    return None


@contextlib.contextmanager
def start_lock(folder: Path, timeout: float) -> Iterator[None]:
    """Hold the folder's exclusive start lock (``flock``; per open file, so also between
    threads of one process); ServerUnavailable if another holder keeps it ``timeout`` s."""
    with private_open(folder / LOCK_FILE, "a") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ServerUnavailable(
                        f"another process has been starting or stopping the embedded server "
                        f"for {folder} for over {timeout:g}s; see {folder / LOG_FILE}"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
