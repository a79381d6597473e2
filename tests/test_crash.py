"""The embedded server killed with SIGKILL, as the OOM killer or a power cut would: nothing it
acknowledged is lost, and it comes back by itself for the workers, publishers and live views
that use it. Real processes, real server, real ``kill -9``."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mjq_notebook import JobQueue, connect
from mjq_notebook.live.watch import Watcher
from mjq_notebook.server import (
    ensure_server,
    find_running,
    pid_alive,
    read_info,
    start_lock,
)

from .support.processes import HANDLERS_DIR, kill_groups, read_log
from .support.servers import server_env, stop_servers
from .support.waiting import wait_for

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("MJQ_TEST_MONGODB_URI")), reason="kills the embedded server"
)

# Publishes until the file named by argv[2] exists, alternating pub and pub_many; appends
# the id of every job whose publish returned to argv[1], after it returned.
# Publishes until told to stop. Given a backlog (argv[4]), it holds the waiting jobs near that
# many: workers always have work, and it drains in seconds once publishing stops, however
# slowly they run.
PUBLISHER = """
import os, sys, time
from pymongo.errors import PyMongoError
from mjq_notebook import JobQueue, ServerUnavailable, connect
BACKLOG = int(sys.argv[4]) if len(sys.argv) > 4 else 0
q = JobQueue(connect(), sys.argv[3])
n = 0
with open(sys.argv[1], "a") as acked:
    while not os.path.exists(sys.argv[2]):
        try:
            waiting = {"status": "waiting"}
            if BACKLOG and q.collection.count_documents(waiting, limit=BACKLOG) >= BACKLOG:
                time.sleep(0.1)
                continue
        except PyMongoError:
            pass  # the server is away: the publish below says so
        try:
            ids = q.pub_many([{"n": n + i} for i in range(4)]) if n % 3 else [q.pub({"n": n})]
        except ServerUnavailable:
            time.sleep(0.05)
            continue
        acked.write("".join(f"{i}\\n" for i in ids))
        acked.flush()
        n += len(ids)
"""


@pytest.fixture
def folder():
    """The test's data folder with its shared server started; every server of it is killed
    at the end (by pid, never by name)."""
    path = Path(os.environ["MJQ_DATA_DIR"])
    ensure_server(path)
    yield path
    stop_servers(path)


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []

    def start(*argv: str, cwd: Path | None = None, **env: str) -> subprocess.Popen:
        """``python *argv`` with no URI: it finds the embedded server of $MJQ_DATA_DIR."""
        process = subprocess.Popen(
            [sys.executable, *argv],
            cwd=cwd,
            env={**server_env(), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield start
    kill_groups(started)


def kill_server(folder: Path) -> int:
    """``kill -9`` the folder's server; returns its pid once it is gone."""
    info = read_info(folder)
    assert info is not None and pid_alive(info.pid)
    os.kill(info.pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(info.pid), 10, "the killed server to go")
    return info.pid


def back_again(folder: Path, old_pid: int, timeout: float = 30) -> float:
    """Seconds until a new server answers for the folder, started by a client, not us."""
    started = time.monotonic()
    wait_for(
        lambda: (info := find_running(folder)) is not None and info.pid != old_pid,
        timeout,
        "a client to start the server again",
    )
    return time.monotonic() - started


def acked_ids(path: Path) -> set[str]:
    return set(path.read_text().split()) if path.exists() else set()


def test_every_publish_that_returned_survives_a_kill_9(folder, processes, tmp_path):
    acked, stop = tmp_path / "acked", tmp_path / "stop"
    publisher = processes("-c", PUBLISHER, str(acked), str(stop), "crash")
    wait_for(lambda: len(acked_ids(acked)) >= 150, 60, "150 acknowledged publishes")
    killed = kill_server(folder)
    before = acked_ids(acked)  # everything acknowledged before the kill (and maybe a few after)
    back_again(folder, killed)  # the publisher's client started it again
    count = len(acked_ids(acked))
    wait_for(lambda: len(acked_ids(acked)) > count + 20, 60, "publishing to go on")
    stop.touch()
    out, _ = publisher.communicate(timeout=60)
    assert publisher.returncode == 0, out
    q = JobQueue(connect(), "crash")
    try:
        stored = {str(doc["_id"]) for doc in q.collection.find({}, {"_id": 1})}
        lost = q.counts()["lost"]
    finally:
        q.db.client.close()
    assert before <= stored, f"{len(before - stored)} acknowledged jobs lost"
    assert acked_ids(acked) <= stored
    assert lost == 0


def test_publishes_acknowledged_right_before_a_kill_9_survive_it(folder):
    """Deterministic, where a kill at a random moment is not: the kill follows the last
    acknowledgement within a millisecond, before a server that does not sync each commit
    writes out its log (every 100 ms or so: it loses the jobs acknowledged since). Twice, so
    a log write that happens to fall in that millisecond can't hide it."""
    acked = set()
    for burst in range(2):
        q = JobQueue(connect(), "burst")
        try:
            acked |= {q.pub({"burst": burst, "n": n}) for n in range(20)}
            kill_server(folder)
        finally:
            q.db.client.close()
    q = JobQueue(connect(), "burst")  # starts the server again
    try:
        stored = {doc["_id"] for doc in q.collection.find({}, {"_id": 1})}
    finally:
        q.db.client.close()
    assert len(acked) == 40
    assert acked <= stored, f"{len(acked - stored)} of 40 acknowledged jobs lost"


@pytest.mark.timeout(600, func_only=True)  # its setup may wait for the serial tests
@pytest.mark.soak
def test_soak_kill_9_again_and_again_while_workers_work(folder, processes, tmp_path):
    """Six kills in about a minute, with two `mjq work` processes, a publisher and a live
    dashboard: every acknowledged job finishes, none is lost, the counts are exact, history
    has one row per job, and the dashboard says "reconnecting" and comes back each time."""
    kills = 6
    acked, stop, ran = tmp_path / "acked", tmp_path / "stop", tmp_path / "ran.log"
    publisher = processes("-c", PUBLISHER, str(acked), str(stop), "soak", "60")
    # a short lease: a job whose claim was lost with a killed server comes back soon
    work = ("-m", "mjq_notebook.cli", "work", "handlers:record", "--queue", "soak", "--lease", "5")
    workers = [processes(*work, cwd=HANDLERS_DIR, MJQ_TEST_LOG=str(ran)) for _ in range(2)]
    q = JobQueue(connect(), "soak")
    dashboard = q.dashboard()
    states: list[str] = []
    subscription = Watcher.of(q).subscribe(lambda s: states.append(s.state))
    outages = []
    started = time.monotonic()
    try:
        for _ in range(kills):
            wait_for(lambda: len(read_log(ran)) > len(outages) * 40 + 20, 60, "work to flow")
            seen = len(states)
            # Holding the start lock keeps the server down, as a slow restart would, for
            # longer than connect()'s clients wait for a server (5 s): the dashboard must
            # say so. (A quick restart goes unseen: reads wait for the server to be back.)
            with start_lock(folder, 10):
                killed = kill_server(folder)
                time.sleep(6)
                newest = max(acked_ids(acked))
            outages.append(back_again(folder, killed))
            wait_for(lambda s=seen: "reconnecting" in states[s:], 30, "the dashboard to say so")
            wait_for(lambda: states[-1] == "live", 30, "the dashboard to come back")
            wait_for(
                lambda n=newest: str(Watcher.of(q).snapshot.jobs[0].id) > n,
                30,
                "the dashboard to show jobs published after the restart",
            )
        killing = time.monotonic() - started
        stop.touch()
        out, _ = publisher.communicate(timeout=60)
        assert publisher.returncode == 0, out
        ids = acked_ids(acked)

        def all_done() -> bool:
            counts = q.counts()
            return counts["waiting"] == 0 and counts["working"] == 0

        wait_for(all_done, 240, "the workers to finish every job")
    finally:
        subscription.close()
        dashboard.close()
    for process in workers:
        process.send_signal(signal.SIGTERM)
    outputs = [process.communicate(timeout=60)[0] for process in workers]
    assert all(process.returncode == 0 for process in workers), outputs
    for out in outputs:  # each says so once per outage it met, not once per retry
        assert out.count("MongoDB unreachable") <= kills, out

    history = {str(doc["_id"]): doc["status"] for doc in q.history_collection.find()}
    assert ids <= set(history), f"{len(ids - set(history))} acknowledged jobs never finished"
    assert set(history.values()) == {"done"}
    assert q.collection.count_documents({"status": {"$in": ["waiting", "working"]}}) == 0
    counts = q.counts()
    assert counts == {
        "waiting": 0,
        "working": 0,
        "done": len(history),
        "failed": 0,
        "cancelled": 0,
        "lost": 0,
    }
    runs = collections.Counter(job_id for job_id, *_ in read_log(ran))
    assert ids <= set(runs), "an acknowledged job never ran"
    # at least once: a job runs again only when its finish was lost with a killed server
    assert sum(n - 1 for n in runs.values()) <= 2 * kills * 2, runs.most_common(5)
    assert max(outages) < 10, outages
    assert killing < 120
    q.db.client.close()
    print(
        f"\nsoak: {kills} kills in {killing:.0f} s; {len(ids)} publishes acknowledged, "
        f"{len(history)} jobs done (lost 0), {sum(n > 1 for n in runs.values())} ran twice; "
        f"back {min(outages):.1f}-{max(outages):.1f} s after each restart was allowed"
    )
