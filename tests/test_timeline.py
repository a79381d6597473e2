"""A job's whole story (issue 25, item 5): every ended attempt kept in ``<queue>.attempts``
(done, failed, lost with its worker), ``q.timeline(job)`` and the "Attempts" section of the
job's display; idempotent across a fault, falling back on the document for pymjq's jobs."""

from __future__ import annotations

import datetime as dt
import signal
from unittest import mock

import pytest
from bson import ObjectId
from pymongo.errors import AutoReconnect

from mjq_notebook import JobQueue, LeaseLostError, QueueNameError, ServerUnavailable, queues
from mjq_notebook.core.job import utcnow
from mjq_notebook.core.parts import writes
from mjq_notebook.errors import JobQueueError
from mjq_notebook.notebook.display import job_html

from .support.processes import read_log, start_worker
from .support.waiting import wait_for
from .support.xss import XSS_IN_ONE, assert_inert


def _claim(queue, timeout=10.0):
    return queue.next(timeout=timeout)


def test_a_job_failed_twice_then_done_has_three_attempts_with_both_errors(queue):
    job_id = queue.pub({"n": 1}, max_attempts=3)
    first = _claim(queue)
    first.progress(4, 10, "resizing")
    assert queue.fail(first, ValueError("bad value 7"))
    second = _claim(queue)
    assert queue.fail(second, KeyError("missing"))
    third = _claim(queue)
    queue.done(third, "ok")

    frame = queue.timeline(job_id)
    assert list(frame["attempt"]) == [1, 2, 3]
    assert list(frame["outcome"]) == ["failed", "failed", "done"]
    assert list(frame["error_type"][:2]) == ["ValueError", "KeyError"]
    assert frame["error_message"][0] == "bad value 7"
    assert frame["progress"][0] == "4/10 resizing"
    assert set(frame["worker"]) == {queue.worker_id}
    assert (frame["run_s"] >= 0).all()
    assert (frame["ended"] >= frame["started"]).all()
    assert frame["started"].is_monotonic_increasing
    # the same rows in plain form, with each traceback, and the same from the hex string
    rows = queue.story(str(job_id))
    assert [r["outcome"] for r in rows] == ["failed", "failed", "done"]
    assert "ValueError: bad value 7" in rows[0]["traceback"]


def test_the_current_attempt_is_the_last_row(queue):
    job_id = queue.pub("x", max_attempts=3)
    assert [r["outcome"] for r in queue.story(job_id)] == ["waiting"]
    job = _claim(queue)
    assert queue.fail(job, RuntimeError("once"))
    rows = queue.story(job_id)
    assert [(r["attempt"], r["outcome"]) for r in rows] == [(1, "failed"), (2, "waiting")]
    job = _claim(queue)
    rows = queue.story(job_id)
    assert [(r["attempt"], r["outcome"]) for r in rows] == [(1, "failed"), (2, "working")]
    assert rows[-1]["worker"] == queue.worker_id and rows[-1]["ended"] is None


def test_a_job_released_from_the_ui_records_a_lost_attempt_then_done(queue, other):
    job_id = queue.pub("x")
    held = _claim(other)  # "another kernel" holds it, then is lost
    held.progress(2, 5, "half")
    assert queue.reclaim(queue.get(job_id))
    job = _claim(queue)
    queue.done(job)
    rows = queue.story(job_id)
    assert [(r["attempt"], r["outcome"], r["worker"]) for r in rows] == [
        (1, "lost", other.worker_id),
        (2, "done", queue.worker_id),
    ]
    assert rows[0]["progress"]["done"] == 2 and rows[0]["ended"] is not None
    # the late worker's finish finds the job gone, and leaves the lost record as it is
    with pytest.raises(LeaseLostError):
        other.done(held)
    assert [r["outcome"] for r in queue.story(job_id)] == ["lost", "done"]
    assert queue.attempts_collection.count_documents({"job": job_id}) == 2


def test_an_expired_lease_reclaimed_by_a_claim_records_a_lost_attempt(db):
    short = JobQueue(db, "short", lease=0.3, backoff=0.05)
    job_id = short.pub("x")
    _claim(short)  # and never finished: its lease runs out
    again = _claim(short, timeout=10)  # the claim's reclaim pass hands it back first
    short.done(again)
    outcomes = [(r["attempt"], r["outcome"]) for r in short.story(job_id)]
    assert outcomes == [(1, "lost"), (2, "done")]


def test_a_killed_worker_process_shows_a_lost_attempt_and_then_the_done_one(
    queue, server_uri, tmp_path
):
    job_id = queue.pub({"task": "long"})
    log = tmp_path / "ran.log"
    doomed = start_worker(server_uri, queue.db, "hang", log, "--lease", "1")
    try:
        wait_for(lambda: read_log(log), 30, "the worker to start the job")
        doomed_worker = queue.get(job_id)["worker"]
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
        doomed.communicate(timeout=30)
    rescuer = start_worker(server_uri, queue.db, "record", log, "--lease", "5")
    try:
        wait_for(lambda: queue.get(job_id)["status"] == "done", 30, "the job done by another")
    finally:
        rescuer.kill()
        rescuer.communicate(timeout=30)
    frame = queue.timeline(job_id)
    assert list(frame["outcome"]) == ["lost", "done"]
    assert frame["worker"][0] == doomed_worker != frame["worker"][1]
    assert frame["ended"][0] <= frame["started"][1]
    html = job_html(queue.get(job_id), attempts=queue.story(job_id))
    assert "Attempts" in html and doomed_worker in html


def test_a_fault_between_the_attempt_record_and_the_finish_leaves_one_record(queue):
    queue._fuse = False  # one write after the other: a fault can fall between them
    job_id = queue.pub("x")
    job = _claim(queue)
    real = writes._run_one

    def history_away(write, again=False):
        if isinstance(write, writes.Replace):  # the history row, after the attempt's record
            raise AutoReconnect("connection closed")
        return real(write, again)

    history_fails = mock.patch.object(writes, "_run_one", history_away)
    with history_fails, pytest.raises(ServerUnavailable):
        queue.done(job, "first")
    assert queue.attempts_collection.count_documents({"job": job_id}) == 1
    assert queue.get(job_id)["status"] == "working"  # the finish did not happen
    queue.done(job, "second")  # sent again: the same record, not a second
    assert queue.attempts_collection.count_documents({"job": job_id}) == 1
    assert [r["outcome"] for r in queue.story(job_id)] == ["done"]


def test_a_finish_whose_reply_is_lost_is_sent_again_and_records_one_attempt(queue):
    job_id = queue.pub("x")
    job = _claim(queue)
    real_together, real_one = writes._run_together, writes._run_one
    sent = []

    def reply_lost(db, planned):
        real_together(db, planned)  # applied, all of it (MongoDB 8.0's one bulkWrite)...
        raise AutoReconnect("connection closed")  # ...and the reply lost

    def one(write, again=False):
        sent.append(again)
        return real_one(write, again)

    queue._fuse = True
    lost_reply = mock.patch.object(writes, "_run_together", reply_lost)
    with lost_reply, mock.patch.object(writes, "_run_one", one):
        queue.done(job, "ok")
    assert sent and all(sent)  # each write sent again, one by one
    assert queue.attempts_collection.count_documents({"job": job_id}) == 1
    assert [r["outcome"] for r in queue.story(job_id)] == ["done"]


def test_pymjq_documents_give_a_timeline_from_the_document(queue):
    now = utcnow()
    started = now - dt.timedelta(seconds=3)
    done_id, working_id = ObjectId(), ObjectId()
    queue.collection.insert_many([
        {"_id": done_id, "status": "done", "data": 1,
         "ts": {"created": started, "started": started, "done": now}},
        {"_id": working_id, "status": "working", "data": 2,
         "ts": {"created": started, "started": started, "done": started}},
    ])  # fmt: skip
    frame = queue.timeline(done_id)
    assert list(frame["outcome"]) == ["done"] and frame["attempt"][0] == 1
    assert frame["run_s"][0] == pytest.approx(3.0)
    assert [r["outcome"] for r in queue.story(working_id)] == ["working"]
    with pytest.raises(JobQueueError, match="not a job id"):
        queue.timeline("not-an-id")
    with pytest.raises(JobQueueError, match="no job"):
        queue.timeline(ObjectId())


def test_the_attempts_section_escapes_hostile_error_texts(queue):
    job_id = queue.pub(XSS_IN_ONE, max_attempts=2)
    job = _claim(queue)
    assert queue.fail(job, RuntimeError(XSS_IN_ONE + "\nsecond line"))
    job = _claim(queue)
    queue.fail(job, XSS_IN_ONE)
    shown = queue.get(job_id)
    html = shown._repr_html_()
    text = assert_inert(html)
    assert "Attempts" in text
    assert text.count(XSS_IN_ONE) >= 3  # the data, the error, the attempts' first lines
    assert "second line" in text  # in the traceback behind the <details>


def test_the_attempts_log_is_a_companion_cleared_with_history(queue, db):
    with pytest.raises(QueueNameError, match="companion"):
        JobQueue(db, f"{queue.name}.attempts")
    job = queue.pub("x")
    queue.done(_claim(queue))
    assert queue.attempts_collection.count_documents({}) == 1
    indexes = queue.attempts_collection.index_information().values()
    assert [("job", 1), ("attempt", 1)] in [i["key"] for i in indexes]
    assert [row["queue"] for row in queues(db)] == [queue.name]  # not "jobqueue.attempts"
    queue.clear_queue()
    assert queue.attempts_collection.count_documents({"job": job}) == 0
    indexes = queue.attempts_collection.index_information().values()
    assert [("job", 1), ("attempt", 1)] in [i["key"] for i in indexes]


def test_a_finish_repeated_after_the_sweep_took_the_job_keeps_its_record(queue):
    job_id = queue.pub("x")
    job = _claim(queue)
    queue.done(job)
    queue.collection.delete_one({"_id": job_id})  # as the ring's eviction would, after history
    with pytest.raises(LeaseLostError):
        queue.done(job)  # sent again (its reply lost, say): the finish stands
    assert queue.history_collection.count_documents({"_id": job_id}) == 1
    assert queue.attempts_collection.count_documents({"job": job_id, "outcome": "done"}) == 1
