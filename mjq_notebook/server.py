"""The shared embedded server: one SecantusDB process per data folder.

Every kernel, CLI command and worker that uses the folder finds and shares it, and it outlives
the process that started it (a kernel restart must not take the database away from the other
notebooks and workers). ``connect()`` with no URI calls :func:`ensure_server`, which starts it
when no live server answers for the folder, as

    python -m mjq_notebook.server --path DIR [--port N] [--idle-timeout S]

Bookkeeping, all in the data folder:

``mjq-server.uri``
    uri, pid and start time (unix seconds), one a line. Written atomically once the server
    accepts connections, removed when it exits. A file whose pid is gone, or whose server
    does not answer a ping, is stale and is replaced by the next server.
``mjq-server.lock``
    ``flock``-ed while a process checks for and starts a server, and while a server shuts
    down, so processes racing to start one end up with one.
``mjq-server.log``
    the detached server's output.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pymongo import monitoring

from .access import credentials_for, private_folder, private_open, private_umask
from .connection import URI_FILE, EmbeddedServer, _start_server, client_for
from .errors import JobQueueError, ServerUnavailable

LOCK_FILE = "mjq-server.lock"
LOG_FILE = "mjq-server.log"
IDLE_ENV = "MJQ_SERVER_IDLE_TIMEOUT"
# A background server stops after this long with no client connected. Every open MongoClient
# (each kernel that called connect(), each worker, each live widget) keeps connections open,
# so "no client" means every user of the folder has gone: a restarted kernel that re-runs its
# cells within the hour, or a coffee break, finds the server still warm, while servers of
# folders nobody uses any more don't pile up for days (each holds memory, and on Binder/
# JupyterHub the pod's). Starting a fresh one costs only ~1-2 s, so an hour is plenty.
DEFAULT_IDLE_TIMEOUT = 3600.0
START_TIMEOUT = 15.0  # how long connect() waits for a new server to answer
PING_TIMEOUT = 1.0  # a live server answers a ping within this
BUSY_TIMEOUT = 5.0  # ...unless busy: a second, longer chance before it counts as gone
REVIVE_PAUSE = 1.0  # a client tries to start a crashed server again at most this often
_LOG_LIMIT = 1 << 20  # the log starts afresh when a server starts and it is over 1 MiB

log = logging.getLogger("mjq_notebook.server")


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


# -- the URI file ---------------------------------------------------------------------------


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
    path = Path(folder) / URI_FILE
    tmp = path.with_name(f".{URI_FILE}.{pid}.tmp")
    with private_open(tmp, "w") as file:
        file.write(f"{uri}\n{pid}\n{started:.3f}\n")
    os.replace(tmp, path)


def remove_info(folder: str | os.PathLike, pid: int) -> None:
    """Remove the URI file if it still records ``pid`` (never a newer server's)."""
    info = read_info(folder)
    if info is not None and info.pid == pid:
        with contextlib.suppress(OSError):
            (Path(folder) / URI_FILE).unlink()


# -- is it alive? ----------------------------------------------------------------------------


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


# -- starting and stopping --------------------------------------------------------------------


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


def idle_timeout_default() -> float:
    """``$MJQ_SERVER_IDLE_TIMEOUT`` (seconds, 0 = never), else DEFAULT_IDLE_TIMEOUT."""
    try:
        return float(os.environ.get(IDLE_ENV) or DEFAULT_IDLE_TIMEOUT)
    except ValueError:
        return DEFAULT_IDLE_TIMEOUT


def ensure_server(
    folder: str | os.PathLike,
    *,
    idle_timeout: float | None = None,
    timeout: float = START_TIMEOUT,
) -> ServerInfo:
    """The live shared server for ``folder``, started as a detached process if none answers.

    Racing callers (processes or threads) serialize on the folder's start lock: the first
    starts the server, the others then find it. A recorded server that has gone away is
    replaced by a new one on the same folder (so on the same data), on the same port when
    that is free, so clients of the old one reconnect to the new one by themselves.
    """
    folder = private_folder(folder)
    running = find_running(folder)
    if running is not None:
        return running
    with start_lock(folder, timeout + BUSY_TIMEOUT + 10):
        info = read_info(folder)
        alive = info is not None and pid_alive(info.pid)
        if alive and (answers(info.uri, PING_TIMEOUT) or answers(info.uri, BUSY_TIMEOUT)):
            return info  # started meanwhile by the process we waited for, or just busy
        if info is not None and not alive:
            log.warning(
                "the embedded server for %s (pid %d) ended without stopping (killed or "
                "crashed); starting it again at %s",
                folder,
                info.pid,
                info.uri,
            )
        credentials_for(folder)  # made here, once, before the server and its clients read it
        # alive but silent: start anyway; if it still holds the folder, the new server
        # fails to open it and the error below names that pid
        port = info.port if info is not None else 0
        idle = idle_timeout_default() if idle_timeout is None else idle_timeout
        process = _spawn(folder, idle, port)
        return _wait_ready(folder, process, timeout, stale=info)


def _spawn(folder: Path, idle_timeout: float, prefer_port: int) -> subprocess.Popen:
    log_path = folder / LOG_FILE
    with contextlib.suppress(OSError):
        if log_path.stat().st_size > _LOG_LIMIT:
            log_path.unlink()
    command = [sys.executable, "-m", "mjq_notebook.server", "--path", str(folder)]
    command += ["--idle-timeout", f"{idle_timeout:g}"]
    if prefer_port:
        command += ["--prefer-port", str(prefer_port)]
    # importable even when this package is not installed but run from a source checkout
    package_parent = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    with private_open(log_path, "ab") as output:
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # not in our process group: a kernel restart kills that
        )
    # reap it when it exits (idle stop, --stop), so it never lingers as a zombie of ours
    threading.Thread(target=process.wait, name="mjq-server-reaper", daemon=True).start()
    return process


def _wait_ready(
    folder: Path, process: subprocess.Popen, timeout: float, stale: ServerInfo | None
) -> ServerInfo:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = read_info(folder)
        if info is not None and info.pid == process.pid and answers(info.uri):
            return info
        if process.returncode is not None:  # set by the reaper thread
            holder = ""
            if stale is not None and pid_alive(stale.pid):
                holder = f" Process {stale.pid} still holds it but does not answer at "
                holder += f"{stale.uri}: stop it (kill {stale.pid}) and try again."
            raise ServerUnavailable(
                f"the embedded server for {folder} exited at start (code "
                f"{process.returncode}): {_log_tail(folder)}.{holder}"
            )
        time.sleep(0.05)
    with contextlib.suppress(OSError):
        process.terminate()  # never leave a server behind that nobody can find
    raise ServerUnavailable(
        f"the embedded server for {folder} did not answer within {timeout:g}s; "
        f"see {folder / LOG_FILE}"
    )


def _log_tail(folder: Path, lines: int = 1) -> str:
    try:
        text = (folder / LOG_FILE).read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(line.strip() for line in text[-lines:]) or "empty log"


def stop_server(folder: str | os.PathLike, timeout: float = 30.0) -> ServerInfo | None:
    """Stop the live server of ``folder`` (SIGTERM: it flushes its data and removes its URI
    file) and wait until it has exited. Returns what it was; None when none ran."""
    folder = Path(folder).resolve()
    info = read_info(folder)
    if info is None or not pid_alive(info.pid):
        return None
    if not answers(info.uri, BUSY_TIMEOUT):
        # a reused pid, or a hung server: we don't signal what we can't identify
        raise JobQueueError(
            f"process {info.pid} recorded for {folder} does not answer at {info.uri}; "
            f"not stopping it (if it is a hung mjq server: kill {info.pid})"
        )
    os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(info.pid) or _records(folder, info.pid):
        if time.monotonic() > deadline:
            raise JobQueueError(f"the server (pid {info.pid}) did not stop within {timeout:g}s")
        time.sleep(0.05)
    return info


def _records(folder: Path, pid: int) -> bool:
    info = read_info(folder)
    return info is not None and info.pid == pid


class Revive(monitoring.ServerHeartbeatListener):
    """A client's heartbeat listener that starts its folder's server again when a heartbeat
    fails because the server died without stopping (its URI file still names a pid that is
    gone: ``kill -9``, the OOM killer). A server stopped on purpose removed that file and
    stays stopped. The start runs in a thread of its own, not on pymongo's monitor thread,
    at most every REVIVE_PAUSE per client; racing clients of all processes end up with one
    new server (``ensure_server``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._next = 0.0  # monotonic time of the next allowed attempt

    def started(self, event: monitoring.ServerHeartbeatStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.ServerHeartbeatSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.ServerHeartbeatFailedEvent) -> None:
        info = read_info(self.folder)
        if info is None or pid_alive(info.pid):
            return  # stopped on purpose, or alive and only slow to answer
        with self._lock:
            now = time.monotonic()
            if now < self._next:
                return
            self._next = now + REVIVE_PAUSE
        threading.Thread(target=self._revive, name="mjq-server-revive", daemon=True).start()

    def _revive(self) -> None:
        try:
            ensure_server(self.folder)
        except Exception as exc:  # the clients keep retrying; the next heartbeat tries again
            log.warning("could not start the embedded server again: %s", exc)


# -- counting clients ------------------------------------------------------------------------


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


# -- the server process ------------------------------------------------------------------------


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
    folder = private_folder(folder)
    stop = threading.Event()
    reason = ["stopped by signal"]
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        lock = start_lock(folder, START_TIMEOUT + 10) if take_lock else contextlib.nullcontext()
        with lock:
            running = find_running(folder) if take_lock else None
            if running is not None:
                raise JobQueueError(
                    f"a server already serves {folder} at {running.uri} (pid {running.pid}); "
                    "use it, or stop it first with `mjq serve --stop`"
                )
            if not port and prefer_port >= 1024 and _port_free(prefer_port):
                port = prefer_port
            server = _start_server(folder, port=port)
            started = time.time()
            if not answers(server.address, BUSY_TIMEOUT):
                server.stop()
                raise ServerUnavailable(f"the server at {server.address} does not answer")
            write_info(folder, server.address, os.getpid(), started)
        log.info("serving %s at %s (pid %d)", folder, server.address, os.getpid())
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
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("stopped (%s)", reason[0])
    return reason[0]


def _run(
    server: EmbeddedServer, stop: threading.Event, idle_timeout: float | None, reason: list
) -> None:
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


if __name__ == "__main__":
    sys.exit(main())
