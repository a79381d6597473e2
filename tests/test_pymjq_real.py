"""The real pymjq 1.2.0 beside this package on one queue, in processes of its own.

pymjq runs from a venv of its own (pymongo 3.13, built once into a cache folder) through
``tests/support/pymjq_driver.py``, which applies the two shims it needs on Python 3. Where pymjq
can't be installed the tests skip, but fail in CI (``CI=true``).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from bson import ObjectId

from mjq_notebook import DataLossWarning, JobQueue, SmallRingWarning, Worker
from mjq_notebook.analysis.timing import NegativeDurationWarning

from .support.waiting import wait_for

DRIVER = Path(__file__).parent / "support" / "pymjq_driver.py"
VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mjq-test-pymjq-venv"
REQUIREMENTS = ["pymjq==1.2.0", "pymongo==3.13.0"]
CHECK = "import importlib.util, pymongo; assert pymongo.version == '3.13.0'; " + (
    "assert importlib.util.find_spec('pymjq')"
)


@pytest.fixture(scope="session")
def pymjq_python() -> str:
    """The python of a venv with pymjq 1.2.0 and pymongo 3.13: built once, then reused (one
    xdist worker builds it while the others wait on the lock)."""
    python = VENV / "bin" / "python"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.with_name(f"{VENV.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _works(python):
            _build()
    if not _works(python):
        _unavailable(f"the venv {VENV} was built but has no working pymjq")
    return str(python)


def _build() -> None:
    """Build the venv in a folder of its own, then move it to ``VENV``."""
    building = VENV.with_name(f"{VENV.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True)
        pip = [str(building / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, *REQUIREMENTS], check=True, capture_output=True, timeout=600)
    except (subprocess.SubprocessError, OSError) as exc:
        shutil.rmtree(building, ignore_errors=True)
        output = getattr(exc, "stderr", b"") or b""
        _unavailable(f"can't install {' '.join(REQUIREMENTS)}: {exc} {output.decode()[-500:]}")
    shutil.rmtree(VENV, ignore_errors=True)
    building.rename(VENV)  # runs by python -m only, so a moved venv works


def _works(python: Path) -> bool:
    if not python.exists():
        return False
    return subprocess.run([str(python), "-c", CHECK], capture_output=True).returncode == 0


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"pymjq is needed in CI for these tests: {why}", pytrace=False)
    pytest.skip(why)


@pytest.fixture
def pymjq(pymjq_python, server_uri, db):
    """Run the driver on the test's database: ``pymjq("pub", 3)`` -> the ids it printed;
    ``pymjq("iterate", background=True)`` -> the process (killed at the end)."""
    started = []

    def run(command, count=0, *, background=False, tz="UTC"):
        argv = [pymjq_python, str(DRIVER), db.name, command, str(count)]
        env = {**os.environ, "MJQ_PYMJQ_URI": server_uri, "TZ": tz}
        if background:
            process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
            started.append(process)
            return process
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return _ids(done.stdout.splitlines())

    yield run
    for process in started:
        process.kill()
        process.wait(10)


def _ids(lines):
    """The job ids among a driver's lines (pymjq prints words of its own too)."""
    return [ObjectId(line.strip()) for line in lines if ObjectId.is_valid(line.strip())]


def _all_ids(q):
    ring = {doc["_id"]: doc for doc in q.collection.find()}
    history = {doc["_id"]: doc for doc in q.history_collection.find()}
    return ring, history


def _recount(q, published):
    """counts() done by hand: each job once, in its current state (unfinished in the ring,
    else its history row, else its finished document in the ring); lost: ours in neither."""
    ring, history = _all_ids(q)
    counts = dict.fromkeys(("waiting", "working", "done", "failed", "cancelled"), 0)
    for job_id in set(ring) | set(history):
        in_ring = ring.get(job_id)
        if in_ring is not None and in_ring["status"] in ("waiting", "working"):
            counts[in_ring["status"]] += 1
        else:
            counts[(history.get(job_id) or in_ring)["status"]] += 1
    counts["lost"] = len(set(published) - set(ring) - set(history))
    return counts


def test_jobs_of_both_kinds_are_claimed_in_publish_order(db, pymjq):
    theirs = pymjq("pub", 3)  # no priority field
    # ids order jobs to the second across publishers: ours come from a later second
    wait_for(lambda: ObjectId().generation_time > theirs[-1].generation_time, 5, "a new second")
    with pytest.warns(SmallRingWarning, match=r"q\.resize\(size_bytes=\d+, max_jobs=\d+\)"):
        q = JobQueue(db)  # pymjq made it: 100,000 bytes, about 333 jobs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        JobQueue(db)  # said once
    ours = q.pub_many([{"n": n} for n in range(3)])
    claimed = [q.next(timeout=5) for _ in range(6)]
    assert [job.id for job in claimed] == theirs + ours
    assert all(job["priority"] == 0 for job in claimed)


def test_pymjq_finishing_our_jobs_loses_none(db, pymjq):
    q = JobQueue(db)
    ids = q.pub_many([{"n": n} for n in range(100)])
    finished = pymjq("next", 99)  # pymjq's next(): waiting -> done, our fields kept
    assert len(finished) == 99
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataLossWarning)
        assert q.counts() == {
            "waiting": 1, "working": 0, "done": 99, "failed": 0, "cancelled": 0, "lost": 0
        }  # fmt: skip
        q.done(q.next(timeout=5))  # an ordinary finish of ours, which sweeps
        assert q.counts() == {
            "waiting": 0, "working": 0, "done": 100, "failed": 0, "cancelled": 0, "lost": 0
        }  # fmt: skip
    ring, history = _all_ids(q)
    assert set(ids) <= set(ring) | set(history)
    # pymjq's finishes went to history too, with the times it wrote; the ring keeps the
    # newest (and the last inserted, if another)
    assert len(ring) <= 2 and ids[-1] in ring
    assert set(history) >= set(ids) - set(ring) and len(history) >= 98
    by_pymjq = history[finished[-1]]
    assert by_pymjq["status"] == "done" and by_pymjq["ts"]["done"] is not None
    assert by_pymjq["attempts"] == 0 and by_pymjq["worker"] is None  # as pymjq left it


def test_two_pymjq_and_two_of_our_consumers_lose_no_record(db, pymjq):
    q = JobQueue(db, lease=30)
    ids = q.pub_many([{"n": n} for n in range(200)])
    consumers = [pymjq("iterate", background=True) for _ in range(2)]
    worker = Worker(q, lambda job: job.data["n"], concurrency=2).start()

    def unfinished():
        return q.collection.count_documents({"status": {"$in": ["waiting", "working"]}})

    try:
        wait_for(lambda: unfinished() == 0, 240, "every job finished")
    finally:
        worker.stop()
        assert worker.join(30)
        for process in consumers:
            process.kill()
            process.wait(10)
    ran_pymjq = sum(len(_ids(process.stdout)) for process in consumers)
    assert ran_pymjq > 0 and worker.stats.done > 0, "both kinds ran jobs"
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataLossWarning)
        assert q.counts() == _recount(q, ids)
        q._sweeper.sweep()  # pymjq's late writes swept too
        assert q.counts() == _recount(q, ids)
    ring, history = _all_ids(q)
    assert set(ids) <= set(ring) | set(history), "a record vanished"
    assert _recount(q, ids) == {
        "waiting": 0, "working": 0, "done": 200, "failed": 0, "cancelled": 0, "lost": 0
    }  # fmt: skip


def test_a_job_pymjq_left_working_comes_back_after_its_start_plus_the_lease(db, pymjq):
    [job_id] = pymjq("pub", 1)
    q = JobQueue(db, lease=2)
    holder = pymjq("hold", background=True)
    held = next(line.strip() for line in holder.stdout if ObjectId.is_valid(line.strip()))
    assert ObjectId(held) == job_id  # handed out, marked working: now kill its consumer
    holder.kill()  # its consumer dies: the job stays working, with no lease
    holder.wait(10)
    left = q.collection.find_one({"_id": job_id})
    assert left["status"] == "working" and "lease_until" not in left
    ran = []
    worker = Worker(q, lambda job: ran.append(job.id)).start()
    try:
        wait_for(lambda: q.history_collection.find_one({"_id": job_id}), 30, "the job done")
    finally:
        worker.stop()
        assert worker.join(30)
    assert ran == [job_id]
    row = q.history_collection.find_one({"_id": job_id})
    assert row["status"] == "done"
    pymjq_started = left["ts"]["started"]  # its naive local time: UTC in this process
    assert row["ts"]["started"] >= pymjq_started + dt.timedelta(seconds=2)


def test_naive_local_times_read_in_their_zone(db, pymjq):
    pymjq("pub", 3, tz="Asia/Tokyo")  # pymjq writes naive local times: UTC+9 here
    q = JobQueue(db, naive_tz="Asia/Tokyo")
    for _ in range(3):
        q.done(q.next(timeout=5))
    frame = q.history()
    assert len(frame) == 3
    assert (frame.wait_s >= 0).all() and (frame.wait_s < 600).all()
    assert (frame.total_s >= 0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", NegativeDurationWarning)
        assert frame.mjq.summary().loc["wait_s", "negative"] == 0

    as_utc = JobQueue(db).history()  # without the option: created reads 9 h late
    assert (as_utc.wait_s < -8 * 3600).all()
    with pytest.warns(NegativeDurationWarning, match="naive_tz="):
        table = as_utc.mjq.summary()
    assert table.loc["wait_s", "negative"] == 3 and table.loc["wait_s", "count"] == 0
    assert table.loc["wait_s", "mean"] != table.loc["wait_s", "mean"]  # NaN: not averaged in
    assert table.loc["run_s", "negative"] == 0 and table.loc["run_s", "count"] == 3
    assert ">negative</th>" in table._repr_html_()  # shown in a notebook too
    assert ">negative</th>" not in frame.mjq.summary()._repr_html_()  # only when some are
