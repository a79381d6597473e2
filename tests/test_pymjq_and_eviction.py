"""Queues written by pymjq (the project this one rebuilt; its jobs lack ``max_attempts``), and
jobs lost to the capped collection's eviction."""

from __future__ import annotations

import datetime as dt
import threading
import time
import warnings

import pytest

from mjq_notebook import DataLossWarning, Empty, JobQueue


def _pymjq_pub(db, data, when):
    """What pymjq's pub() wrote: only status, ts (all three pre-filled) and data."""
    db.jobqueue.insert_one(
        {"status": "waiting", "ts": {"created": when, "started": when, "done": when}, "data": data}
    )


def test_a_queue_pymjq_wrote_opens_counts_and_claims(db):
    db.create_collection("jobqueue", capped=True, size=100_000)
    when = dt.datetime(2016, 1, 6, 12, 0, tzinfo=dt.timezone.utc)
    _pymjq_pub(db, {"message": "from pymjq"}, when)
    _pymjq_pub(db, {"message": "second"}, when + dt.timedelta(seconds=1))
    db.jobqueue.insert_one(
        {
            "status": "done",
            "ts": {"created": when, "started": when, "done": when},
            "data": {"old": 1},
        }
    )
    q = JobQueue(db)
    assert q.valid()
    assert q.queue_count() == 2
    assert q.counts() == {
        "waiting": 2,
        "working": 0,
        "done": 1,
        "failed": 0,
        "cancelled": 0,
        "lost": 0,
    }
    job = q.next(timeout=0)
    assert job.data == {"message": "from pymjq"} and job.attempts == 1
    assert job["ts"]["started"] > when
    q.done(job)
    job = q.next(timeout=0)
    q.fail(job, RuntimeError("x"))  # a pymjq job has no max_attempts: the queue's default
    assert q.get(job.id)["status"] == "waiting"
    assert q.counts()["done"] == 2
    frame = q.history()
    waiting = frame[frame.status == "waiting"].iloc[0]
    assert waiting.wait_s != waiting.wait_s  # NaN: it has not started, whatever ts says


def test_eviction_of_waiting_jobs_is_reported(db):
    q = JobQueue(db, max_jobs=5, size_bytes=100_000)
    q.pub_many([{"n": n} for n in range(3)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert q.counts()["lost"] == 0
    # 8 jobs in a 5-job ring: 3 evicted waiting (refused unless allowed: test_room.py)
    q.pub_many([{"n": n} for n in range(3, 8)], evict=True)
    with pytest.warns(DataLossWarning, match="3 job"):
        counts = q.counts()
    assert counts["lost"] == 3 and counts["waiting"] == 5


def test_finished_jobs_evicted_from_the_ring_are_not_lost(db):
    q = JobQueue(db, max_jobs=3, size_bytes=100_000)
    for n in range(6):
        q.pub({"n": n}, evict=True)  # evicted by the ring, not swept first by the publish
        q.done(q.next(timeout=0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        counts = q.counts()
    assert counts["done"] == 6 and counts["lost"] == 0
    assert q.collection.count_documents({}) == 3
    assert q.history_collection.count_documents({"status": "done"}) == 6


def test_consumer_rides_out_eviction_of_its_cursor_position(db):
    q = JobQueue(db, max_jobs=4, size_bytes=100_000)
    q.pub({"n": 0})
    q.done(q.next(timeout=0))
    with pytest.raises(Empty):
        q.next(timeout=0.6)  # the wake-up cursor now stands on the last document
    publisher = JobQueue(db, max_jobs=4)
    for n in range(1, 9):  # evicts the document the cursor stood on
        publisher.pub({"n": n}, evict=True)
        publisher.done(publisher.next(timeout=0))
    got = []
    consumer = threading.Thread(target=lambda: got.append(q.next(timeout=10)))
    consumer.start()
    time.sleep(0.5)
    publisher.pub({"n": "after eviction"})
    consumer.join(10)
    assert got and got[0].data == {"n": "after eviction"}


def test_clearing_a_pymjq_sized_queue_keeps_it_capped(db):
    db.create_collection("jobqueue", capped=True, size=100_000)  # pymjq's: no max
    q = JobQueue(db)
    before = db.jobqueue.options()  # a real mongod rounds the size up to 256 bytes
    q.pub({"x": 1})
    q.clear_queue()
    assert db.jobqueue.options() == before
    assert before["capped"] is True and "max" not in before
    assert q.queue_count() == 0


def test_data_loss_warning_names_the_users_line_not_the_package(db):
    q = JobQueue(db, max_jobs=2, size_bytes=100_000)
    for n in range(4):
        q.pub({"n": n}, evict=True)
    cell = compile("q.counts()", "<ipython-input-7>", "exec")  # what a notebook cell runs
    with pytest.warns(DataLossWarning) as caught:
        exec(cell, {"q": q})
    assert caught[0].filename == "<ipython-input-7>"
    q.pub({"n": 4}, evict=True)
    with pytest.warns(DataLossWarning) as caught:
        repr(q.counts())  # this line
    assert caught[0].filename == __file__
    q.pub({"n": 5}, evict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert q.counts(warn=False)["lost"] == 4  # displays show lost themselves
        repr(q)
