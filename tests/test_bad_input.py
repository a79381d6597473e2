"""Bad input gets a clear error and writes nothing."""

from __future__ import annotations

import datetime as dt

import pytest

from mjq_notebook import InvalidQueueError, JobQueue, PublishError


def _written(db) -> int:
    return sum(db[name].count_documents({}) for name in db.list_collection_names())


@pytest.mark.parametrize(
    "data, message",
    [
        ({"x": object()}, "can't be stored as BSON"),
        ({"x": {1, 2}}, "can't be stored as BSON"),
        ({"big": 2**70}, "can't be stored as BSON"),
        ({"blob": "x" * (16 * 2**20 + 1)}, "16 MiB"),
    ],
)
def test_pub_rejects_unstorable_data(queue, data, message):
    before = _written(queue.db)
    with pytest.raises(PublishError, match=message) as info:
        queue.pub(data)
    assert "nothing was written" in str(info.value)
    assert isinstance(info.value, ValueError)
    assert _written(queue.db) == before


def test_pub_many_writes_nothing_when_one_item_is_bad(queue):
    with pytest.raises(PublishError, match="job 2"):
        queue.pub_many([{"ok": 1}, {"ok": 2}, {"bad": object()}, {"ok": 4}])
    assert queue.collection.count_documents({}) == 0
    assert queue.counts()["waiting"] == 0


def test_unstorable_result_leaves_the_job_working(queue):
    queue.pub({})
    job = queue.next(timeout=0)
    with pytest.raises(PublishError, match="result"):
        queue.done(job, result=object())
    assert queue.get(job.id)["status"] == "working"
    assert queue.history_collection.count_documents({}) == 0


def test_non_capped_collection_is_never_written(db):
    db.create_collection("jobqueue")
    db.jobqueue.insert_one({"mine": True})
    q = JobQueue(db)
    assert q.valid() is False
    with pytest.raises(InvalidQueueError, match="not capped"):
        q.pub({"x": 1})
    with pytest.raises(InvalidQueueError, match="not capped"):
        q.pub_many([{"x": 1}])
    with pytest.raises(InvalidQueueError, match="not capped"):
        q.next(timeout=0)
    with pytest.raises(InvalidQueueError, match="not capped"):
        q.clear_queue()
    assert list(db.jobqueue.find({}, {"_id": 0})) == [{"mine": True}]
    assert list(db.jobqueue.index_information()) == ["_id_"]
    assert sorted(db.list_collection_names()) == ["jobqueue"]


def test_naive_datetimes_in_data_round_trip_as_utc(queue):
    job_id = queue.pub({"when": dt.datetime(2024, 1, 2, 3, 4, 5)})
    assert queue.get(job_id)["data"]["when"] == dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
