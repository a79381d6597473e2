"""Steering a queue from outside its workers: pause and resume, cancel, run now, release a
lost worker's job, and progress from a running job. The races run as real processes against
the real server."""

from __future__ import annotations

import itertools
import os
import signal
import statistics
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from mjq_notebook import Empty, JobQueue, JobQueueError, LeaseLostError
from mjq_notebook.core.parts import progress as progress_module

from .support.waiting import wait_for


def _python(uri: str, db: str, code: str, *args: str) -> subprocess.Popen:
    """A process running ``code`` with ``q`` (a JobQueue of ``db``) and ``sys.argv`` set."""
    prelude = (
        "import sys, time\n"
        "from mjq_notebook import JobQueue, Empty, LeaseLostError\n"
        "from mjq_notebook.server import client_for\n"
        f"q = JobQueue(client_for({uri!r})[{db!r}])\n"
        "print('ready', flush=True)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", prelude + textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert process.stdout.readline().strip() == "ready"
    return process


# a consumer: claims and finishes jobs until told to stop, printing "<id> <claim time>"
CONSUMER = """
    deadline = time.time() + float(sys.argv[1])
    pause = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
    while time.time() < deadline:
        try:
            job = q.next(timeout=0.2)
        except Empty:
            continue
        print(job.id, time.time(), flush=True)
        time.sleep(pause)
        q.done(job)
"""


def _claims(process: subprocess.Popen) -> list[tuple[str, float]]:
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0, out
    return [(line.split()[0], float(line.split()[1])) for line in out.splitlines() if line]


# -- pause and resume ----------------------------------------------------------------------


def test_paused_queue_gives_no_job_and_publishing_goes_on(queue):
    queue.pub({"n": 1})
    assert queue.paused is False
    queue.pause()
    assert queue.paused is True
    job_id = queue.pub({"n": 2})  # publishing is never paused
    with pytest.raises(Empty, match="paused"):
        queue.next()
    with pytest.raises(Empty, match="paused"):
        queue.next(timeout=0.6)
    assert queue.counts()["waiting"] == 2 and queue.get(job_id)["status"] == "waiting"
    queue.resume()
    assert queue.paused is False
    assert queue.next().data == {"n": 1}


def test_a_consumer_waiting_on_a_paused_queue_starts_within_a_second_of_resume(queue, db):
    queue.pause()
    queue.pub({"n": 1})
    claimed = []
    consumer = JobQueue(db)
    thread = threading.Thread(
        target=lambda: claimed.append((consumer.next(timeout=20), time.monotonic()))
    )
    thread.start()
    time.sleep(1.0)  # it waits on the paused queue
    assert not claimed
    resumed = time.monotonic()
    queue.resume()
    thread.join(timeout=20)
    assert claimed, "the consumer never claimed after resume()"
    assert claimed[0][1] - resumed < 1.0


def test_three_worker_processes_take_nothing_while_paused(db, server_uri):
    """Within a second of pause(), no process claims; within a second of resume(), they do."""
    q = JobQueue(db)
    q.pub_many([{"n": n} for n in range(300)])
    consumers = [_python(server_uri, db.name, CONSUMER, "14", "0.1") for _ in range(3)]
    wait_for(lambda: q.counts(warn=False)["done"] >= 3, 20, "the consumers working")
    q.pause()
    paused_at = time.time()
    time.sleep(4.0)
    published = q.pub({"published": "while paused"}, priority=10)
    time.sleep(2.0)
    resumed_at = time.time()
    q.resume()
    claims = [claim for process in consumers for claim in _claims(process)]
    during = [t for _, t in claims if paused_at + 1.0 <= t < resumed_at]
    assert during == [], f"{len(during)} claims while the queue was paused"
    after = sorted(t for _, t in claims if t >= resumed_at)
    assert after, "no claim after resume()"
    assert after[0] - resumed_at < 1.0
    assert q.get(published)["status"] == "done"
    assert any(t < paused_at for _, t in claims)  # they were working when paused


# -- cancel and promote --------------------------------------------------------------------


def test_cancel_is_final_kept_in_history_and_never_claimed(queue):
    job_id = queue.pub({"oops": True})
    delayed = queue.pub({"later": True}, delay=3600)
    assert queue.cancel(job_id) is True
    assert queue.cancel(queue.get(delayed)) is True  # a job (a mapping) works as well
    assert queue.cancel(job_id) is False  # already cancelled
    with pytest.raises(Empty):
        queue.next()
    counts = queue.counts()
    assert (counts["cancelled"], counts["waiting"], counts["lost"]) == (2, 0, 0)
    assert queue.history_collection.find_one({"_id": job_id})["status"] == "cancelled"
    assert queue.get(job_id)["ts"]["done"] is not None
    assert queue.retry(job_id) is False  # cancelled is not failed
    frame = queue.history()
    statuses = dict(zip(frame["id"].astype(str), frame["status"], strict=True))
    assert statuses[str(job_id)] == "cancelled"


def test_only_a_waiting_job_can_be_cancelled(queue):
    queue.pub({"n": 1})
    running = queue.next()
    assert queue.cancel(running) is False
    queue.done(running)
    assert queue.cancel(running.id) is False
    assert queue.get(running.id)["status"] == "done"


def test_a_cancel_whose_job_ran_an_attempt_after_its_read_changes_nothing(db, monkeypatch):
    """Forced, not hoped for: right after cancel reads the waiting job, another worker claims
    it and fails it (attempts remain, so it waits again). The cancel must then lose: the job
    is not cancelled, and no cancelled row stands in history for the attempt it ran."""
    q = JobQueue(db, max_attempts=3, backoff=0)
    worker = JobQueue(db, max_attempts=3, backoff=0)  # its own collection object: unpatched
    job_id = q.pub({"n": 1})
    read = q.collection.find_one
    raced = []

    def find_one(filter=None, *args, **kwargs):
        doc = read(filter, *args, **kwargs)
        if not raced and doc is not None and doc.get("status") == "waiting":
            raced.append(worker.next(timeout=0))  # between cancel's read and its writes
            worker.fail(raced[0], RuntimeError("attempt 1"))
        return doc

    monkeypatch.setattr(q.collection, "find_one", find_one)
    assert q.cancel(job_id) is False
    assert raced and raced[0].id == job_id  # the interleaving did happen
    monkeypatch.undo()
    doc = q.collection.find_one({"_id": job_id})
    assert (doc["status"], doc["attempts"]) == ("waiting", 1)
    assert doc["error"]["message"] == "attempt 1"
    assert q.history_collection.count_documents({"_id": job_id}) == 0
    assert (q.counts()["cancelled"], q.counts()["waiting"]) == (0, 1)
    q.done(q.next(timeout=5))  # the job runs on, its attempts counted
    row = q.history_collection.find_one({"_id": job_id})
    assert (row["status"], row["attempts"]) == ("done", 2)


def test_cancel_racing_claims_ends_each_job_once(db, server_uri):
    """200 jobs; two processes cancel every one while two claim them: each job ends exactly
    one of cancelled or done, and the counts say so."""
    q = JobQueue(db, max_jobs=1000)
    ids = [str(i) for i in q.pub_many([{"n": n} for n in range(200)])]
    canceller = """
        from bson import ObjectId
        ids = [ObjectId(line) for line in sys.stdin.read().split()]  # the ids are the go
        for job_id in ids:
            if q.cancel(job_id):
                print(job_id, time.time(), flush=True)
    """
    cancellers = [_python(server_uri, db.name, canceller) for _ in range(2)]
    claimers = [_python(server_uri, db.name, CONSUMER, "12") for _ in range(2)]
    # the cancellers start once the claimers are taking jobs, however slow their start was
    wait_for(lambda: q.counts(warn=False)["done"] >= 3, 30, "the claimers working")
    for p, order in zip(cancellers, (ids, ids[::-1]), strict=True):
        p.stdin.write("\n".join(order))
        p.stdin.close()
    cancelled = []
    for p in cancellers:
        out = p.stdout.read()
        p.wait(timeout=120)
        assert p.returncode == 0, out
        cancelled += [line.split()[0] for line in out.splitlines() if line]
    done = [job_id for process in claimers for job_id, _ in _claims(process)]
    assert len(cancelled) == len(set(cancelled)), "a job was cancelled twice"
    assert len(done) == len(set(done)), "a job was done twice"
    assert not set(cancelled) & set(done), "a job was both cancelled and done"
    assert set(cancelled) | set(done) == set(ids)
    assert cancelled and done, "the race never happened"
    counts = q.counts()
    assert counts == {
        "waiting": 0,
        "working": 0,
        "done": len(done),
        "failed": 0,
        "cancelled": len(cancelled),
        "lost": 0,
    }


def test_promote_makes_a_delayed_job_due_now(queue):
    job_id = queue.pub({"later": True}, delay=3600)
    with pytest.raises(Empty):
        queue.next()
    assert queue.promote(job_id) is True
    assert queue.promote(job_id) is False  # due already
    assert queue.next(timeout=2).id == job_id


def test_promote_runs_a_retry_waiting_out_its_back_off(db):
    q = JobQueue(db, backoff=3600)
    job_id = q.pub({"n": 1})
    q.fail(q.next(), RuntimeError("first"))
    with pytest.raises(Empty):
        q.next()
    assert q.promote(job_id) is True
    retry = q.next(timeout=2)
    assert (retry.id, retry.attempts) == (job_id, 2)


# -- release a lost worker's job -----------------------------------------------------------


def test_release_now_hands_a_stopped_workers_job_back_exactly_once(db, server_uri):
    """The worker holding the job is SIGSTOPped (as if lost); reclaim() hands the job back,
    another worker finishes it; the first, continued, cannot also finish it."""
    q = JobQueue(db)
    job_id = q.pub({"n": 1})
    holder = _python(
        server_uri,
        db.name,
        """
        job = q.next(timeout=10)
        print("claimed", job.id, flush=True)
        time.sleep(float(sys.argv[1]))
        try:
            q.done(job, "late")
            print("done", flush=True)
        except LeaseLostError:
            print("lost", flush=True)
        """,
        "2",
    )
    assert holder.stdout.readline().split() == ["claimed", str(job_id)]
    os.kill(holder.pid, signal.SIGSTOP)
    try:
        held = q.get(job_id)
        assert held["status"] == "working"
        assert q.reclaim(held) is True
        assert q.reclaim(held) is False  # once
        taken = q.next(timeout=5)
        assert taken.id == job_id and taken.attempts == 2
        assert q.reclaim(held) is False  # the later claim is not that attempt's
        q.done(taken, "on time")
    finally:
        os.kill(holder.pid, signal.SIGCONT)
    out, _ = holder.communicate(timeout=30)
    assert out.split() == ["lost"]
    final = q.get(job_id)
    assert (final["status"], final["result"], final["attempts"]) == ("done", "on time", 2)
    assert q.history_collection.count_documents({"_id": job_id}) == 1
    assert q.counts()["done"] == 1


# -- progress ------------------------------------------------------------------------------


def test_progress_reaches_the_queue_within_a_second_rate_limited(queue, monkeypatch):
    writes = []  # when each write went out
    queue.pub({"n": 1})
    job = queue.next()
    original = job._progress._write
    monkeypatch.setattr(
        job._progress, "_write", lambda v: (writes.append(time.monotonic()), original(v))
    )
    start = time.monotonic()
    for n in range(1, 2001):  # as fast as a loop can call it, for about 1.5 s
        job.progress(n, 2000, f"step {n}")
        time.sleep(0.00075)
    wait_for(lambda: queue.get(job.id).get("progress", {}).get("done") == 2000, 2, "the last")
    seen_at = time.monotonic() - start
    assert len(writes) <= 2 + seen_at / progress_module.EVERY_S, len(writes)
    stored = queue.get(job.id)["progress"]
    assert (stored["done"], stored["total"], stored["message"]) == (2000, 2000, "step 2000")
    gaps = [b - a for a, b in itertools.pairwise(writes)]
    assert all(g >= 0.9 * progress_module.EVERY_S for g in gaps), gaps
    queue.done(job)
    kept = queue.history_collection.find_one({"_id": job.id})["progress"]
    assert kept["done"] == 2000  # the last value stays in history


def test_progress_of_a_handler_is_seen_while_it_runs(queue):
    queue.pub({"n": 1})
    seen = []
    with queue.claim() as job:
        job.progress(1, 3, "first")
        wait_for(lambda: queue.get(job.id).get("progress"), 1.5, "the first report")
        seen.append(queue.get(job.id)["progress"]["message"])
        job.progress(2, message="no total")
    assert seen == ["first"]
    stored = queue.get(job.id)["progress"]
    assert (stored["done"], stored["total"], stored["message"]) == (2, None, "no total")


@pytest.mark.parametrize(
    ("args", "why"),
    [((-1,), "not negative"), ((1, 0), "more than 0"), ((float("nan"),), "finite"),
     (("1",), "numbers"), ((1, 2, 3), "string")],
)  # fmt: skip
def test_bad_progress_is_a_clear_error_and_writes_nothing(queue, args, why):
    queue.pub({"n": 1})
    job = queue.next()
    with pytest.raises(ValueError, match=why):
        job.progress(*args)
    assert "progress" not in queue.get(job.id)


def test_progress_of_an_unclaimed_job_says_why(queue):
    queue.pub({"n": 1})
    [job] = queue.jobs()
    with pytest.raises(JobQueueError, match="not claimed in this process"):
        job.progress(1)


def test_a_late_progress_report_never_overwrites_another_claim(db):
    q = JobQueue(db, lease=0.3)
    q.pub({"n": 1})
    first = q.next()
    time.sleep(0.5)  # its lease runs out; another worker takes the job over
    second = JobQueue(db).next(timeout=5)
    second._progress.update({"done": 2, "total": None, "message": "mine", "at": None})
    first.progress(1, message="late")
    with pytest.raises(LeaseLostError):
        q.done(first)
    assert q.get(second.id)["progress"]["message"] == "mine"


def test_progress_writes_cost_one_a_second_whatever_the_rate(queue):
    """The median gap between stored writes stays about EVERY_S at any call rate."""
    queue.pub({"n": 1})
    job = queue.next()
    stamps = []
    original = job._progress._write
    job._progress._write = lambda v: (stamps.append(time.monotonic()), original(v))
    end = time.monotonic() + 3.2
    n = 0
    while time.monotonic() < end:
        n += 1
        job.progress(n)
    assert n > 1000
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert 3 <= len(stamps) <= 5 and statistics.median(gaps) >= 0.9


# -- retention -----------------------------------------------------------------------------


def test_prune_history_keeps_counts_true(queue):
    """Pruned jobs leave history but stay counted as finished, never as lost."""
    queue.pub_many([{"n": n} for n in range(6)])
    for _ in range(4):
        queue.done(queue.next())
    time.sleep(1.1)
    queue.done(queue.next())  # this one is newer than the cut-off
    assert queue.prune_history(1.0) == 4
    assert queue.history_collection.count_documents({}) == 1
    counts = queue.counts()
    assert (counts["done"], counts["waiting"], counts["lost"]) == (1, 1, 0)
    assert queue.prune_history(1.0) == 0
    with pytest.raises(ValueError, match="0 or more"):
        queue.prune_history(-5)


def test_history_and_summary_know_cancelled_jobs(queue):
    """A cancelled job never ran: it is a row of history with no wait or run time, and the
    summary's failure rate is over the jobs that ran."""
    from mjq_notebook.analysis.history import summary

    ran, failed, cancelled = queue.pub({"n": 1}), queue.pub({"n": 2}), queue.pub({"n": 3})
    queue.cancel(cancelled)
    queue.done(queue.next())
    queue.fail(queue.next(), "no")
    queue.fail(queue.next(timeout=5), "no again")
    queue.fail(queue.next(timeout=5), "for good")
    frame = queue.history().set_index("id")
    assert frame.loc[cancelled, "status"] == "cancelled"
    assert frame.loc[cancelled, ["wait_s", "run_s"]].isna().all()
    table = summary(frame)
    assert table["failure_rate"].iloc[0] == 0.5  # 1 done, 1 failed; the cancelled one not
    assert {ran, failed} <= set(frame.index)


def test_two_cancels_of_one_job_leave_it_cancelled_in_history(db):
    """Racing cancels of the same jobs: one wins each, and the loser never takes back the
    winner's history row (the job would read as lost)."""
    queues = [JobQueue(db), JobQueue(db)]
    ids = queues[0].pub_many([{"n": n} for n in range(60)])
    won = [[], []]
    start = threading.Barrier(2)

    def cancel_all(i: int) -> None:
        start.wait()
        won[i] = [job_id for job_id in ids if queues[i].cancel(job_id)]

    threads = [threading.Thread(target=cancel_all, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(won[0] + won[1]) == sorted(ids)
    assert queues[0].history_collection.count_documents({"status": "cancelled"}) == len(ids)
    counts = queues[0].counts()
    assert (counts["cancelled"], counts["lost"]) == (len(ids), 0)
