"""Bulk retry and bulk cancel racing two real claiming processes (and each other, from two
clients): afterwards every job has ended exactly once, nothing is lost, and each call's
count is exactly the jobs it changed, as the documents and the audit say."""

from __future__ import annotations

import collections
import signal
import threading

from mjq_notebook import JobQueue
from mjq_notebook.core.audit import MAX_IDS, Actor, Steering
from mjq_notebook.core.parts import bulk
from mjq_notebook.server import client_for

from .support.processes import read_log, start_worker
from .support.waiting import wait_for

WAITING = 80  # jobs (3 in 4 of kind x) the workers and the cancels race for
FAILED = 30  # failed jobs of kind x, which the retries put back (and the cancels may take)
OTHERS = 40  # more jobs of kind y: nobody's target


assert WAITING * 3 // 4 + FAILED < MAX_IDS  # the audit keeps every id a call changed


def _in_threads(*calls):
    """Run ``calls`` at once, each in a thread; their results, in order."""
    results: list = [None] * len(calls)
    errors: list = []
    start = threading.Barrier(len(calls))

    def run(index, call):
        start.wait(10)
        try:
            results[index] = call()
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    assert not any(thread.is_alive() for thread in threads), "a bulk action hung"
    return results


def test_bulk_retry_and_cancel_racing_two_claiming_processes(db, server_uri, tmp_path, monkeypatch):
    monkeypatch.setattr(bulk, "BATCH", 7)  # many batches, interleaved with the claims
    q = JobQueue(db, lease=30)
    failed = set(q.pub_many([{"kind": "x", "f": n} for n in range(FAILED)], max_attempts=1))
    for _ in range(FAILED):
        q.fail(q.next(), RuntimeError("boom"))
    assert q.counts()["failed"] == FAILED
    kinds = ["x" if n % 4 and n < WAITING else "y" for n in range(WAITING + OTHERS)]
    waiting = q.pub_many([{"kind": kind, "n": n} for n, kind in enumerate(kinds)])
    log = tmp_path / "ran.log"
    workers = [start_worker(server_uri, db, "record", log, sleep="0.02") for _ in range(2)]
    second = client_for(server_uri)
    try:
        wait_for(lambda: len(read_log(log)) >= 5, 60, "the workers to run jobs")
        theirs = JobQueue(second[db.name], lease=30)
        hands = Steering(q, Actor.here("notebook"))
        retried = [[], []]
        cancelled = [[], []]
        counts = _in_threads(
            lambda: hands.retry_all("data.kind:x"),
            lambda: theirs.retry_all({"data.kind": "x"}, changed=retried[1]),
            lambda: hands.cancel_all("data.kind:x"),
            lambda: theirs.cancel_all("status:waiting data.kind:x", changed=cancelled[1]),
        )
        assert len(read_log(log)) < len(waiting), "the workers were done before the race"
        wait_for(lambda: q.counts()["waiting"] + q.counts()["working"] == 0, 120, "the rest")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.wait(30)
            except Exception:
                worker.kill()
        second.close()

    # who did what, from the audit (the Steering's calls) and the ids returned (the others)
    entries = {entry["action"]: entry for entry in q.audit()}
    retried[0] = entries["retry all"]["jobs"] if counts[0] else []
    cancelled[0] = entries["cancel all"]["jobs"] if counts[2] else []
    assert len(retried[0]) == counts[0] and len(retried[1]) == counts[1]  # all under MAX_IDS
    assert len(cancelled[0]) == counts[2] and len(cancelled[1]) == counts[3]
    assert entries.get("retry all", {"count": 0})["count"] == counts[0]
    assert entries.get("cancel all", {"count": 0})["count"] == counts[2]

    # each failed job was retried by exactly one of the two calls
    assert not set(retried[0]) & set(retried[1])
    assert set(retried[0]) | set(retried[1]) == failed
    assert counts[0] + counts[1] == FAILED
    # each cancel counted is a job cancelled by that call, and every cancelled job is one
    assert not set(cancelled[0]) & set(cancelled[1])
    history = {doc["_id"]: doc for doc in q.history_collection.find()}
    is_cancelled = {i for i, doc in history.items() if doc["status"] == "cancelled"}
    assert set(cancelled[0]) | set(cancelled[1]) == is_cancelled
    assert counts[2] + counts[3] == len(is_cancelled) > 0

    # every job ended exactly once: in history once, finished, and the ring holds none unfinished
    every = failed | set(waiting)
    assert set(history) == every
    assert q.collection.count_documents({"status": {"$in": ["waiting", "working"]}}) == 0
    runs = collections.Counter(job_id for job_id, *_ in read_log(log))
    done = {i for i, doc in history.items() if doc["status"] == "done"}
    assert {str(i) for i in done} == set(runs) and max(runs.values()) == 1, "ran twice"
    assert not {str(i) for i in is_cancelled} & set(runs), "a cancelled job ran"
    assert {history[i]["data"]["kind"] for i in is_cancelled} == {"x"}
    assert all(history[i]["attempts"] == 2 for i in failed & done)  # retried, then ran
    assert all(history[i]["status"] != "failed" for i in failed)
    final = q.counts()
    assert final == {
        "waiting": 0,
        "working": 0,
        "done": len(done),
        "failed": 0,
        "cancelled": len(is_cancelled),
        "lost": 0,
    }
    assert len(done) + len(is_cancelled) == len(every)
