"""What a data folder records about its server, so that every process finds the same one.

``mjq-server.uri``
    uri (no login), pid and start time (unix seconds), one a line. Written atomically once the
    server accepts connections, removed when it stops cleanly. A file whose pid is gone, or
    whose server does not answer a ping, is stale: a crash left it, and the next server
    replaces it.
``mjq-server.lock``
    ``flock``-ed while a process checks for and starts a server, and while a server shuts
    down, so processes racing to start one end up with one.
the folder itself
    ``flock``-ed by its server for as long as it runs: a pid the URI file names is taken for
    the folder's server only when that process holds this lock (:func:`server_check`).
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
from .access import private_open
from .client import client_for
from .folder import DataFolder, held, user_name

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


def read_info(folder: str | os.PathLike | DataFolder) -> ServerInfo | None:
    """The server recorded for ``folder``, alive or not; None when there is no record."""
    with held(folder) as opened:
        if opened is None:
            return None
        try:
            lines = opened.read_text(URI_FILE).split()
            started = float(lines[2]) if len(lines) > 2 else opened.stat(URI_FILE).st_mtime
            return ServerInfo(lines[0], int(lines[1]), started, opened.path)
        except (OSError, ValueError, IndexError):
            return None


def write_info(folder: DataFolder, uri: str, pid: int, started: float) -> None:
    """Record a server atomically: readers see the old file or the whole new one."""
    folder.write_private(URI_FILE, f"{uri}\n{pid}\n{started:.3f}\n")


def remove_info(folder: DataFolder, pid: int) -> None:
    """Remove the URI file if it still records ``pid`` (never a newer server's)."""
    info = read_info(folder)
    if info is not None and info.pid == pid:
        with contextlib.suppress(OSError):
            folder.unlink(URI_FILE)


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


def find_running(
    folder: str | os.PathLike | DataFolder, timeout: float = PING_TIMEOUT
) -> ServerInfo | None:
    """The live server for ``folder``: its pid is this user's process holding the folder's
    server lock, and it answers; else None."""
    with held(folder) as opened:
        info = None if opened is None else read_info(opened)
        if opened is None or info is None or server_check(opened, info.pid) is not None:
            return None
    return info if answers(info.uri, timeout) else None


def hold_folder(folder: DataFolder, timeout: float = BUSY_TIMEOUT) -> None:
    """Take the folder's server lock for as long as ``folder`` stays open (a server does, for
    its life); ServerUnavailable when another process keeps it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(folder.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:  # a server, or a moment's check by server_check()
            if time.monotonic() > deadline:
                raise ServerUnavailable(
                    f"another process serves {folder.path} (it holds the folder's lock)"
                ) from None
            time.sleep(0.05)


def server_check(folder: DataFolder, pid: int, *, command: bool = False) -> str | None:
    """None when process ``pid`` is this user's server of ``folder``: alive, this user's, and
    holding the folder's server lock (and, with ``command``, running ``mjq serve`` or
    ``python -m mjq_notebook.server --path FOLDER``, so a signal to it stops only a server);
    else why not, in a few words. A pid a file names is never taken on trust."""
    if not pid_alive(pid):
        return "is not running"
    owner = _process_uid(pid)
    if owner is not None and owner != os.geteuid():
        return f"belongs to {user_name(owner)}"
    if not _lock_held(folder):
        return "does not hold the folder's lock (no server has the folder open)"
    holders = _lock_holders(folder)
    if holders is not None and pid not in holders:
        return "does not hold the folder's lock (another process does)"
    if command:
        argv = _command_line(pid)
        if argv is None:
            return "can't be identified (its command line can't be read)"
        if not _is_server_command(argv, folder):
            return f"is not an mjq server of the folder (it runs {' '.join(argv)[:120]!r})"
    return None


def _lock_held(folder: DataFolder) -> bool:
    """Whether some process holds the folder's server lock (a probe that lets go at once)."""
    probe = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=folder.fd)
    try:
        fcntl.flock(probe, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(probe)  # also lets go of the probe's lock
    return False


def _lock_holders(folder: DataFolder) -> set[int] | None:
    """Pids holding a lock on the folder itself, from /proc/locks; None without it, or when
    no line names the folder (a file system whose device numbers /proc/locks spells
    otherwise: the inode alone is tried first)."""
    info = os.fstat(folder.fd)
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}"
    try:
        with open("/proc/locks") as locks:
            rows = [line.split() for line in locks if "->" not in line]
    except OSError:
        return None
    on_inode = [row for row in rows if len(row) > 5 and row[5].endswith(f":{info.st_ino}")]
    exact = [row for row in on_inode if row[5] == f"{device}:{info.st_ino}"]
    return {int(row[4]) for row in exact or on_inode} or None


def _process_uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        pass
    with contextlib.suppress(Exception):
        import psutil

        return psutil.Process(pid).uids().real
    return None


def _command_line(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        pass
    with contextlib.suppress(Exception):
        import psutil

        return psutil.Process(pid).cmdline()
    return None


def _is_server_command(argv: list[str], folder: DataFolder) -> bool:
    """``python -m mjq_notebook.server --path FOLDER`` (a detached server of this very
    folder), or the foreground ``mjq serve`` (``python -m mjq_notebook.cli serve``), whose
    folder the lock proves."""
    if "mjq_notebook.server" in argv and "--path" in argv:
        named = argv[argv.index("--path") + 1 :][:1]
        try:  # the same folder, however its path was spelled
            there, here = os.stat(named[0]), os.fstat(folder.fd)
        except (OSError, IndexError):
            return False
        return (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino)
    commands = [
        i for i, arg in enumerate(argv[:3]) if Path(arg).name == "mjq" or arg == "mjq_notebook.cli"
    ]
    return bool(commands) and "serve" in argv[commands[0] + 1 :]


@contextlib.contextmanager
def start_lock(folder: DataFolder | str | os.PathLike, timeout: float) -> Iterator[None]:
    """Hold the folder's exclusive start lock (``flock``; per open file, so also between
    threads of one process); ServerUnavailable if another holder keeps it ``timeout`` s."""
    with held(folder, create=True) as opened:
        assert opened is not None  # made when missing
        folder = opened
        with private_open(opened, LOCK_FILE, "a") as lock:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ServerUnavailable(
                            f"another process has been starting or stopping the embedded server "
                            f"for {folder.path} for over {timeout:g}s; see {folder.path / LOG_FILE}"
                        ) from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
