"""Finished jobs leave the capped ring for history, so the ring holds only unfinished work."""

from __future__ import annotations

import datetime as dt
import threading
import time
import warnings

import pytest

from mjq_notebook import DataLossWarning, JobQueue

from .support.claims import assert_woken, claim_delays
from .support.servers import force_polling
from .support.views import status_of
from .support.waiting import wait_for


@pytest.fixture
def sweep_often(monkeypatch):
    """Sweep after every finish (the default: after 50 finishes, or a second after the last)."""
    from mjq_notebook.core.parts import sweep

    monkeypatch.setattr(sweep, "SWEEP_AFTER", 1)


def _work(q, n):
    for _ in range(n):
        q.done(q.next(timeout=2))


def test_the_ring_keeps_only_unfinished_jobs_and_the_newest(db, sweep_often):
    q = JobQueue(db, max_attempts=1)
    when = dt.datetime(2016, 1, 6, tzinfo=dt.timezone.utc)
    db.jobqueue.insert_one(  # finished by pymjq: no history row, so the sweep copies it there
        {"status": "done", "ts": {"created": when, "started": when, "done": when}, "data": 0}
    )
    q.pub_many([{"n": n} for n in range(6)])
    _work(q, 4)
    q.fail(q.next(), RuntimeError("no"))
    q.pub({"n": "last"})
    working = q.next()
    assert working.data == {"n": 5}
    ring = [doc["data"] for doc in db.jobqueue.find(sort=[("$natural", 1)])]
    assert ring == [{"n": 5}, {"n": "last"}]
    counts = q.counts()
    assert counts == {"waiting": 1, "working": 1, "done": 5, "failed": 1, "cancelled": 0, "lost": 0}
    frame = q.history()
    assert len(frame) == 8 and frame.id.is_unique
    assert frame.status.value_counts().to_dict() == {"done": 5, "waiting": 1, "working": 1,
                                                     "failed": 1, "cancelled": 0}  # fmt: skip
    newest = q.jobs(limit=10)
    assert [job.data for job in newest] == [{"n": "last"}, *({"n": n} for n in range(5, -1, -1)), 0]
    assert [job["status"] for job in newest] == ["waiting", "working", "failed", *["done"] * 5]


def test_a_job_another_program_finished_between_ours_goes_to_history_not_away(db, sweep_often):
    """A pymjq finish (no priority, no lease, naive local times) that is neither the first,
    the last nor the newest document: the sweep takes it out of the ring, into history."""
    q = JobQueue(db, max_attempts=1)
    q.pub({"n": 0})
    local = dt.datetime(2016, 1, 6, 12, 0)  # pymjq's datetime.now()
    foreign = db.jobqueue.insert_one(
        {"status": "done", "ts": {"created": local, "started": local, "done": local}, "data": 9}
    ).inserted_id
    q.pub({"n": 1})
    _work(q, 2)  # each finish sweeps
    assert db.jobqueue.find_one({"_id": foreign}) is None  # swept: the case is exercised
    row = q.history_collection.find_one({"_id": foreign})
    assert row is not None and (row["status"], row["data"]) == ("done", 9)
    assert q.counts() == {
        "waiting": 0, "working": 0, "done": 3, "failed": 0, "cancelled": 0, "lost": 0
    }  # fmt: skip
    assert sorted(q.history().status) == ["done"] * 3


def test_the_sweep_keeps_the_last_document_inserted_whatever_its_id(db, sweep_often):
    """The wake-up cursors stand on the last document inserted; a publisher with a slower
    clock (or another process within the same second) gives it an older id than the newest.
    The ring's natural order names it: SecantusDB ignores a $natural sort but not the hint."""
    from bson import ObjectId

    q = JobQueue(db)
    q.pub_many([{"n": n} for n in range(3)])
    when = dt.datetime(2016, 1, 6, tzinfo=dt.timezone.utc)
    late = ObjectId.from_datetime(when)  # older than every id of ours
    db.jobqueue.insert_one({"_id": late, "status": "done", "ts": {"created": when, "done": when}})
    _work(q, 3)  # each finish sweeps
    ring = [doc["_id"] for doc in db.jobqueue.find({}, {"_id": 1})]
    assert late in ring and len(ring) == 2  # the last inserted, and the newest id
    assert q.counts()["done"] == 4


def test_a_waiting_job_is_evicted_only_when_the_backlog_outgrows_the_ring(db, sweep_often):
    q = JobQueue(db, max_jobs=5, size_bytes=100_000)
    low = q.pub_many([{"low": n} for n in range(3)], priority=-1)  # wait behind everything
    for n in range(20):  # 20 jobs pass through a 5-job ring while the 3 wait
        q.pub({"n": n})
        q.done(q.next())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DataLossWarning
        counts = q.counts()
    assert counts == {
        "waiting": 3,
        "working": 0,
        "done": 20,
        "failed": 0,
        "cancelled": 0,
        "lost": 0,
    }
    assert [q.next().id for _ in range(3)] == low
    for n in range(7):  # a backlog of 7 in a ring of 5 does lose jobs when allowed, and says so
        q.pub({"backlog": n}, evict=True)
    with pytest.warns(DataLossWarning):
        assert q.counts()["lost"] > 0


def test_a_swept_failed_job_is_requeued_from_history(db, sweep_often):
    q = JobQueue(db, max_attempts=1)
    q.pub({"n": 0})
    q.done(q.next())
    job_id = q.pub({"n": 1})
    q.fail(q.next(), RuntimeError("no"))
    q.pub({"n": 2})
    q.done(q.next())  # sweeps the failed job out of the ring
    assert db.jobqueue.find_one({"_id": job_id}) is None  # only in history now
    assert q.retry(job_id)
    assert q.next().id == job_id
    assert q.counts() == {
        "waiting": 0,
        "working": 1,
        "done": 2,
        "failed": 0,
        "cancelled": 0,
        "lost": 0,
    }


@pytest.mark.serial  # a latency bound: nothing of another xdist worker beside it
def test_a_consumer_on_a_swept_ring_still_wakes_at_once(quiet_db, sweep_often):
    """Every finish sweeps the ring, yet it keeps its newest document, so the consumer's
    wake-up cursor has one to stand on: each publish wakes it at once. (An empty ring would
    leave it polling every 250 ms, which the median catches too.)"""
    q = JobQueue(quiet_db)
    q.pub({"n": "first"})
    _work(q, 1)
    delays, ids, baseline = claim_delays(q, JobQueue(quiet_db))  # each finished and swept in turn
    ring = [doc["_id"] for doc in quiet_db.jobqueue.find({}, {"_id": 1})]
    assert ids[-1] in ring and len(ring) <= 2  # the newest stays (and, where $natural is not
    # honoured, the one it finds); the rest went to history
    assert_woken(delays, baseline)


@pytest.mark.parametrize("polling", [False, True], ids=["server mode", "polling"])
def test_the_watcher_keeps_showing_jobs_swept_out_of_the_ring(
    db, sweep_often, monkeypatch, polling
):
    from mjq_notebook.live.watch import Watcher

    q = JobQueue(db)
    if polling:
        force_polling(monkeypatch, q)
    watcher = Watcher.of(q)
    sub = watcher.subscribe(lambda snapshot: None)
    try:
        wait_for(lambda: watcher.snapshot.state == "live", 10, "live")
        ids = q.pub_many([{"n": n} for n in range(3)])
        _work(q, 3)  # each finish sweeps: only the newest stays in the ring
        assert db.jobqueue.count_documents({}) <= 2
        for job_id in ids:
            wait_for(lambda j=job_id: status_of(watcher, j) == "done", 2, "done in the window")
        time.sleep(0.6)  # a polling round later, still shown (from history)
        assert [status_of(watcher, j) for j in ids] == ["done"] * 3
        wait_for(lambda: watcher.snapshot.counts.get("done") == 3, 3, "the counts")
    finally:
        sub.close()


@pytest.mark.parametrize("polling", [False, True], ids=["server mode", "polling"])
def test_the_watcher_notes_every_finish_of_jobs_swept_out_of_the_ring(
    db, sweep_often, monkeypatch, polling
):
    """The charts count finishes of jobs beyond the shown window too, though a swept job is
    gone from the ring before the watcher can look it up."""
    from mjq_notebook.live.watch import Watcher

    q = JobQueue(db)
    if polling:
        force_polling(monkeypatch, q)
    watcher = Watcher.of(q)
    sub = watcher.subscribe(lambda snapshot: None, window=1)  # shows only the newest job
    try:
        wait_for(lambda: watcher.snapshot.state == "live", 10, "live")
        q.pub_many([{"n": n} for n in range(6)])
        _work(q, 6)
        wait_for(lambda: watcher.snapshot.activity.total_finished == 6, 5, "six finishes")
        assert len(watcher.snapshot.activity.run_s) == 6
    finally:
        sub.close()


def test_counts_never_take_a_publish_in_flight_for_a_loss(db, sweep_often):
    """counts() reads the publish counter before the ring: a job published while it reads is
    then never counted as published yet missing (read after, it looked lost for a moment)."""
    q, publisher = JobQueue(db), JobQueue(db)
    stop = threading.Event()

    def publish() -> None:
        while not stop.is_set():
            publisher.pub({"n": 1})

    thread = threading.Thread(target=publish)
    thread.start()
    try:
        seen = [q.counts(warn=False)["lost"] for _ in range(150)]
    finally:
        stop.set()
        thread.join()
    assert q.counts(warn=False)["waiting"] > 20  # publishes did overlap the reads
    assert seen == [0] * len(seen)
