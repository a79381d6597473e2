"""The JobQueue contract: pymjq's API, claiming, finishing, retries, priority, delay, leases."""

from __future__ import annotations

import statistics
import threading
import time

import pytest
from bson import ObjectId

from mjq_notebook import Empty, Job, JobQueue, LeaseLostError, Status

from .support.claims import POLL_S, RECHECK_S, assert_woken, claim_delays
from .support.waiting import within


def test_pymjq_api_round_trip(db):
    q = JobQueue(db)
    assert q.valid()
    assert db.jobqueue.options()["capped"] is True
    job_id = q.pub({"message": "hello world!"})
    assert isinstance(job_id, ObjectId) and job_id
    assert q.queue_count() == 1
    job = q.next(timeout=0)
    assert isinstance(job, Job) and isinstance(job, dict)
    assert job["data"]["message"] == "hello world!"
    assert (job.id, job.data, job.status) == (job_id, {"message": "hello world!"}, Status.WORKING)
    assert job["ts"]["started"] >= job["ts"]["created"]
    assert q.queue_count() == 0
    q.done(job)
    stored = db.jobqueue.find_one({"_id": job_id})
    assert stored["status"] == "done" and stored["ts"]["done"] >= stored["ts"]["started"]
    q.pub({"message": "again"})
    q.clear_queue()
    assert q.counts() == {
        "waiting": 0,
        "working": 0,
        "done": 0,
        "failed": 0,
        "cancelled": 0,
        "lost": 0,
    }
    assert q.valid() and db.jobqueue.count_documents({}) == 0
    assert db["jobqueue.history"].count_documents({}) == 0
    q.pub({"message": "after clearing"})
    assert q.next(timeout=0).data == {"message": "after clearing"}


def test_default_capacity_holds_many_jobs(db):
    options = JobQueue(db).collection.options()
    assert options["max"] == 100_000 and options["size"] >= 64 * 2**20


def test_counts_track_every_status(db):
    q = JobQueue(db, max_attempts=1)
    ids = q.pub_many([{"n": n} for n in range(5)])
    assert len(ids) == 5 and len(set(ids)) == 5
    first, second, _third = (q.next(timeout=0) for _ in range(3))
    q.done(first)
    q.fail(second, "no")  # max_attempts=1: final
    assert q.counts() == {
        "waiting": 2,
        "working": 1,
        "done": 1,
        "failed": 1,
        "cancelled": 0,
        "lost": 0,
    }
    assert q.queue_count() == 2


def test_next_times_out_with_empty(queue):
    started = time.monotonic()
    with pytest.raises(Empty):
        within(3, lambda: queue.next(timeout=0.5), "next(timeout=0.5)")
    assert 0.45 <= time.monotonic() - started < 2.0


@pytest.mark.serial  # a latency bound: nothing of another xdist worker beside it
def test_blocked_consumer_wakes_on_publish(quiet_db):
    """A publish from elsewhere wakes a blocked consumer at once: well before its re-check."""
    queue = JobQueue(quiet_db)
    queue.pub({"first": True})  # something in the collection for the wake-up cursor to follow
    queue.done(queue.next())
    delays, _, baseline = claim_delays(queue, JobQueue(quiet_db))
    assert_woken(delays, baseline)


def test_a_consumer_on_an_empty_collection_claims_within_a_poll(db):
    """An empty collection gives the wake-up cursor nothing to stand on: the consumer looks
    every POLL_S instead, still well within its RECHECK_S. Each publish lands ~0.3 s after a
    re-check would have come, so a consumer that only re-checked would take ~0.7 s."""
    latencies = []
    for n in range(3):
        consumer, publisher = JobQueue(db, f"empty{n}"), JobQueue(db, f"empty{n}")
        got, waiting = [], threading.Event()

        def consume(consumer=consumer, got=got, waiting=waiting):
            waiting.set()
            got.append((consumer.next(timeout=10), time.monotonic()))

        thread = threading.Thread(target=consume)
        thread.start()
        assert waiting.wait(10)
        time.sleep(RECHECK_S + 0.3)
        sent = time.monotonic()
        publisher.pub({"late": True})
        thread.join(15)
        assert got and got[0][0].data == {"late": True}
        latencies.append(got[0][1] - sent)
    median = statistics.median(latencies)
    assert median < 2 * POLL_S, f"claimed after {[round(s, 3) for s in latencies]} s"


def test_consumer_wakes_on_later_publishes_without_missing_any(queue):
    queue.pub({"n": -1})
    queue.done(queue.next(timeout=0))
    received = []

    def consume():
        for _ in range(5):
            job = queue.next(timeout=10)
            received.append(job.data["n"])
            queue.done(job)

    consumer = threading.Thread(target=consume)
    consumer.start()
    publisher = JobQueue(queue.db)
    for n in range(5):
        time.sleep(0.1)
        publisher.pub({"n": n})
    consumer.join(20)
    assert received == [0, 1, 2, 3, 4]


def test_priority_then_age(queue):
    low = queue.pub({"p": "low"}, priority=-1)
    normal1 = queue.pub({"p": "normal1"})
    high = queue.pub({"p": "high"}, priority=5)
    normal2 = queue.pub({"p": "normal2"})
    order = [queue.next(timeout=0).id for _ in range(4)]
    assert order == [high, normal1, normal2, low]


def test_delayed_job_is_not_claimable_before_its_time(queue):
    later = queue.pub({"when": "later"}, delay=1.0)
    now = queue.pub({"when": "now"})
    assert queue.next(timeout=0).id == now
    with pytest.raises(Empty):
        within(5, lambda: queue.next(timeout=0))
    started = time.monotonic()
    assert queue.next(timeout=5).id == later
    assert 0.5 <= time.monotonic() - started < 2.5


def test_fail_records_error_and_retries_with_backoff(db):
    q = JobQueue(db, max_attempts=3, backoff=0.4)
    job_id = q.pub({"x": 1})
    job = q.next(timeout=0)
    try:
        raise ValueError("bad value")
    except ValueError as exc:
        assert q.fail(job, exc) is True
    stored = q.get(job_id)
    assert stored["status"] == "waiting"
    assert stored["error"]["type"] == "ValueError"
    assert stored["error"]["message"] == "bad value"
    assert "raise ValueError" in stored["error"]["traceback"]
    with pytest.raises(Empty):  # backing off: 0.4 s after the first failure
        within(5, lambda: q.next(timeout=0))
    t0 = time.monotonic()
    job = q.next(timeout=5)
    first_gap = time.monotonic() - t0
    assert job.attempts == 2
    assert q.fail(job, "again") is True
    t0 = time.monotonic()
    job = q.next(timeout=5)
    second_gap = time.monotonic() - t0
    assert second_gap > first_gap + 0.2  # 0.8 s: the back-off doubled
    assert job.attempts == 3
    assert q.fail(job, RuntimeError("final")) is False
    final = q.get(job_id)
    assert final["status"] == "failed" and final["error"]["message"] == "final"
    assert q.counts()["failed"] == 1
    history = q.history_collection.find_one({"_id": job_id})
    assert history["status"] == "failed" and history["attempts"] == 3


def test_claim_context_manager(db):
    # a failed job waits an hour before its retry: the claims below take the next one, on a
    # busy machine too (the fixture's queue retries after 0.05 s)
    queue = JobQueue(db, lease=30, backoff=3600)
    queue.pub_many([{"n": 1}, {"n": 2}, {"n": 3}])
    with queue.claim(timeout=0) as job:
        job["result"] = {"sum": 42}
    assert queue.get(job.id)["status"] == "done"
    assert queue.get(job.id)["result"] == {"sum": 42}

    with pytest.raises(ZeroDivisionError), queue.claim(timeout=0) as job:
        _ = 1 / 0
    stored = queue.get(job.id)
    assert stored["status"] == "waiting" and stored["error"]["type"] == "ZeroDivisionError"

    with pytest.raises(KeyboardInterrupt), queue.claim(timeout=0) as job:
        raise KeyboardInterrupt
    stored = queue.get(job.id)
    assert stored["data"] == {"n": 3}
    assert stored["status"] == "waiting" and stored["attempts"] == 0 and "error" not in stored


def test_claim_times_out(queue):
    with pytest.raises(Empty):
        within(3, lambda: queue.claim(timeout=0.2).__enter__(), "claim(timeout=0.2)")


def test_iteration_marks_done_when_the_loop_asks_for_the_next(queue):
    ids = queue.pub_many([{"n": n} for n in range(3)])
    seen = []
    for job in queue:
        seen.append(job.id)
        if len(seen) > 1:
            assert queue.get(seen[-2])["status"] == "done"
        assert queue.get(job.id)["status"] == "working"
        if len(seen) == 3:
            break
    assert seen == ids
    # the job held when the loop stopped went back to waiting
    assert queue.get(ids[2])["status"] == "waiting"


def test_iteration_leaves_jobs_the_loop_finished_itself(db):
    queue = JobQueue(db, backoff=60)  # the failed job is not due again during the loop
    ids = queue.pub_many([{"n": n} for n in range(3)])
    for job in queue:
        if job["data"]["n"] == 0:
            queue.fail(job, "no")  # retried later: the loop must not mark it done
        elif job["data"]["n"] == 2:
            queue.done(job, "last")  # finished before break: not released back
            break
    assert [queue.get(i)["status"] for i in ids] == ["waiting", "done", "done"]
    assert queue.get(ids[2])["result"] == "last"
    assert queue.get(ids[0])["attempts"] == 1


def test_expired_lease_makes_job_claimable_again(db):
    q1 = JobQueue(db, lease=0.5)
    q2 = JobQueue(db, lease=30)
    job_id = q1.pub({"x": 1})
    first = q1.next(timeout=0)
    with pytest.raises(Empty):
        within(5, lambda: q2.next(timeout=0))
    second = q2.next(timeout=5)
    assert second.id == job_id and second.attempts == 2
    assert second["worker"] == q2.worker_id
    with pytest.raises(LeaseLostError):
        q1.done(first)
    q2.done(second, "ok")
    assert q2.get(job_id)["result"] == "ok"
    assert q2.history_collection.count_documents({}) == 1


def test_touch_extends_the_lease(db):
    q1 = JobQueue(db, lease=0.6)
    q1.pub({})
    job = q1.next(timeout=0)
    for _ in range(4):
        time.sleep(0.3)
        q1.touch(job)
    with pytest.raises(Empty):
        within(5, lambda: JobQueue(db).next(timeout=0))
    q1.done(job)


def test_lease_expiry_past_max_attempts_fails_the_job(db):
    q = JobQueue(db, lease=0.2, max_attempts=2)
    job_id = q.pub({})
    q.next(timeout=0)
    time.sleep(0.3)
    q.next(timeout=0)  # attempt 2: also abandoned
    time.sleep(0.3)
    with pytest.raises(Empty):
        within(5, lambda: q.next(timeout=0))
    stored = q.get(job_id)
    assert stored["status"] == "failed" and "lease expired" in stored["error"]["message"]


def test_finished_jobs_are_kept_in_history(queue):
    ids = queue.pub_many([{"n": n} for n in range(3)])
    for _ in ids:
        job = queue.next(timeout=0)
        queue.done(job, result=job.data["n"] * 10)
    rows = {d["_id"]: d for d in queue.history_collection.find()}
    assert set(rows) == set(ids)
    assert all(r["status"] == "done" and r["ts"]["done"] for r in rows.values())
    assert sorted(r["result"] for r in rows.values()) == [0, 10, 20]


def test_repr_shows_names_and_counts(queue):
    queue.pub({})
    text = repr(queue)
    assert queue.db.name in text and "jobqueue" in text and "waiting=1" in text
    html = queue._repr_html_()
    assert "waiting" in html and "jobqueue" in html


def test_job_html_escapes_job_data(queue):
    queue.pub({"name": "<script>alert(1)</script>", "<b>key</b>": "&"})
    job = queue.next(timeout=0)
    queue.fail(job, ValueError("<img src=x onerror=alert(2)>"))
    html = queue.get(job.id)._repr_html_()
    assert "<script>" not in html and "<img" not in html and "<b>key" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html


def test_history_frame_has_exact_timings(queue):
    queue.pub({"n": 1})
    queue.pub({"n": 2})
    job = queue.next(timeout=0)
    time.sleep(0.05)
    queue.done(job)
    frame = queue.history().set_index("id")
    stored = queue.get(job.id)["ts"]
    row = frame.loc[job.id]
    assert row.wait_s == (stored["started"] - stored["created"]).total_seconds()
    assert row.run_s == (stored["done"] - stored["started"]).total_seconds() >= 0.05
    assert row.total_s == pytest.approx(row.wait_s + row.run_s)
    assert str(frame["created"].dt.tz) == "UTC"
    waiting = frame[frame.status == "waiting"].iloc[0]
    assert waiting.run_s != waiting.run_s  # NaN


def test_abandoned_job_comes_back_while_the_queue_stays_busy(db):
    crashed = JobQueue(db, lease=0.3)
    abandoned = crashed.pub({"first": True})
    assert crashed.next(timeout=0).id == abandoned  # ...and its worker is never heard of again
    backlog = crashed.pub_many([{"n": n} for n in range(10)])
    busy = JobQueue(db, lease=0.3)
    order = []
    for _ in range(11):
        job = busy.next(timeout=5)  # claims keep succeeding: no idle moment to look around
        order.append(job.id)
        busy.done(job)
        time.sleep(0.1)
    assert set(order) == {abandoned, *backlog}
    assert order.index(abandoned) < 8  # it came back soon after its lease, not at the end
    assert busy.get(abandoned)["attempts"] == 2


def test_next_without_timeout_raises_empty_at_once_as_pymjq_did(queue):
    started = time.monotonic()
    with pytest.raises(Empty, match="no job waiting"):
        within(2, queue.next, "next()")
    with pytest.raises(Empty):
        within(2, lambda: queue.claim().__enter__(), "claim()")
    assert time.monotonic() - started < 0.5
    queue.pub({"n": 1})
    assert queue.next().data == {"n": 1}


def test_next_with_timeout_none_waits_for_a_late_publish(queue):
    got = []
    consumer = threading.Thread(target=lambda: got.append(queue.next(timeout=None)))
    consumer.start()
    time.sleep(0.4)
    assert consumer.is_alive() and not got  # still waiting: None means forever
    JobQueue(queue.db).pub({"late": True})
    consumer.join(5)
    assert got and got[0].data == {"late": True}


def test_jobs_filters_in_mongodb_and_is_still_a_list(queue):
    queue.pub_many([{"kind": "a", "n": n} for n in range(3)] + [{"kind": "b", "n": 9}])
    queue.next()
    newest = queue.jobs(limit=2)
    assert isinstance(newest, list) and all(isinstance(j, Job) for j in newest)
    assert [j.data["n"] for j in newest] == [9, 2]
    assert [j.data["n"] for j in queue.jobs(query={"data.kind": "a"})] == [2, 1, 0]
    assert [j.data["n"] for j in queue.jobs("working")] == [0]
    assert [j.data["n"] for j in queue.jobs("waiting", query={"data.kind": "a"})] == [2, 1]
