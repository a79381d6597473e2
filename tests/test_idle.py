"""The README's "Tidy" claims, with real server processes: the shared server stops by itself
after an hour with no client connected; ``MJQ_SERVER_IDLE_TIMEOUT=S`` (or ``--idle-timeout S``
with ``--detach``) sets that, 0 meaning never; ``mjq serve`` in the foreground never stops by
itself unless given ``--idle-timeout``.

An hour is not waited out: the default is checked as the setting the server runs with (its
command line), and the stop itself with a timeout of a second or two."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mjq_notebook import connect
from mjq_notebook.server import (
    DEFAULT_IDLE_TIMEOUT,
    IDLE_ENV,
    LOG_FILE,
    URI_FILE,
    answers,
    count_connections,
    ensure_server,
    find_running,
    idle_timeout_default,
    pid_alive,
    read_info,
)

from .support.processes import embedded_mjq as mjq
from .support.processes import kill_groups
from .support.servers import server_env
from .support.waiting import wait_for

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("MJQ_TEST_MONGODB_URI")), reason="needs the embedded server"
)

SHORT = 1.5  # seconds: the idle timeout the stop tests use
# The server looks every min(1 s, timeout / 4) and stops once no client has been connected
# for the timeout; a busy shared machine gets a generous margin on top.
STOPS_WITHIN = SHORT + 15


def _idle_env(value: str | None) -> dict[str, str]:
    env = server_env()
    env.pop(IDLE_ENV)
    if value is not None:
        env[IDLE_ENV] = value
    return env


def _argv(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")


def _idle_timeout_of(pid: int) -> float:
    argv = _argv(pid)
    return float(argv[argv.index("--idle-timeout") + 1])


def _stopped(data: Path, pid: int) -> bool:
    return not pid_alive(pid) and not (data / URI_FILE).exists()


def _stop_logged(data: Path, seconds: float) -> bool:
    return f"stopped (no client for {seconds:g}s)" in (data / LOG_FILE).read_text()


@pytest.fixture
def env_of_this_process(monkeypatch):
    """This process connects as a kernel would: no URI in the environment."""
    for name in ("MJQ_MONGODB_URI", "MONGODB_URI"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def popen():
    """Start a command (its own session); killed with its group at the end of the test."""
    started: list[subprocess.Popen] = []

    def start(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
        process = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        started.append(process)
        return process

    yield start
    kill_groups(started)


def test_by_default_the_shared_server_stops_after_an_hour_idle(data, env_of_this_process):
    env_of_this_process.delenv(IDLE_ENV)
    assert DEFAULT_IDLE_TIMEOUT == 3600  # the README's hour
    assert idle_timeout_default() == 3600
    server = ensure_server(data)  # what connect() starts
    assert _idle_timeout_of(server.pid) == 3600
    from mjq_notebook.server.daemon import _parser  # python -m mjq_notebook.server's default

    assert _parser().parse_args(["--path", str(data)]).idle_timeout == 3600


def test_mjq_server_idle_timeout_stops_it_once_no_client_is_left(data, env_of_this_process):
    env_of_this_process.setenv(IDLE_ENV, f"{SHORT:g}")
    db = connect()  # as a kernel does: starts the shared server
    db.command("ping")
    server = read_info(data)
    assert _idle_timeout_of(server.pid) == SHORT
    time.sleep(3 * SHORT)  # a client is connected: it stays however long that takes
    assert find_running(data) == server
    db.client.close()
    closed = time.monotonic()
    wait_for(lambda: _stopped(data, server.pid), STOPS_WITHIN, "the idle server to stop")
    print(f"\nstopped {time.monotonic() - closed:.1f} s after its last client closed")
    assert _stop_logged(data, SHORT)


def test_mjq_server_idle_timeout_0_never_stops_it(data, env_of_this_process):
    env_of_this_process.setenv(IDLE_ENV, "0")
    db = connect()
    db.command("ping")
    server = read_info(data)
    assert _idle_timeout_of(server.pid) == 0
    db.client.close()
    wait_for(lambda: count_connections(server.port) == 0, 10, "no client connected")
    time.sleep(4 * SHORT)  # a timeout of SHORT would have stopped it twice over
    assert pid_alive(server.pid) and answers(server.uri)
    assert read_info(data) == server


def test_detach_with_idle_timeout_stops_once_no_client_is_left(data, env_of_this_process):
    detach = mjq("serve", "--detach", "--idle-timeout", f"{SHORT:g}", cwd=data.parent)
    assert detach.returncode == 0, detach.stderr
    server = read_info(data)
    assert server is not None and _idle_timeout_of(server.pid) == SHORT
    wait_for(lambda: _stopped(data, server.pid), STOPS_WITHIN, "the idle server to stop")
    assert _stop_logged(data, SHORT)


def _serve(popen, data: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """``mjq serve`` in the foreground, with MJQ_SERVER_IDLE_TIMEOUT set short (for the
    background server only: the foreground one must not heed it); returns it and its address."""
    serve = popen(
        [sys.executable, "-m", "mjq_notebook.cli", "serve", *args],
        _idle_env(f"{SHORT:g}"),
        data.parent,
    )
    first = serve.stdout.readline()
    assert " at " in first, serve.stderr.read()
    return serve, first.split(" at ")[1].strip()


def test_a_foreground_serve_never_stops_by_itself(data, popen):
    serve, address = _serve(popen, data)
    time.sleep(4 * SHORT)  # no client at all, four times the timeout in the environment
    assert serve.poll() is None, serve.stderr.read()
    assert answers(address)
    serve.send_signal(signal.SIGINT)  # only a signal stops it, cleanly
    # a clean stop drains connections (<= 7 s) and checkpoints WiredTiger, which a machine
    # loaded by a parallel suite has made take over 30 s once: the bound is for a hang
    assert serve.wait(60) == 0
    assert not (data / URI_FILE).exists()


def test_a_foreground_serve_given_idle_timeout_stops_when_idle(data, popen):
    serve, _ = _serve(popen, data, "--idle-timeout", f"{SHORT:g}")
    started = time.monotonic()
    assert serve.wait(STOPS_WITHIN) == 0, serve.stderr.read()
    assert time.monotonic() - started >= SHORT * 0.9  # when idle, not at once
    assert not (data / URI_FILE).exists()
