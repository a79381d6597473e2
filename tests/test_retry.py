"""Requeueing failed jobs: retry(job) and retry_failed(query), atomic and history-preserving."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from mjq_notebook import JobQueue


def _failed(q, data, message="boom"):
    """Publish ``data`` and fail it for good (max_attempts=1); returns its id."""
    job_id = q.pub(data, max_attempts=1)
    job = q.next()
    assert job.id == job_id
    q.fail(job, RuntimeError(message))
    assert q.get(job_id)["status"] == "failed"
    return job_id


def test_retry_puts_a_failed_job_back_with_its_past_kept(queue):
    job_id = _failed(queue, {"kind": "email"}, "smtp down")
    assert queue.counts()["failed"] == 1
    assert queue.retry(job_id) is True
    again = queue.get(job_id)
    assert again["status"] == "waiting" and again["attempts"] == 1
    assert again["error"]["message"] == "smtp down"  # why it failed last time stays visible
    assert again["max_attempts"] == 1 + queue.max_attempts
    assert again["ts"]["started"] is None and again["ts"]["done"] is None
    assert queue.counts() == {
        "waiting": 1,
        "working": 0,
        "done": 0,
        "failed": 0,
        "cancelled": 0,
        "lost": 0,
    }
    assert queue.retry(job_id) is False  # not failed any more: nothing to do
    job = queue.next()
    assert job.id == job_id and job.attempts == 2
    queue.done(job, result="second time lucky")
    [row] = queue.history().itertuples()
    assert (row.status, row.attempts, row.error_type) == ("done", 2, "RuntimeError")
    assert queue.history_collection.count_documents({}) == 1
    assert queue.counts() == {
        "waiting": 0,
        "working": 0,
        "done": 1,
        "failed": 0,
        "cancelled": 0,
        "lost": 0,
    }


def test_retry_of_a_job_given_as_a_job_and_of_jobs_not_failed(queue):
    job_id = _failed(queue, {"n": 1})
    assert queue.retry(queue.get(job_id)) is True
    done_id = queue.pub({"n": 2})
    queue.done(queue.next())  # the requeued job is older: claimed first
    assert queue.get(job_id)["status"] == "done"
    assert queue.retry(done_id) is False and queue.get(done_id)["status"] == "waiting"


def test_a_failed_job_evicted_from_the_ring_comes_back_from_history(db):
    q = JobQueue(db, max_jobs=3, size_bytes=100_000, backoff=0.05)
    job_id = _failed(q, {"kind": "old"})
    for n in range(4):  # pushes the failed job out of the 3-job ring (evicted, not swept)
        q.pub({"n": n}, evict=True)
        q.done(q.next())
    assert q.collection.find_one({"_id": job_id}) is None
    assert q.retry_failed() == 1
    again = q.collection.find_one({"_id": job_id})
    assert again["status"] == "waiting" and again["data"] == {"kind": "old"}
    assert q.history_collection.find_one({"_id": job_id}) is None
    assert q.counts() == {
        "waiting": 1,
        "working": 0,
        "done": 4,
        "failed": 0,
        "cancelled": 0,
        "lost": 0,
    }
    assert q.next().id == job_id


def test_retry_failed_takes_a_filter_and_leaves_the_rest(queue):
    emails = [_failed(queue, {"kind": "email", "n": n}) for n in range(3)]
    report = _failed(queue, {"kind": "report"})
    assert queue.retry_failed({"data.kind": "email"}) == 3
    assert {queue.get(i)["status"] for i in emails} == {"waiting"}
    assert queue.get(report)["status"] == "failed"
    assert queue.retry_failed({"data.kind": "email"}) == 0
    assert queue.counts()["failed"] == 1 and queue.counts()["waiting"] == 3


def test_concurrent_requeues_requeue_each_job_once(queue, db, server_uri):
    """Three processes requeue the same failed jobs at once: each job is requeued once."""
    ids = [_failed(queue, {"n": n}) for n in range(6)]
    script = (
        "import sys, time; from mjq_notebook import JobQueue, connect; "
        "q = JobQueue(connect(sys.argv[1], sys.argv[2])); "
        "time.sleep(max(0.0, float(sys.argv[3]) - time.time())); print(q.retry_failed())"
    )
    start = str(time.time() + 3)  # the same moment for all, after their imports
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, server_uri, db.name, start],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    requeued = [int(proc.communicate(timeout=60)[0]) for proc in procs]
    assert sum(requeued) == 6  # every job requeued, none twice
    assert {queue.get(i)["status"] for i in ids} == {"waiting"}
    assert queue.collection.count_documents({"_id": {"$in": ids}}) == 6
    assert queue.history_collection.count_documents({}) == 0
    assert queue.counts() == {
        "waiting": 6,
        "working": 0,
        "done": 0,
        "failed": 0,
        "cancelled": 0,
        "lost": 0,
    }


def test_retry_on_a_plain_collection_writes_nothing(db):
    from mjq_notebook import InvalidQueueError

    db.create_collection("jobqueue")
    q = JobQueue(db)
    with pytest.raises(InvalidQueueError):
        q.retry_failed()
