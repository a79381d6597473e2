"""``prune_history`` covers the ring too: right after it, ``counts()`` and ``q.history()`` tell
the same story, no job finished before the cut-off is left in the ring (but its newest
document, which the wake-up cursors stand on), other programs' finishes are copied to history
before they go, and the ``pruned`` counter stays exact, so nothing reads as lost."""

from __future__ import annotations

import datetime as dt

import pytest

from mjq_notebook import JobQueue
from mjq_notebook.core.parts import retention, sweep

from .support.processes import read_log, start_worker
from .support.waiting import wait_for

FINISHED = {"status": {"$in": ["done", "failed", "cancelled"]}}
OLD = dt.datetime(2016, 1, 6, 12, 0)  # pymjq's naive datetime.now(), long ago


@pytest.fixture
def no_sweep(monkeypatch):
    """Finishes leave their documents in the ring (as between two sweeps, or when no finish
    of ours has swept for a while): the case the issue met."""
    monkeypatch.setattr(sweep, "SWEEP_AFTER", 10**9)
    monkeypatch.setattr(sweep, "SWEEP_EVERY_S", 10**9)


def unswept(q: JobQueue) -> JobQueue:
    q._sweeper.next_at = float("inf")  # not even the first finish sweeps
    return q


def pruned(q: JobQueue) -> int:
    return int((q._meta.find_one({"_id": "counters"}) or {}).get("pruned", 0))


def shown(q: JobQueue) -> dict[str, int]:
    """``counts()`` as ``q.history()`` would have it: jobs per status in the frame."""
    frame = q.history(limit=None)
    assert frame.id.is_unique
    return {status: int((frame.status == status).sum()) for status in frame.status.cat.categories}


def agree(q: JobQueue) -> dict[str, int]:
    counts = q.counts()
    assert counts["lost"] == 0
    assert shown(q) == {k: v for k, v in counts.items() if k != "lost"}
    return counts


def pymjq_finish(q: JobQueue, when: dt.datetime, data: object = 0):
    """A job pymjq published and finished: no history row, no max_attempts, naive times."""
    ts = {"created": when, "started": when, "done": when}
    return q.collection.insert_one({"status": "done", "ts": ts, "data": data}).inserted_id


def test_prune_of_everything_leaves_no_finished_job_in_the_ring(db, no_sweep):
    q = unswept(JobQueue(db, max_attempts=1))
    n = 150
    q.pub_many([{"n": i} for i in range(n)])
    for i in range(n):
        job = q.next(timeout=2)
        if i % 10 == 0:
            q.fail(job, RuntimeError("no"))
        else:
            q.done(job)
    assert q.collection.count_documents(FINISHED) == n  # unswept: the case is exercised
    assert q.prune_history(0) == n
    assert pruned(q) == n
    ring = list(q.collection.find({}, {"_id": 1}))
    assert len(ring) == 1  # the newest document stays: the wake-up cursors stand on it
    counts = agree(q)  # ...and neither counts() nor history() shows it (ours: in history)
    assert counts == {"waiting": 0, "working": 0, "done": 0, "failed": 0, "cancelled": 0,
                      "lost": 0}  # fmt: skip
    assert q.prune_history(0) == 0 and pruned(q) == n  # again: nothing, counted once


def test_prune_by_age_keeps_younger_finishes_and_covers_other_programs(db, no_sweep):
    q = unswept(JobQueue(db, max_attempts=1))
    theirs = [pymjq_finish(q, OLD + dt.timedelta(minutes=i), {"pymjq": i}) for i in range(3)]
    recent = pymjq_finish(q, dt.datetime.now(dt.timezone.utc).replace(tzinfo=None), "recent")
    ids = q.pub_many([{"n": i} for i in range(20)])
    for _ in ids:
        q.done(q.next(timeout=2))
    two_days_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=2)
    aged = {"_id": {"$in": ids[:8]}}  # 8 of ours finished two days ago, in both places
    for collection in (q.collection, q.history_collection):
        collection.update_many(aged, {"$set": {"ts.done": two_days_ago}})
    # one of ours that pymjq's next() finished: status set in place, no history row
    by_pymjq = q.pub({"n": "by pymjq"})
    q.collection.update_one({"_id": by_pymjq}, {"$set": {"status": "done", "ts.done": OLD}})
    q.pub({"n": "waits"})  # the newest document: unfinished

    assert q.prune_history(dt.timedelta(days=1)) == 3 + 8 + 1
    assert pruned(q) == 12
    cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    assert q.collection.count_documents({**FINISHED, "ts.done": {"$lt": cutoff}}) == 0
    gone = [*theirs, *ids[:8], by_pymjq]
    assert q.history_collection.count_documents({"_id": {"$in": gone}}) == 0
    counts = agree(q)
    assert counts["done"] == 12 + 1 and counts["waiting"] == 1  # 12 young of ours, `recent`
    assert recent in set(q.history(limit=None).id)


def test_other_programs_finishes_are_copied_to_history_before_they_go(db, no_sweep, monkeypatch):
    q = unswept(JobQueue(db))
    theirs = [pymjq_finish(q, OLD, {"pymjq": i}) for i in range(4)]
    q.pub({"n": "newest"})

    def fails(*args, **kwargs):
        raise RuntimeError("the delete from history did not happen")

    monkeypatch.setattr(retention, "prune", fails)
    with pytest.raises(RuntimeError):
        q.prune_history(0)
    assert q.collection.count_documents({"_id": {"$in": theirs}}) == 0  # out of the ring...
    copies = list(q.history_collection.find({"_id": {"$in": theirs}}))
    assert sorted(doc["data"]["pymjq"] for doc in copies) == [0, 1, 2, 3]  # ...into history
    monkeypatch.undo()
    assert q.prune_history(0) == 4 and pruned(q) == 4
    assert agree(q)["done"] == 0


def test_the_kept_newest_document_of_another_program_is_shown_until_it_can_go(db, no_sweep):
    q = unswept(JobQueue(db))
    q.pub({"n": 0})
    q.done(q.next(timeout=2))
    newest = pymjq_finish(q, OLD, "theirs, newest")
    assert q.prune_history(0) == 1  # ours; theirs is the ring's newest document: it stays
    assert q.collection.find_one({"_id": newest}) is not None
    assert agree(q)["done"] == 1  # counted and shown alike, from the ring
    q.pub({"n": 1})  # now it is not the newest: the next prune copies and deletes it
    assert q.prune_history(0) == 1 and pruned(q) == 2
    assert q.collection.find_one({"_id": newest}) is None
    assert agree(q) == {"waiting": 1, "working": 0, "done": 0, "failed": 0, "cancelled": 0,
                        "lost": 0}  # fmt: skip


def test_a_prune_racing_workers_loses_nothing_and_counts_exactly(db, server_uri, tmp_path):
    q = JobQueue(db)
    n = 120
    q.pub_many([{"n": i} for i in range(n)])
    log = tmp_path / "ran.log"
    workers = [start_worker(server_uri, db, "record", log) for _ in range(2)]
    went, rounds = 0, 0
    try:
        wait_for(lambda: read_log(log), 60, "the workers to start")
        while len(read_log(log)) < n:  # prune while they finish jobs
            went += q.prune_history(0)
            rounds += 1
            assert q.counts()["lost"] == 0
        wait_for(lambda: q.counts()["working"] == 0, 30, "the last finish")
    finally:
        for worker in workers:
            worker.kill()
            worker.wait(10)
    assert rounds > 1 and 0 < went < n  # it did race: some went while others still ran
    went += q.prune_history(0)
    assert went == n == pruned(q)  # each job pruned once, counted once
    ran = [line[0] for line in read_log(log)]
    assert len(ran) == len(set(ran)) == n
    newest = q.collection.find_one({}, {"_id": 1}, sort=[("_id", -1)])["_id"]
    assert q.collection.count_documents({**FINISHED, "_id": {"$ne": newest}}) == 0
    assert agree(q) == {"waiting": 0, "working": 0, "done": 0, "failed": 0, "cancelled": 0,
                        "lost": 0}  # fmt: skip
