"""Start the shared server of a data folder when none answers, stop it, and start it again
when a client finds it crashed.

``connect()`` with no URI calls :func:`ensure_server`, which starts the server as a detached
process when no live one answers for the folder, as

    python -m mjq_notebook.server --path DIR [--port N] [--idle-timeout S]

It outlives the process that started it (a kernel restart must not take the database away
from the other notebooks and workers), and every kernel, command and worker of the folder
shares it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from pymongo import monitoring

from ..errors import JobQueueError, ServerUnavailable
from .access import credentials_for, private_folder, private_open
from .folder import DataFolder, held
from .records import (
    BUSY_TIMEOUT,
    LOG_FILE,
    PING_TIMEOUT,
    URI_FILE,
    ServerInfo,
    answers,
    find_running,
    pid_alive,
    read_info,
    server_check,
    start_lock,
)

IDLE_ENV = "MJQ_SERVER_IDLE_TIMEOUT"
# A background server stops after this long with no client connected. Every open MongoClient
# (each kernel that called connect(), each worker, each live widget) keeps connections open,
# so "no client" means every user of the folder has gone: a restarted kernel that re-runs its
# cells within the hour, or a coffee break, finds the server still warm, while servers of
# folders nobody uses any more don't pile up for days (each holds memory, and on Binder/
# JupyterHub the pod's). Starting a fresh one costs only ~1-2 s, so an hour is plenty.
DEFAULT_IDLE_TIMEOUT = 3600.0
START_TIMEOUT = 15.0  # how long connect() waits for a new server to answer
REVIVE_PAUSE = 1.0  # a client tries to start a crashed server again at most this often
_LOG_LIMIT = 1 << 20  # the log starts afresh when a server starts and it is over 1 MiB
log = logging.getLogger("mjq_notebook.server")


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
    with private_folder(folder) as opened:
        return _ensure(opened, idle_timeout, timeout)


def _ensure(folder: DataFolder, idle_timeout: float | None, timeout: float) -> ServerInfo:
    running = find_running(folder)
    if running is not None:
        return running
    with start_lock(folder, timeout + BUSY_TIMEOUT + 10):
        info = read_info(folder)
        ours = info is not None and server_check(folder, info.pid) is None
        if (
            info is not None
            and ours
            and (answers(info.uri, PING_TIMEOUT) or answers(info.uri, BUSY_TIMEOUT))
        ):
            return info  # started meanwhile by the process we waited for, or just busy
        if info is not None and not ours:
            log.warning(
                "the embedded server for %s (pid %d) ended without stopping (killed or "
                "crashed); starting it again at %s",
                folder.path,
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


def _spawn(folder: DataFolder, idle_timeout: float, prefer_port: int) -> subprocess.Popen:
    with contextlib.suppress(OSError):
        if folder.stat(LOG_FILE).st_size > _LOG_LIMIT:
            folder.unlink(LOG_FILE)
    command = [sys.executable, "-m", "mjq_notebook.server", "--path", str(folder.path)]
    command += ["--idle-timeout", f"{idle_timeout:g}"]
    if prefer_port:
        command += ["--prefer-port", str(prefer_port)]
    # importable even when this package is not installed but run from a source checkout
    package_parent = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    with private_open(folder, LOG_FILE, "ab") as output:
        process = subprocess.Popen(
            command,
            cwd=folder.path,  # checked; the server checks it again itself
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
    folder: DataFolder, process: subprocess.Popen, timeout: float, stale: ServerInfo | None
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
                f"the embedded server for {folder.path} exited at start (code "
                f"{process.returncode}): {_log_tail(folder)}.{holder}"
            )
        time.sleep(0.05)
    with contextlib.suppress(OSError):
        process.terminate()  # never leave a server behind that nobody can find
    raise ServerUnavailable(
        f"the embedded server for {folder.path} did not answer within {timeout:g}s; "
        f"see {folder.path / LOG_FILE}"
    )


def _log_tail(folder: DataFolder, lines: int = 1) -> str:
    try:
        text = folder.read_text(LOG_FILE).strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(line.strip() for line in text[-lines:]) or "empty log"


def stop_server(folder: str | os.PathLike, timeout: float = 30.0) -> ServerInfo | None:
    """Stop the live server of ``folder`` (SIGTERM: it flushes its data and removes its URI
    file) and wait until it has exited. Returns what it was; None when none ran. The folder
    is checked as ``connect()`` checks it, and the process its URI file names is signalled
    only when it is this user's server of the folder (``records.server_check``): else
    JobQueueError says why, and nothing is signalled."""
    with held(folder) as opened:
        info = None if opened is None else read_info(opened)
        if opened is None or info is None or not pid_alive(info.pid):
            return None
        why = server_check(opened, info.pid, command=True)
        if why is not None:
            raise JobQueueError(
                f"process {info.pid}, which {URI_FILE} in {opened.path} names, {why}: not "
                "signalled; no server of yours runs for that folder"
            )
        if not answers(info.uri, BUSY_TIMEOUT):
            raise JobQueueError(
                f"the server of {opened.path} (pid {info.pid}) does not answer at {info.uri}; "
                f"not stopping it (if it is hung: kill {info.pid})"
            )
        os.kill(info.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pid_alive(info.pid) or _records(opened, info.pid):
            if time.monotonic() > deadline:
                raise JobQueueError(f"the server (pid {info.pid}) did not stop within {timeout:g}s")
            time.sleep(0.05)
    return info


def check_server(folder: str | os.PathLike, pid: int) -> str | None:
    """None when ``pid`` is this user's server of ``folder`` (``records.server_check``);
    else why not, in a few words."""
    with held(folder) as opened:
        return "is not running" if opened is None else server_check(opened, pid)


def _records(folder: DataFolder, pid: int) -> bool:
    info = read_info(folder)
    return info is not None and info.pid == pid


class Revive(monitoring.ServerHeartbeatListener):
    """A client's heartbeat listener that starts its folder's server again when a heartbeat
    fails because the server died without stopping (its URI file still names a pid that is
    gone, or is no longer the folder's server: ``kill -9``, the OOM killer). A server
    stopped on purpose removed that file and stays stopped. The start runs in a thread of
    its own, not on pymongo's monitor thread, at most every REVIVE_PAUSE per client; racing
    clients of all processes end up with one new server (``ensure_server``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._next = 0.0  # monotonic time of the next allowed attempt

    def started(self, event: monitoring.ServerHeartbeatStartedEvent) -> None:
        pass

    def succeeded(self, event: monitoring.ServerHeartbeatSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.ServerHeartbeatFailedEvent) -> None:
        try:
            info = read_info(self.folder)
            gone = info is not None and check_server(self.folder, info.pid) is not None
        except JobQueueError:  # the folder can't be used now: the next connect() says why
            return
        if not gone:
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
