"""Worker threads: handlers, results, failures, heartbeats, stopping."""

from __future__ import annotations

import random
import statistics
import threading
import time

import pytest

from mjq_notebook import JobQueue, Worker

from .support.waiting import wait_for


def test_worker_runs_every_job_once_across_threads(queue):
    ids = queue.pub_many([{"n": n} for n in range(30)])
    seen, lock = [], threading.Lock()

    def handler(job):
        with lock:
            seen.append(job.id)
        return job.data["n"] * 2

    stats = Worker(queue, handler, concurrency=4, poll=0.2).start(drain=True)
    assert stats.join(timeout=60)
    assert sorted(seen) == sorted(ids)
    assert stats.stats.done == 30
    results = {d["_id"]: d["result"] for d in queue.history_collection.find()}
    assert all(results[i] == n * 2 for n, i in enumerate(ids))


def test_handler_exceptions_fail_and_retry(db):
    q = JobQueue(db, max_attempts=2, backoff=0.05)
    q.pub({"x": 1})

    def handler(job):
        raise KeyError("missing")

    worker = Worker(q, handler, poll=0.2).start(drain=True)
    assert worker.join(timeout=30)
    assert (worker.stats.retried, worker.stats.failed) == (1, 1)  # one retry, then for good
    [row] = q.history_collection.find()
    assert row["status"] == "failed" and row["error"]["type"] == "KeyError"


def test_unstorable_result_fails_the_job(db):
    q = JobQueue(db, max_attempts=1)
    q.pub({})
    worker = Worker(q, lambda job: object(), poll=0.2).start(drain=True)
    assert worker.join(timeout=30)
    [row] = q.history_collection.find()
    assert row["status"] == "failed" and row["error"]["type"] == "PublishError"


def test_heartbeat_keeps_a_long_job_leased(db):
    # a 2 s lease extended every 2/3 s: a stall of over a second on a machine loaded by a
    # parallel suite must not pass for a missed heartbeat (a 0.6 s lease once did)
    q = JobQueue(db, lease=2.0)
    job_id = q.pub({})
    rival = JobQueue(db, lease=2.0)
    worker = Worker(q, lambda job: time.sleep(5.0), poll=0.2).start(drain=True)
    time.sleep(0.5)
    with pytest.raises(Exception, match="no job"):
        rival.next(timeout=4.0)  # the lease would have expired twice without heartbeats
    assert worker.join(timeout=30)
    assert q.get(job_id)["attempts"] == 1 and q.get(job_id)["status"] == "done"


def test_stop_finishes_running_jobs_and_takes_no_more(queue):
    queue.pub_many([{"n": n} for n in range(5)])
    started = threading.Event()

    def handler(job):
        started.set()
        time.sleep(0.5)

    worker = Worker(queue, handler, poll=0.2).start()
    assert started.wait(10)
    worker.stop()
    assert worker.join(timeout=10)
    counts = queue.counts()
    assert counts["done"] == 1 and counts["working"] == 0 and counts["waiting"] == 4


def test_release_running_hands_jobs_back(queue):
    queue.pub({})
    started, proceed = threading.Event(), threading.Event()

    def handler(job):
        started.set()
        proceed.wait(10)

    worker = Worker(queue, handler, poll=0.2).start()
    assert started.wait(10)
    worker.stop()
    worker.release_running()
    assert queue.counts()["waiting"] == 1
    proceed.set()
    worker.join(timeout=10)
    assert queue.counts()["done"] == 0  # its late result was refused: the job is not ours
    assert queue.next(timeout=0).attempts == 1


def test_max_jobs_stops_the_worker(queue):
    queue.pub_many([{"n": n} for n in range(5)])
    worker = Worker(queue, lambda job: None, concurrency=2, poll=0.2).start(max_jobs=3)
    assert worker.join(timeout=30)
    assert queue.counts()["done"] == 3 and queue.queue_count() == 2


def test_worker_logs_jobs_lost_to_eviction(db, caplog):
    q = JobQueue(db, max_jobs=3, size_bytes=100_000)
    for n in range(5):
        q.pub({"n": n}, evict=True)  # the first 2 are evicted before anyone claims them
    with caplog.at_level("WARNING", logger="mjq_notebook.worker"):
        worker = Worker(q, lambda job: None, poll=0.2).start(drain=True)
        assert worker.join(timeout=30)
    # the worker's first look may overlap a finishing job, which counts() may see in both
    # collections at once (never in neither): it can log fewer than 2, never a false loss
    logged = [
        r.getMessage() for r in caplog.records if "of jobqueue were evicted" in r.getMessage()
    ]
    assert logged and all(m.startswith(("1 job(s)", "2 job(s)")) for m in logged)
    assert q.counts(warn=False)["lost"] == 2


def _loss_logs(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "were evicted" in r.getMessage()]


def test_a_running_worker_logs_a_loss_within_the_check_interval(db, caplog, monkeypatch):
    """README: running workers log a loss (jobs evicted before they finished) within 30 s.
    A worker looks every LOSS_CHECK_INTERVAL, 30 s by default; shortened here to 1 s so the
    test need not wait, with the queue's default lease (60 s: a heartbeat every 20 s), whose
    heartbeats must not hold the look back."""
    from mjq_notebook.core import worker as worker_module

    assert worker_module.LOSS_CHECK_INTERVAL == 30  # the README's 30 seconds
    monkeypatch.setattr(worker_module, "LOSS_CHECK_INTERVAL", 1.0)
    q = JobQueue(db, max_jobs=3, size_bytes=100_000)
    assert q.lease == 60
    # published before the worker starts: a publish while counts() reads can look like a
    # loss for that moment (it reads the queue before the publish counter)
    first = q.pub({"first": True})
    with caplog.at_level("WARNING", logger="mjq_notebook.worker"):
        worker = Worker(q, lambda job: time.sleep(0.2), poll=0.2).start()
        try:
            wait_for(lambda: q.get(first)["status"] == "done", 10, "the first job done")  # and
            # the worker has looked once (at its start)
            assert not _loss_logs(caplog)
            lost_at = time.monotonic()
            for n in range(10):  # a ring of 3: most are evicted before the worker gets them
                q.pub({"n": n}, evict=True)
            assert q.counts(warn=False)["lost"] > 0
            took = wait_for(lambda: _loss_logs(caplog), 30, "the loss in the log")
        finally:
            worker.stop()
            assert worker.join(timeout=30)
    print(f"\nlogged {time.monotonic() - lost_at:.2f} s after the loss")
    assert took < 1.0 + 4, f"logged {took:.1f} s after the loss, the check interval is 1 s"
    assert _loss_logs(caplog)[0].endswith("make the queue larger (q.resize(), `mjq resize`)")


def test_join_before_start_returns_at_once(queue):
    worker = Worker(queue, lambda job: None)
    assert worker.join(timeout=0) is True  # nothing started, nothing to wait for
    assert worker.join() is True


# -- one worker, several queues --------------------------------------------------------------


def test_a_worker_on_two_queues_takes_the_first_queues_jobs_first(db):
    urgent, bulk = JobQueue(db, "urgent"), JobQueue(db, "bulk")
    bulk.pub_many([{"q": "bulk", "n": n} for n in range(3)])  # older, yet second in line
    urgent.pub_many([{"q": "urgent", "n": n} for n in range(3)])
    order = []

    def handler(job):
        order.append(job.data["q"])
        if len(order) == 4:  # taking from bulk now: urgent gets one more, which goes first
            urgent.pub({"q": "urgent", "n": 3})

    worker = Worker([urgent, bulk], handler, poll=0.2).start(drain=True)
    assert worker.join(timeout=60)
    assert order == ["urgent"] * 3 + ["bulk"] + ["urgent"] + ["bulk"] * 2
    assert worker.queue is urgent and worker.queues == [urgent, bulk]
    assert worker.stats.done == 7
    assert {d["worker"] for q in (urgent, bulk) for d in q.history_collection.find()} == {worker.id}


# A worker waiting on several queues is woken by each queue's tailable cursor (worker.py
# AnyWakeup), not by its re-check of what is due (at most every second): publishes at random
# moments of that second are claimed within WAKE_S (median), where re-checks alone would
# take ~0.5 s.
WAKE_S = 0.1


def test_a_worker_on_two_queues_wakes_for_a_publish_to_either(db):
    urgent, bulk = JobQueue(db, "urgent"), JobQueue(db, "bulk")
    for queue in (urgent, bulk):  # something in each collection for the cursors to follow
        queue.pub({"first": True})
    claimed: list[tuple[object, float]] = []
    lock = threading.Condition()

    def handler(job):
        with lock:
            claimed.append((job.id, time.monotonic()))
            lock.notify_all()

    worker = Worker([urgent, bulk], handler).start()
    rng = random.Random(16)
    latencies = []
    try:
        wait_for(lambda: len(claimed) == 2, 10, "the first jobs")
        publisher = {"urgent": JobQueue(db, "urgent"), "bulk": JobQueue(db, "bulk")}
        for n in range(12):
            time.sleep(rng.uniform(0.15, 0.95))  # the worker idles: anywhere in its second
            sent = time.monotonic()
            job_id = publisher["urgent" if n % 2 else "bulk"].pub({"n": n})
            with lock:
                assert lock.wait_for(lambda job_id=job_id: claimed[-1][0] == job_id, 10)
                latencies.append(claimed[-1][1] - sent)
    finally:
        worker.stop()
        assert worker.join(timeout=30)
    median = statistics.median(latencies)
    shown = ", ".join(f"{s * 1000:.0f}" for s in sorted(latencies))
    print(f"\nclaimed after {shown} ms")
    assert median < WAKE_S, f"claimed after a median {median * 1000:.0f} ms ({shown} ms)"


def test_worker_arguments_are_checked(queue):
    with pytest.raises(ValueError, match="at least one queue"):
        Worker([], lambda job: None)
    with pytest.raises(ValueError, match="heartbeat"):
        Worker(queue, lambda job: None, heartbeat=0)


def test_two_workers_on_one_queue_claim_under_their_own_ids(queue):
    """Workers sharing one JobQueue object each record their own id in the claims they make
    (the id a working job leads to in the registry), and leave the queue's own id alone."""
    queue.pub_many([{"n": 1}, {"n": 2}])
    both_running = threading.Barrier(2, timeout=20)  # each holds its job until the other has one
    claimed, lock = {}, threading.Lock()

    def handler_for(name):
        def handler(job):
            with lock:
                claimed[name] = (job.id, job.get("worker"))
            both_running.wait()

        return handler

    workers = {name: Worker(queue, handler_for(name), concurrency=1, poll=0.1) for name in "ab"}
    for worker in workers.values():
        worker.start(drain=True)
    for worker in workers.values():
        assert worker.join(timeout=60)
    assert workers["a"].id != workers["b"].id
    assert {name: by for name, (_, by) in claimed.items()} == {n: w.id for n, w in workers.items()}
    stored = {d["_id"]: d["worker"] for d in queue.history_collection.find()}
    assert {stored[job_id] for job_id, _ in claimed.values()} == {w.id for w in workers.values()}
    queue.pub({"n": 3})
    assert queue.next().get("worker") == queue.worker_id not in stored.values()
