"""The real ``mjq`` command and workers in processes of their own, as a user runs them, and
cleaning up the processes a test started."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from .servers import NO_URI

HANDLERS_DIR = Path(__file__).parent  # `mjq work handlers:<name>` imports handlers.py here


def run_mjq(*args, uri=None, env=None, cwd=None, timeout=120, stdin=None):
    """The real ``mjq`` command in a process of its own (this checkout's package, as the
    tests import it), against ``uri``; ``env`` adds to (or, with None values, removes from)
    the environment."""
    env = {**os.environ, **({"MJQ_MONGODB_URI": uri} if uri else {}), **(env or {})}
    env = {key: value for key, value in env.items() if value is not None}
    return subprocess.run(
        [sys.executable, "-m", "mjq_notebook.cli", *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_mjq(*args, uri=None, env=None, cwd=None):
    """The real ``mjq`` command started in a process (and session) of its own, against ``uri``
    (``env`` as for ``run_mjq``), its output piped as text; the caller ends it."""
    env = {**os.environ, **({"MJQ_MONGODB_URI": uri} if uri else {}), **(env or {})}
    env = {key: value for key, value in env.items() if value is not None}
    return subprocess.Popen(
        [sys.executable, "-m", "mjq_notebook.cli", *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def embedded_mjq(*args: str, cwd: Path | str = "/") -> subprocess.CompletedProcess:
    """``mjq`` with no server named: it uses (or starts) the embedded server of
    $MJQ_DATA_DIR, the test's own."""
    return run_mjq(*args, env=NO_URI, cwd=cwd)


def start_worker(uri, db, handler, log, *extra, sleep="0.01"):
    """A real ``mjq work handlers:<handler>`` process on ``db`` (support/handlers.py),
    logging the jobs it runs to ``log``; its output (stdout and stderr) in ``.stdout``."""
    env = {**os.environ, "MJQ_MONGODB_URI": uri, "MJQ_TEST_LOG": str(log), "MJQ_TEST_SLEEP": sleep}
    return subprocess.Popen(
        [sys.executable, "-m", "mjq_notebook.cli", "work", f"handlers:{handler}", "--db", db.name,
         *extra],
        cwd=HANDLERS_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def read_log(log: Path) -> list[list[str]]:
    """The handlers' log: ``[job id, pid, attempt, ...]`` a job run; empty before the first."""
    if not log.exists():
        return []
    return [line.split() for line in log.read_text().splitlines()]


def stop_processes(processes: list[subprocess.Popen], grace: float = 20) -> None:
    """SIGTERM each process still running, then wait ``grace`` seconds for each; one that
    has not ended by then is killed."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def kill_groups(processes: list[subprocess.Popen]) -> None:
    """Kill each process still running, with its process group (its own session)."""
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


class MjqTail:
    """A real ``mjq tail`` process on ``db`` whose output lines are collected as they come;
    ``stop()`` sends Ctrl-C (or another signal) and returns (exit status, stderr)."""

    def __init__(self, uri, db, *extra):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mjq_notebook.cli", "tail", "--db", db.name, *extra],
            env={**os.environ, "MJQ_MONGODB_URI": uri},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(
            target=lambda: self.lines.extend(self.process.stdout), daemon=True
        )
        self._reader.start()

    def printed(self, *words: str) -> bool:
        """Whether a line printed so far has every one of ``words``."""
        return any(all(w in line for w in words) for line in list(self.lines))

    def stop(self, signum: int = signal.SIGINT, timeout: float = 30) -> tuple[int, str]:
        """Send ``signum`` (Ctrl-C: mjq exits quietly with 130); a tail still running
        ``timeout`` seconds later is killed, and TimeoutExpired raised."""
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise
        self._reader.join(10)
        return code, self.process.stderr.read()
