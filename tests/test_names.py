"""Queue names: a companion's, a reserved or a too long name is refused before anything is
created; a failed creation leaves nothing; what others made beside a queue is not listed."""

from __future__ import annotations

import pytest
from pymongo.collection import Collection
from pymongo.errors import OperationFailure

from mjq_notebook import InvalidQueueError, JobQueue, QueueNameError, Worker, queues
from mjq_notebook.core.catalog import queue_names
from mjq_notebook.core.names import COMPANIONS, MAX_NAMESPACE_BYTES

from .support.processes import run_mjq
from .support.waiting import wait_for

REFUSED = [
    ("orders.history", "companion of a queue"),
    ("orders.meta", "companion of a queue"),
    ("orders.workers", "companion of a queue"),
    ("system.jobs", "MongoDB's own"),
    ("", "empty"),
    ("or$ders", "'$' or NUL"),
    ("or\0ders", "'$' or NUL"),
    (".orders", "start or end with '.'"),
    ("orders.", "start or end with '.'"),
    ("or..ders", "contain '..'"),
]


@pytest.mark.parametrize("name, why", REFUSED)
@pytest.mark.parametrize("how", ["create", "open"])
def test_a_bad_name_is_refused_and_nothing_is_created(db, name, why, how):
    JobQueue(db, "orders")  # a queue there already: its companions must stay as they are
    before = sorted(db.list_collection_names())
    with pytest.raises(QueueNameError, match="as a queue name") as info:
        JobQueue(db, name) if how == "create" else JobQueue.open(db, name)
    assert why in str(info.value) and "nothing was created" in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, InvalidQueueError)
    assert sorted(db.list_collection_names()) == before
    assert not db["orders.history"].options().get("capped")


def test_a_companion_name_before_its_queue_exists_leaves_the_queue_whole(db):
    """The issue's case: 'orders.history' first made orders' history capped (evictable)."""
    with pytest.raises(QueueNameError, match="'orders'"):
        JobQueue(db, "orders.history").pub({"n": 0})
    assert db.list_collection_names() == []
    q = JobQueue(db, "orders")
    for n in range(5):
        q.pub({"n": n})
    for _ in range(5):
        q.done(q.next(timeout=0))
    assert not q.history_collection.options().get("capped")
    assert q.counts()["done"] == 5


def _longest_allowed(db, char: str = "q") -> str:
    """The longest name whose longest companion fits the namespace limit in ``db``."""
    room = MAX_NAMESPACE_BYTES - len(f"{db.name}.".encode()) - max(map(len, COMPANIONS))
    return char * (room // len(char.encode()))


def test_the_longest_companion_must_fit_the_namespace_limit(db):
    longest = _longest_allowed(db)
    for name in (longest + "q", "x" * 240, _longest_allowed(db, "é") + "é"):
        with pytest.raises(QueueNameError, match=f"namespace limit of {MAX_NAMESPACE_BYTES}"):
            JobQueue(db, name)
        assert db.list_collection_names() == []  # not even an empty ring
    assert queues(db) == []
    q = JobQueue(db, longest)  # one byte shorter works, companions and all
    q.pub({"n": 1})
    q.done(q.next(timeout=0))
    assert q.counts()["done"] == 1
    assert queue_names(db) == [longest]


def test_a_failed_creation_leaves_nothing_behind(db, monkeypatch):
    """An index the server refuses after the ring was created: the ring goes again."""
    create_index = Collection.create_index

    def refuse_history(self, *args, **kwargs):
        if self.name.endswith(".history"):
            raise OperationFailure("refused by the test", code=67)
        return create_index(self, *args, **kwargs)

    monkeypatch.setattr(Collection, "create_index", refuse_history)
    with pytest.raises(OperationFailure, match="refused by the test"):
        JobQueue(db, "fresh")
    assert db.list_collection_names() == []
    assert queues(db) == []


def test_a_failed_creation_drops_nothing_it_did_not_create(db, monkeypatch):
    q = JobQueue(db, "kept")
    job_id = q.pub({"n": 1})
    before = sorted(db.list_collection_names())
    monkeypatch.setattr(Collection, "create_index", _refused)
    with pytest.raises(OperationFailure):
        JobQueue(db, "kept")
    assert sorted(db.list_collection_names()) == before
    assert q.get(job_id)["status"] == "waiting"


def test_a_ring_the_server_refuses_is_said_so(db):
    """Not "not capped" later: the server's refusal, and nothing created."""
    with pytest.raises(OperationFailure, match="size"):
        JobQueue(db, "fresh", size_bytes=0)
    assert db.list_collection_names() == []


def _refused(self, *args, **kwargs):
    raise OperationFailure("refused by the test", code=67)


@pytest.mark.parametrize("suffix", COMPANIONS)
def test_a_capped_companion_made_by_another_program_is_refused(db, suffix):
    db.create_collection(f"orders{suffix}", capped=True, size=2**16)
    before = sorted(db.list_collection_names())
    with pytest.raises(InvalidQueueError, match=f"orders{suffix} is capped"):
        JobQueue(db, "orders")
    assert sorted(db.list_collection_names()) == before  # no ring made beside it


def test_companions_made_by_others_are_not_listed_as_queues(db):
    """A capped 'X.workers' (or '.history', '.meta') holding jobs, made by another program
    before X existed, is no queue; neither is 'system.*'."""
    for suffix in COMPANIONS:
        db.create_collection(f"X{suffix}", capped=True, size=2**16)
        db[f"X{suffix}"].insert_one({"status": "waiting", "ts": {"created": None}, "data": 1})
    assert queue_names(db) == []
    assert queues(db) == []
    db.create_collection("X", capped=True, size=2**16)  # now X itself, pymjq's way
    db.X.insert_one({"status": "waiting", "ts": {"created": None}, "data": 2})
    assert [row["queue"] for row in queues(db)] == ["X"]


def test_job_documents_in_a_registry_are_no_workers(db, server_uri):
    """`mjq workers` and q.workers() show worker records only, not what another program
    put into '<q>.workers' (here jobs: it had been made a queue of its own)."""
    db.create_collection("X", capped=True, size=2**16)
    db.X.insert_one({"status": "waiting", "ts": {"created": None}, "data": 1})
    db.create_collection("X.workers", capped=True, size=2**16)
    db["X.workers"].insert_many(
        [{"status": "waiting", "ts": {}, "data": n, "priority": 0} for n in range(3)]
    )
    q = JobQueue.open(db, "X")
    assert q.workers() == []
    listed = run_mjq("workers", "--queue", "X", "--db", db.name, uri=server_uri)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == "no workers"

    ours = JobQueue(db, "ours")  # and a real worker's record still shows, beside junk
    db["ours.workers"].insert_one({"status": "done", "data": 1})
    worker = Worker(ours, lambda job: None, heartbeat=0.2, name="real").start()
    try:
        wait_for(lambda: len(ours.workers()) == 1, 30, "the worker's record")
        assert [row["name"] for row in ours.workers()] == ["real"]
    finally:
        worker.stop()
        worker.join(30)
