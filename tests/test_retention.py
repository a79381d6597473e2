"""Retention: ``prune`` deletes history rows finished before a cut-off, in batches along the
``ts.done`` index, and counts every one it deleted in ``<queue>.meta`` (so ``counts()`` can
tell a pruned job from a lost one), by outcome too (so finished totals never fall). Against
the real server, calling ``prune`` directly."""

from __future__ import annotations

import datetime as dt

import pytest
from bson import ObjectId
from pymongo import monitoring
from pymongo.errors import AutoReconnect

from mjq_notebook import JobQueue
from mjq_notebook.core.parts.retention import prune
from mjq_notebook.server import client_for

CUTOFF = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
OLD, NEW = 230, 40
FAILED = len(range(0, OLD, 7))  # of the OLD rows (see ``history``)


def at(seconds: float) -> dt.datetime:
    return CUTOFF + dt.timedelta(seconds=seconds)


def finished(done: dt.datetime | None, status: str = "done") -> dict:
    """A history row as a finish writes it (the fields prune looks at, and a few more)."""
    created = (done or CUTOFF) - dt.timedelta(seconds=5)
    return {
        "_id": ObjectId(),
        "status": status,
        "ts": {"created": created, "started": created, "done": done},
        "data": {"n": 1},
        "attempts": 1,
        "max_attempts": 3,
    }


@pytest.fixture
def history(db):
    """A queue's history and meta collections (made, with their indexes, by JobQueue): OLD
    rows finished before CUTOFF (some failed), NEW at or after it, and the publish counter."""
    queue = JobQueue(db, "pruning", lease=30)
    rows = [finished(at(-86_400 * 30 + i * 600), "failed" if i % 7 == 0 else "done")
            for i in range(OLD)]  # fmt: skip
    rows += [finished(at(i)) for i in range(NEW)]  # the first exactly at the cut-off
    queue.history_collection.insert_many(rows)
    meta = db["pruning.meta"]
    meta.update_one({"_id": "counters"}, {"$set": {"published": OLD + NEW}}, upsert=True)
    return queue.history_collection, meta


def counters(meta) -> dict:
    return meta.find_one({"_id": "counters"}, {"_id": 0}) or {}


def test_only_rows_finished_before_the_cutoff_go(history):
    rows, meta = history
    kept = {doc["_id"] for doc in rows.find({"ts.done": {"$gte": CUTOFF}}, {"_id": 1})}
    assert prune(rows, meta, CUTOFF, batch=50) == OLD
    assert {doc["_id"] for doc in rows.find({}, {"_id": 1})} == kept
    assert rows.count_documents({}) == NEW
    assert counters(meta) == {
        "published": OLD + NEW,
        "pruned": OLD,
        "pruned_by": {"done": OLD - FAILED, "failed": FAILED},
    }


def test_a_second_run_deletes_nothing_and_a_later_cutoff_adds_to_the_count(history):
    rows, meta = history
    assert prune(rows, meta, CUTOFF) == OLD
    assert prune(rows, meta, CUTOFF) == 0
    assert counters(meta)["pruned"] == OLD
    assert prune(rows, meta, at(10), batch=3) == 10  # at(0) .. at(9)
    assert counters(meta)["pruned"] == OLD + 10
    assert rows.count_documents({}) == NEW - 10


def test_rows_without_a_finish_time_are_kept(history):
    rows, meta = history
    rows.insert_many([finished(None), {"_id": ObjectId(), "status": "done"}])
    assert prune(rows, meta, at(86_400 * 365)) == OLD + NEW
    assert rows.count_documents({}) == 2


def test_any_time_zone_names_the_same_instant(history):
    rows, meta = history
    paris = dt.timezone(dt.timedelta(hours=2))
    assert prune(rows, meta, CUTOFF.astimezone(paris) + dt.timedelta(seconds=5)) == OLD + 5


def test_a_naive_or_wrong_cutoff_writes_nothing(history):
    rows, meta = history
    with pytest.raises(ValueError, match="timezone-aware"):
        prune(rows, meta, dt.datetime(2026, 3, 1))  # naive on purpose
    with pytest.raises(TypeError, match="datetime"):
        prune(rows, meta, "2026-03-01")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch"):
        prune(rows, meta, CUTOFF, batch=0)
    assert rows.count_documents({}) == OLD + NEW
    assert counters(meta) == {"published": OLD + NEW}


def test_nothing_to_prune_writes_nothing(db):
    queue = JobQueue(db, "empty", lease=30)
    meta = db["empty.meta"]
    assert prune(queue.history_collection, meta, CUTOFF) == 0
    assert meta.find_one({"_id": "counters"}) is None


class _Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[dict] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("find", "delete", "update"):
            self.commands.append({"name": event.command_name, **event.command})

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_deletes_go_in_batches_oldest_first_each_counted_first(history, server_uri, db):
    listener = _Commands()
    client = client_for(server_uri, event_listeners=[listener])
    try:
        rows, meta = client[db.name]["pruning.history"], client[db.name]["pruning.meta"]
        assert prune(rows, meta, CUTOFF, batch=100) == OLD
    finally:
        client.close()
    names = [command["name"] for command in listener.commands]
    # each batch counted before its deletes (one per outcome, each counted exactly), so
    # counts() never takes it for lost
    assert names == ["find", "update", "delete", "delete"] * 3  # 100, 100, 30: the last is short
    finds = [command for command in listener.commands if command["name"] == "find"]
    assert all(command["sort"] == {"ts.done": 1} and command["limit"] == 100 for command in finds)
    deletes = [command for command in listener.commands if command["name"] == "delete"]
    # done rows, then failed ones (i % 7 == 0): 85 + 15, 86 + 14, 26 + 4
    assert [len(d["deletes"][0]["q"]["_id"]["$in"]) for d in deletes] == [85, 15, 86, 14, 26, 4]
    updates = [command for command in listener.commands if command["name"] == "update"]
    assert [u["updates"][0]["u"] for u in updates] == [
        {"$inc": {"pruned_by.done": done, "pruned_by.failed": failed, "pruned": done + failed}}
        for done, failed in ((85, 15), (86, 14), (26, 4))
    ]


def test_a_delete_cut_short_still_counts_what_went(history, monkeypatch):
    """The connection drops after the server deleted a batch's first rows (its done ones):
    what went is counted all the same (else those jobs would read as lost), and the error
    reaches the caller."""
    rows, meta = history
    real = rows.delete_many

    def deleted_then_dropped(*args, **kwargs):
        real(*args, **kwargs)
        raise AutoReconnect("connection closed")

    monkeypatch.setattr(rows, "delete_many", deleted_then_dropped)
    with pytest.raises(AutoReconnect):
        prune(rows, meta, CUTOFF, batch=100)
    assert counters(meta)["pruned"] == 85 == OLD + NEW - rows.count_documents({})
    assert counters(meta)["pruned_by"] == {"done": 85, "failed": 0}  # the done went first
    monkeypatch.undo()
    assert prune(rows, meta, CUTOFF, batch=100) == OLD - 85
    assert counters(meta)["pruned"] == OLD


def test_rows_someone_else_deleted_meanwhile_are_not_counted(history, monkeypatch):
    """Between the batch's find and its delete another process deleted one of its rows (a
    requeue of a failed job, say): the count taken ahead is put right."""
    rows, meta = history
    real = rows.delete_many
    taken = []

    def someone_first(query, *args, **kwargs):
        failed = rows.find_one({"_id": {"$in": query["_id"]["$in"]}, "status": "failed"})
        if not taken and failed:
            taken.append(failed["_id"])
            rows.delete_one({"_id": taken[0]})
        return real(query, *args, **kwargs)

    monkeypatch.setattr(rows, "delete_many", someone_first)
    assert prune(rows, meta, CUTOFF, batch=100) == OLD - 1
    assert counters(meta)["pruned"] == OLD - 1
    assert counters(meta)["pruned_by"] == {"done": OLD - FAILED, "failed": FAILED - 1}
