"""Writes that go together: one client bulkWrite on MongoDB 8.0+, one write each before."""

from __future__ import annotations

import pytest
from pymongo import WriteConcern, monitoring
from pymongo.errors import ConnectionFailure

from mjq_notebook import JobQueue, LeaseLostError, embedded_server
from mjq_notebook.core.parts import writes
from mjq_notebook.server import client_for

from .support.servers import TEST_URI


@pytest.fixture(params=["together", "one by one"])
def any_queue(request, db):
    q = JobQueue(db, lease=0.3)
    if request.param == "one by one":
        q._fuse = False
    elif not q._fuse:
        pytest.skip("the server predates MongoDB 8.0's client bulkWrite")
    return q


def test_publishing_counts_what_it_writes(any_queue):
    any_queue.pub({"n": 0})
    any_queue.pub_many([{"n": n} for n in range(1, 4)])
    assert any_queue.collection.count_documents({}) == 4
    assert any_queue.db[f"{any_queue.name}.meta"].find_one()["published"] == 4


def test_finishing_writes_history_and_queue(any_queue):
    any_queue.pub_many([{"n": 1}, {"n": 2}])
    first, second = any_queue.next(timeout=0), any_queue.next(timeout=0)
    any_queue.done(first, result="ok")
    any_queue.fail(second, RuntimeError("no"))  # retried: stays out of history
    assert any_queue.get(first.id)["status"] == "done"
    assert [d["_id"] for d in any_queue.history_collection.find()] == [first.id]
    assert any_queue.history_collection.find_one()["result"] == "ok"


def test_a_lost_lease_leaves_no_history_behind(any_queue):
    any_queue.pub({})
    late = any_queue.next(timeout=0)
    rival = JobQueue(any_queue.db)
    rescued = rival.next(timeout=5)  # after the 0.3 s lease
    with pytest.raises(LeaseLostError):
        any_queue.done(late, result="too late")
    assert any_queue.history_collection.count_documents({}) == 0
    rival.done(rescued, result="rescued")
    assert any_queue.history_collection.find_one()["result"] == "rescued"


@pytest.mark.skipif(bool(TEST_URI), reason="stops the embedded server")
@pytest.mark.parametrize("together", [True, False])
def test_an_unreachable_server_raises_connection_failure_either_way(together):
    with embedded_server() as server:
        db = client_for(server.uri, timeout=0.5)["w"]
        if together and not writes.supports_client_bulk_write(db):
            pytest.skip("no client bulkWrite")
        server.stop()
        planned = [writes.Insert(db.a, [{"x": 1}]), writes.Update(db.b, {}, {"$set": {"y": 1}})]
        with pytest.raises(ConnectionFailure):
            writes.run(db, planned, together=together)


class _Writes(monitoring.CommandListener):
    """The write commands a client sends, with the write concern each carries."""

    NAMES = ("insert", "update", "delete", "findAndModify", "bulkWrite")

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict | None]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in self.NAMES:
            self.sent.append((event.command_name, event.command.get("writeConcern")))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.mark.parametrize("together", [True, False])
def test_every_write_of_a_queue_waits_for_its_write_concern(server_uri, db, together):
    recorder = _Writes()
    client = client_for(server_uri, event_listeners=[recorder])
    try:
        q = JobQueue(client[db.name], write_concern=WriteConcern(w=1, j=True), backoff=0)
        if together and not q._fuse:
            pytest.skip("the server predates MongoDB 8.0's client bulkWrite")
        q._fuse = together
        recorder.sent.clear()
        q.pub({"n": 0})
        q.pub_many([{"n": 1}, {"n": 2}])
        q.done(q.next())
        q.fail(q.next(), "once")  # retried: back to waiting
        q.release(q.next())
        q.fail(q.next(), RuntimeError("no luck"))
        assert {name for name, _ in recorder.sent} >= {"findAndModify"}
        assert len(recorder.sent) >= 8
        assert all(concern == {"w": 1, "j": True} for _, concern in recorder.sent), recorder.sent
        # the queue's own write concern, not the client's: other collections are untouched
        recorder.sent.clear()
        client[db.name]["other"].insert_one({})
        assert recorder.sent == [("insert", None)]
    finally:
        client.close()
