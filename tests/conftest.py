"""A real MongoDB wire server for every test: SecantusDB on a free port, or
``MJQ_TEST_MONGODB_URI`` (a real mongod). Each test gets a database of its own."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from mjq_notebook import JobQueue, embedded_server
from mjq_notebook.server import client_for, stop_server

TEST_URI = os.environ.get("MJQ_TEST_MONGODB_URI")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """For ``-n N --dist loadgroup`` (the README's test command): the browser tests run on one
    worker, one Chromium at a time as without xdist; the tests of a module that shares a
    module-scoped fixture (a JupyterLab, a kernel, a fault server) run on one worker, which
    sets it up once. Each worker has its own server (the session fixtures) and temp folders."""
    for item in items:
        if item.get_closest_marker("browser") or item.get_closest_marker("soak"):
            item.add_marker(pytest.mark.xdist_group("browser"))  # the soak never beside them
        elif any(
            definition.scope == "module"
            for definitions in item._fixtureinfo.name2fixturedefs.values()
            for definition in definitions
        ):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


@pytest.fixture(autouse=True)
def alone_if_serial(request, tmp_path_factory):
    """A test marked ``serial`` (a latency bound a busy CPU would break) runs with no test of
    another xdist worker beside it: it takes the run's lock exclusive, every other test takes
    it shared. Waiting for it, the others stop at a turnstile, so it can't starve."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    shared = tmp_path_factory.getbasetemp().parent  # the run's, above each worker's own
    serial = request.node.get_closest_marker("serial") is not None
    with (
        open(shared / "serial.turnstile", "a") as turnstile,
        open(shared / "serial.lock", "a") as lock,
    ):
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(lock, fcntl.LOCK_EX if serial else fcntl.LOCK_SH)
        if not serial:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        yield


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path, monkeypatch):
    """The embedded server a test starts (in its processes too) keeps its data in the test's
    own ``.mjq-data``, never in the user's data folder; tests of that default find it under
    ``$XDG_DATA_HOME``, also the test's own."""
    folder = tmp_path / ".mjq-data"
    monkeypatch.setenv("MJQ_DATA_DIR", str(folder))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("MJQ_SERVER_IDLE_TIMEOUT", "120")  # a server left behind goes soon
    yield
    with contextlib.suppress(Exception):  # and one left running now is stopped cleanly
        stop_server(folder, timeout=20)


@pytest.fixture(scope="session")
def server_uri():
    if TEST_URI:
        yield TEST_URI
        return
    with embedded_server(":memory:") as server:
        yield server.uri


@pytest.fixture(scope="session")
def client(server_uri):
    client = client_for(server_uri)
    yield client
    client.close()


@pytest.fixture
def db(client):
    name = f"mjq_test_{uuid.uuid4().hex[:10]}"
    yield client[name]
    client.drop_database(name)


@pytest.fixture
def queue(db):
    return JobQueue(db, lease=30, backoff=0.05)


@pytest.fixture(params=["auto", "polling"])
def queue_on_both_feeds(request, monkeypatch, db):
    """The queue as the server allows (change streams here), and with polling forced; a
    module takes it as its ``queue`` with ``queue = conftest.queue_on_both_feeds``."""
    q = JobQueue(db, lease=30, backoff=0.05)
    if request.param == "polling":
        force_polling(monkeypatch, q)
    return q


@pytest.fixture
def other(server_uri, queue):
    """The same queue through a second client: another kernel, as far as a view can tell."""
    second = client_for(server_uri)
    yield JobQueue(second[queue.db.name], name=queue.name, lease=30, backoff=0.05)
    second.close()


@pytest.fixture
def tail(queue):
    """A live tail of ``queue`` with 20 rows."""
    from mjq_notebook.notebook.widgets import Tail

    tail = Tail(queue, limit=20)
    wait_for(lambda: tail.table.state == "live", 10, "the tail to go live")
    yield tail
    tail.close()


def wait_for(predicate, timeout: float, what: str = "the condition") -> float:
    """Poll ``predicate`` until true; returns the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)
    return time.monotonic() - start


def mjq_threads() -> list[str]:
    """Threads of this package still running (pymongo's own come and go with its clients)."""
    return [t.name for t in threading.enumerate() if t.name.startswith("mjq-")]


def force_polling(monkeypatch, queue) -> None:
    """Make ``queue``'s change streams fail as on a standalone mongod, which has none, so
    the watcher falls back to polling."""
    from pymongo.errors import OperationFailure

    def no_change_streams(*args, **kwargs):
        raise OperationFailure("$changeStream is only supported on replica sets", code=40573)

    monkeypatch.setattr(queue.collection, "watch", no_change_streams)


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


def start_worker(uri, db, handler, log, *extra, sleep="0.01"):
    """A real ``mjq work handlers:<handler>`` process on ``db`` (tests/handlers.py), logging
    the jobs it runs to ``log``; its output (stdout and stderr) in ``.stdout``."""
    env = {**os.environ, "MJQ_MONGODB_URI": uri, "MJQ_TEST_LOG": str(log), "MJQ_TEST_SLEEP": sleep}
    return subprocess.Popen(
        [sys.executable, "-m", "mjq_notebook.cli", "work", f"handlers:{handler}", "--db", db.name,
         *extra],
        cwd=Path(__file__).parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


class MjqTail:
    """A real ``mjq tail`` process on ``db`` whose output lines are collected as they come;
    ``stop()`` sends Ctrl-C and returns (exit status, stderr)."""

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

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGINT)  # Ctrl-C: mjq exits quietly with 130
        code = self.process.wait(30)
        self._reader.join(10)
        return code, self.process.stderr.read()


NOBODY = pwd.getpwnam("nobody")

# Drops this Python process for good to uid nobody: real, effective and saved ids, and no
# supplementary groups. Code run through ``as_nobody`` imports what it needs first (the
# venv's Python lives under /root, which nobody may not enter), then calls drop_to_nobody().
DROP_TO_NOBODY = f"""
import os
import pwd
import encodings.idna  # noqa: F401  (imported lazily by socket code: not after the drop)

def drop_to_nobody():
    os.setgroups([])
    os.setgid({NOBODY.pw_gid})
    os.setuid({NOBODY.pw_uid})
    assert os.getresuid() == ({NOBODY.pw_uid},) * 3 and os.getresgid() == ({NOBODY.pw_gid},) * 3
"""


def as_nobody(code: str, *args: str, env=None, wait: bool = True, timeout: float = 60):
    """Run ``python -c code args`` in a child that calls ``drop_to_nobody()`` when it is ready
    to act as another local user of the machine. ``wait``: the CompletedProcess (stdout,
    stderr as text); else the running Popen."""
    command = [sys.executable, "-c", DROP_TO_NOBODY + code, *args]
    if not wait:
        return subprocess.Popen(command, cwd="/", env=env, stdin=subprocess.DEVNULL)
    return subprocess.run(
        command, cwd="/", env=env, capture_output=True, text=True, timeout=timeout
    )
