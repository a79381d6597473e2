"""Jobs no worker can be stopped by: too large to claim or to finish, errors and results of
any size, documents other programs wrote malformed. Each ends with a defined outcome while
the job behind it is done, and `mjq work` keeps running (real processes, real server)."""

from __future__ import annotations

import datetime as dt
import signal
import threading

import bson
import pytest
from bson import ObjectId
from pymongo.errors import OperationFailure

from mjq_notebook import JobQueue, PublishError, Worker
from mjq_notebook.core.job import MAX_BSON_SIZE, MAX_ERROR_MESSAGE, MAX_JOB_SIZE, error_document

from .support.processes import start_worker
from .support.waiting import wait_for

FINAL = ("done", "failed", "cancelled")


def foreign(q, **fields):
    """A job another program wrote straight into the ring (no fields of ours)."""
    doc = {"_id": ObjectId(), "status": "waiting", **fields}
    q.collection.insert_one(doc)
    return doc["_id"]


def stored_status(q, job_id):
    return q.get(job_id)["status"]


def test_poison_jobs_end_with_a_reason_and_the_worker_goes_on(db, server_uri, tmp_path):
    q = JobQueue(db, size_bytes=128 * 2**20)
    now = dt.datetime.now(dt.timezone.utc)
    # Written by other programs: a job a claim can't grow (16 MiB less 100 bytes) ...
    shell = len(
        bson.encode({"_id": ObjectId(), "status": "waiting", "ts": {"created": now}, "data": ""})
    )
    huge = foreign(q, ts={"created": now}, data="h" * (MAX_BSON_SIZE - 100 - shell))
    # ... and malformed ones that can be mended and run
    mended = [
        foreign(q, ts=None, data={"n": "ts null"}),
        foreign(q, ts="yesterday", data={"n": "ts a string"}),
        foreign(q, ts={"created": now}, attempts="x", data={"n": "attempts a string"}),
        foreign(q, ts={"created": now}),  # no data at all
    ]
    # Ours: a result and an error too large to store with a 9 MiB job
    too_big_result = q.pub({"result_mib": 9, "pad": "p" * 9 * 2**20}, max_attempts=1)
    too_big_error = q.pub({"error_mib": 9}, max_attempts=1)
    behind = q.pub({"n": "the job behind them"})
    worker = start_worker(server_uri, db, "sized", tmp_path / "ran.log", "--lease", "30")
    try:
        every = [huge, *mended, too_big_result, too_big_error, behind]
        wait_for(lambda: all(stored_status(q, i) in FINAL for i in every), 120, "every job to end")
        assert worker.poll() is None, "mjq work stopped"
    finally:
        worker.send_signal(signal.SIGTERM)
        out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 0, out
    assert "Traceback" not in out, out

    assert stored_status(q, behind) == "done"
    assert all(stored_status(q, job_id) == "done" for job_id in mended), out
    assert q.get(mended[0])["malformed"] == {"ts": None}
    assert stored_status(q, huge) == "failed"
    assert f"job {huge} " in out and "malformed" in out

    result = q.get(too_big_result)
    assert result["status"] == "failed"
    assert result["error"]["message"].startswith("result too large to store (9 MiB; at most 16")
    error = q.get(too_big_error)
    assert error["status"] == "failed"
    assert "characters cut: too large to store" in error["error"]["message"]
    assert len(error["error"]["message"]) < MAX_ERROR_MESSAGE + 100

    counts = q.counts(warn=False)
    assert counts["lost"] == 0
    assert counts["done"] == 5 and counts["failed"] == 3


def test_a_dying_thread_stops_mjq_work_with_a_non_zero_status(db, server_uri, tmp_path):
    q = JobQueue(db)
    job_id = q.pub({"n": 1})
    worker = start_worker(server_uri, db, "die", tmp_path / "ran.log")
    out, _ = worker.communicate(timeout=60)
    assert worker.returncode == 1, out
    assert "died (SystemExit: the handler called sys.exit())" in out
    job = q.get(job_id)  # handed back, not left working
    assert job["status"] == "waiting" and job["attempts"] == 0


def test_pub_refuses_a_job_that_leaves_no_room_for_its_fields(queue):
    with pytest.raises(PublishError, match=r"over the 15.5 MiB a job may hold.*nothing was"):
        queue.pub("x" * MAX_JOB_SIZE)
    with pytest.raises(PublishError, match="data of job 1 is"):
        queue.pub_many(["small", "x" * MAX_JOB_SIZE])
    assert queue.collection.count_documents({}) == 0
    assert queue.counts(warn=False)["lost"] == 0


def test_a_result_too_large_fails_the_claim_block_with_why(queue):
    queue.pub({"pad": "p" * 9 * 2**20}, max_attempts=1)
    with pytest.raises(PublishError, match="result too large"), queue.claim() as job:
        job["result"] = "r" * 9 * 2**20
    failed = queue.get(job.id)
    assert failed["status"] == "failed"
    assert failed["error"]["type"] == "PublishError"
    assert "result" not in failed or failed["result"] is None


def test_error_texts_are_cut_and_say_so():
    short = error_document(ValueError("short"))
    assert short["message"] == "short"
    long = error_document("a" * 10 + "b" * (2 * MAX_ERROR_MESSAGE) + "z" * 10)
    assert long["message"].startswith("aaaaaaaaaab") and long["message"].endswith("bz" + "z" * 9)
    assert f"{2 * MAX_ERROR_MESSAGE + 20 - MAX_ERROR_MESSAGE:,} characters cut" in long["message"]

    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no")

    assert "str() of the error raised RuntimeError" in error_document(Unprintable())["message"]


def test_refused_lease_extensions_never_stop_the_heartbeat(queue, caplog):
    release = threading.Event()
    queue.pub({"n": 1})
    queue.lease = 0.3  # extended every 0.1 s
    worker = Worker(queue, lambda job: release.wait(30), heartbeat=0.2)

    def refused(job, lease=None):
        raise OperationFailure("write concern timed out", code=64)

    queue.touch = refused  # the worker claims and extends through the queue it was given
    worker.start()
    try:
        wait_for(lambda: "touch_running failed" in caplog.text, 10, "a refused extension")
        beat = lambda: queue.workers()[0]["heartbeat"]  # noqa: E731
        first = beat()
        wait_for(lambda: beat() > first, 10, "a heartbeat after the refusal")
        assert worker._beat.is_alive()
    finally:
        release.set()
        worker.stop()
        assert worker.join(30)
    assert worker.crashed is None
