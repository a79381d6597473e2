"""The shared embedded server, with real processes: it outlives the kernel that started it,
racing starters get one server, `mjq serve --status/--stop`, and the idle stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from mjq_notebook import JobQueue
from mjq_notebook.server import (
    LOG_FILE,
    URI_FILE,
    count_connections,
    embedded_client,
    find_running,
    pid_alive,
    read_info,
)

from .support.processes import embedded_mjq as mjq
from .support.processes import kill_groups
from .support.servers import server_env, server_pids
from .support.waiting import wait_for

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("MJQ_TEST_MONGODB_URI")), reason="needs the embedded server"
)


@pytest.fixture
def spawn(data):
    """Start ``python -c code`` in the working folder (own session, like a Jupyter kernel);
    killed with its process group at the end of the test."""
    started: list[subprocess.Popen] = []

    def run(code: str, *args: str, stdin=subprocess.DEVNULL) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            cwd=data.parent,
            env=server_env(),
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield run
    kill_groups(started)


def _line(process: subprocess.Popen, expected: str) -> str:
    """Read ``process``'s output up to a line starting with ``expected``."""
    for line in process.stdout:
        if line.startswith(expected):
            return line
    raise AssertionError(f"exited without {expected!r}: {process.stderr.read()}")


KERNEL = """
import time
from mjq_notebook import JobQueue, connect
q = JobQueue(connect(), lease=30)
q.pub_many([{"by": "kernel", "n": n} for n in range(40)])
print("published", flush=True)
time.sleep(600)
"""

WORKER = """
import os, time
from mjq_notebook import Empty, JobQueue, connect
q = JobQueue(connect(), lease=30)
q.pub_many([{"by": "worker", "n": n} for n in range(20)])
done, extra = 0, False
while done < 80:
    if not extra and os.path.exists("kernel-killed"):
        q.pub_many([{"by": "after", "n": n} for n in range(20)])
        extra = True
    try:
        job = q.next(timeout=0.5)
    except Empty:
        continue
    time.sleep(0.01)
    q.done(job, result=job.data["n"])
    done += 1
    print("done", done, flush=True)
print("finished", done, flush=True)
"""


def test_the_server_outlives_the_kernel_that_started_it(data, spawn):
    kernel = spawn(KERNEL)
    _line(kernel, "published")
    server = read_info(data)
    assert server is not None and server.pid != kernel.pid and pid_alive(server.pid)

    worker = spawn(WORKER)
    _line(worker, "done 5")
    os.killpg(kernel.pid, signal.SIGKILL)  # Kernel > Restart kills the kernel's process group
    kernel.wait(10)
    (data.parent / "kernel-killed").touch()  # the worker publishes more after the kill

    out, err = worker.communicate(timeout=300)
    assert worker.returncode == 0, err
    assert out.splitlines()[-1] == "finished 80"
    assert read_info(data) == server and pid_alive(server.pid)  # the same server, still up

    queue = JobQueue(embedded_client(data)["job_queue"])
    counts = queue.counts()
    assert {k: counts[k] for k in ("waiting", "working", "done", "failed")} == {
        "waiting": 0,
        "working": 0,
        "done": 80,
        "failed": 0,
    }
    jobs = [job["data"] for job in queue.history_collection.find({}, {"data": 1})]
    assert sorted((d["by"], d["n"]) for d in jobs) == sorted(
        [("kernel", n) for n in range(40)]
        + [("worker", n) for n in range(20)]
        + [("after", n) for n in range(20)]
    )


RACER = """
import sys, time
from mjq_notebook.server import embedded_uri
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
print(embedded_uri(), flush=True)
"""


def test_processes_racing_to_start_it_get_one_server(data, spawn):
    start = time.time() + 3  # all three are imported and waiting by then
    racers = [spawn(RACER, str(start)) for _ in range(3)]
    uris = set()
    for racer in racers:
        out, err = racer.communicate(timeout=120)
        assert racer.returncode == 0, err
        uris.add(out.strip())
    assert len(uris) == 1
    assert server_pids(data) == [read_info(data).pid]
    assert (data / LOG_FILE).read_text().count(" serving ") == 1


HOLDER = """
import sys
from mjq_notebook import connect
db = connect()
db.command("ping")
print("connected", flush=True)
sys.stdin.readline()  # until the test closes our stdin
"""


def test_serve_status_and_stop(data, spawn):
    cwd = data.parent
    none = mjq("serve", "--status", cwd=cwd)
    assert none.returncode == 1 and "no server runs for" in none.stdout

    publisher = spawn("from mjq_notebook import JobQueue, connect; JobQueue(connect()).pub({})")
    assert publisher.wait(120) == 0
    server = find_running(data)
    assert server is not None  # it outlived the process that started it
    # our ping's client closes its monitor's connection soon after close(), not at once
    wait_for(lambda: count_connections(server.port) == 0, 10, "no connections")

    status = mjq("serve", "--status", cwd=cwd)
    assert status.returncode == 0, status.stderr
    assert server.uri in status.stdout and f"pid:     {server.pid}" in status.stdout
    assert f"folder:  {data}" in status.stdout
    assert re.search(r"uptime:  [\d.]+ (ms|s)\n", status.stdout)  # format_seconds
    assert "clients: 0 connections" in status.stdout
    foreground = mjq("serve", cwd=cwd)  # a second server on the folder is refused, clearly
    assert foreground.returncode == 1 and f"already serves {data}" in foreground.stderr

    holder = spawn(HOLDER, stdin=subprocess.PIPE)
    _line(holder, "connected")
    status = mjq("serve", "--status", cwd=cwd)
    assert re.search(
        rf"clients: [1-9]\d* connections from 1 process \(pid {holder.pid}\)", status.stdout
    ), status.stdout
    holder.stdin.close()
    assert holder.wait(30) == 0

    stop = mjq("serve", "--stop", cwd=cwd)
    assert stop.returncode == 0, stop.stderr
    assert f"stopped the server for {data} (pid {server.pid}" in stop.stdout
    assert not pid_alive(server.pid) and not (data / URI_FILE).exists()

    again = mjq("serve", "--stop", cwd=cwd)
    assert again.returncode == 0 and "no server runs" in again.stdout
    assert mjq("serve", "--status", cwd=cwd).returncode == 1

    # a new server on the same folder: the data is still there
    count = spawn(
        "from mjq_notebook import JobQueue, connect; print(JobQueue(connect()).queue_count())"
    )
    out, err = count.communicate(timeout=120)
    assert out.strip() == "1", err
    assert find_running(data).pid != server.pid


def test_a_killed_server_is_replaced_on_the_same_port_with_the_data(data, spawn):
    publisher = spawn("from mjq_notebook import JobQueue, connect; JobQueue(connect()).pub({})")
    assert publisher.wait(120) == 0
    old = read_info(data)
    os.kill(old.pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(old.pid), 10, "the server to die")

    count = spawn(
        "from mjq_notebook import JobQueue, connect; print(JobQueue(connect()).queue_count())"
    )
    out, err = count.communicate(timeout=120)
    assert out.strip() == "1", err  # the journal kept the job
    new = read_info(data)
    assert new.pid != old.pid and new.uri == old.uri  # clients of the old one reconnect


def test_it_stops_by_itself_when_idle(data, spawn):
    server = subprocess.Popen(
        [sys.executable, "-m", "mjq_notebook.server", "--path", str(data), "--idle-timeout", "2"],
        env=server_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: find_running(data) is not None, 30, "the server to answer")
        holder = spawn(HOLDER, stdin=subprocess.PIPE)
        _line(holder, "connected")
        time.sleep(5)  # a client connected: it stays
        assert server.poll() is None and (data / URI_FILE).exists()

        holder.stdin.close()
        assert holder.wait(30) == 0
        closed = time.monotonic()
        server.wait(15)
        assert time.monotonic() - closed < 10
        assert server.returncode == 0
        assert not (data / URI_FILE).exists()
        assert "no client for 2s" in server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
