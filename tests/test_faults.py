"""Faults in the middle of an operation: each write command the queue sends, failed once with
the ``failCommand`` fail point, before the server applies it (the connection closed, a "not
primary" error with or without the ``RetryableWriteError`` label) and after (a
``writeConcernError``: applied, the reply an error).

Each case is a fresh small queue. Its operation runs once without faults to learn the write
commands it sends; then, for each of them, again on a fresh queue with that one command
failed. After each: the operation did what it does without the fault, no acknowledged job is
lost, history holds one row per finish, no job is both unfinished in the queue and finished in
history, and ``counts()`` equals a recount of both collections.

The fail point is scoped by ``appName`` to the client of the queue under test. On the embedded
server with test commands; on ``MJQ_TEST_MONGODB_URI`` when it takes ``configureFailPoint``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from pymongo import monitoring
from pymongo.errors import OperationFailure

from mjq_notebook import JobQueue, ServerUnavailable, Worker, embedded_server
from mjq_notebook.core.job import FINISHED, utcnow
from mjq_notebook.core.registry import State, WorkerRecords, as_read, workers_collection
from mjq_notebook.core.retries import ATTEMPTS
from mjq_notebook.server import client_for

from .support.servers import TEST_URI
from .support.waiting import wait_for

APP = f"mjq-faults-{uuid.uuid4().hex[:6]}"
WRITE_COMMANDS = {"insert", "update", "delete", "findAndModify", "bulkWrite"}

# name -> the fail point's data (besides failCommands and appName)
FAULTS = {
    "closed": {"closeConnection": True},  # before (or in the dark: the reply is lost)
    "91": {"errorCode": 91, "errorLabels": []},  # ShutdownInProgress, no label
    "11600-labelled": {"errorCode": 11600, "errorLabels": ["RetryableWriteError"]},
    "10107": {"errorCode": 10107},  # NotWritablePrimary, labels as the server gives them
    "writeConcernError": {"writeConcernError": {"code": 91, "errmsg": "replication failed"}},
}


@pytest.fixture(scope="module")
def fault_uri():
    """A server that takes ``configureFailPoint``: the embedded one with test commands, or
    ``MJQ_TEST_MONGODB_URI`` when it allows them."""
    if TEST_URI:
        probe = client_for(TEST_URI)
        try:
            probe.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
        except OperationFailure:
            pytest.skip("the server at MJQ_TEST_MONGODB_URI has no test commands")
        finally:
            probe.close()
        yield TEST_URI
        return
    with embedded_server(":memory:", test_commands=True) as server:
        yield server.uri


class Commands(monitoring.CommandListener):
    """The write commands a client sends, in order, while recording."""

    def __init__(self) -> None:
        self.names: list[str] | None = None
        self._lock = threading.Lock()

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        with self._lock:
            if self.names is not None and event.command_name in WRITE_COMMANDS:
                self.names.append(event.command_name)

    def succeeded(self, event: Any) -> None:
        pass

    def failed(self, event: Any) -> None:
        pass

    @contextlib.contextmanager
    def recording(self):
        self.names = names = []
        try:
            yield names
        finally:
            self.names = None


@pytest.fixture(scope="module")
def admin(fault_uri):
    client = client_for(fault_uri)
    yield client
    client.close()


@pytest.fixture(scope="module")
def faulted(fault_uri):
    """The client of the queue under test, named ``APP`` for the fail point. After a "not
    primary" error it finds the server again within half a second (the embedded server's
    own client: 2 s, see the last test), so the matrix stays quick."""
    commands = Commands()
    client = client_for(
        fault_uri, appName=APP, heartbeatFrequencyMS=500, event_listeners=[commands]
    )
    client.commands = commands
    yield client
    client.close()


@contextlib.contextmanager
def fault(admin, command: str | list[str], skip: int, data: dict[str, Any], times: int = 1):
    """Fail the faulted client's next ``command`` (after ``skip`` of them), ``times`` times."""
    mode = {"skip": skip, "times": times} if skip else {"times": times}
    commands = [command] if isinstance(command, str) else command
    fail_point = {"failCommands": commands, "appName": APP, **data}
    admin.admin.command({"configureFailPoint": "failCommand", "mode": mode, "data": fail_point})
    try:
        yield
    finally:
        admin.admin.command({"configureFailPoint": "failCommand", "mode": "off"})


# -- the operations -------------------------------------------------------------------------


@dataclass
class Case:
    """An operation on a fresh queue: ``setup`` (unfaulted) returns what ``run`` needs;
    ``run`` is the operation faulted, ``expect`` checks its return value and the state."""

    setup: Callable[[JobQueue], Any]
    run: Callable[[JobQueue, Any], Any]
    expect: Callable[[JobQueue, Any, Any], None]
    fused: bool | None = None  # None: as the server allows; False: one write at a time


def _published(q: JobQueue, given: Any, result: Any) -> None:
    ids = list(result) if isinstance(result, list) else [result]
    assert q.collection.count_documents({"_id": {"$in": ids}}) == len(ids)  # all stored


def _claimed(q: JobQueue, before: Any, job: Any) -> None:
    # the job claimed is the one working, and the only one: a claim whose reply was lost was
    # adopted, not left working until its lease ends
    assert (job["_id"], job["attempts"]) == (before[0], 1)
    assert [d["_id"] for d in q.collection.find({"status": "working"})] == [job["_id"]]
    assert q.collection.find_one({"_id": before[1]})["attempts"] == 0


def _finished(status: str) -> Callable[[JobQueue, Any, Any], None]:
    def check(q: JobQueue, job: Any, result: Any) -> None:
        assert q.get(job.id)["status"] == status
        assert q.history_collection.count_documents({"_id": job.id, "status": status}) == 1

    return check


def _released(q: JobQueue, job: Any, result: Any) -> None:
    doc = q.collection.find_one({"_id": job.id})
    assert (doc["status"], doc["attempts"], doc["worker"]) == ("waiting", 0, None)


def _touched(q: JobQueue, job: Any, result: Any) -> None:
    extended = job["ts"]["started"] + dt.timedelta(seconds=60)  # the lease was 30 s
    assert q.collection.find_one({"_id": job.id})["lease_until"] > extended


def _retried(q: JobQueue, job: Any, result: Any) -> None:
    assert result is True  # will be retried
    doc = q.collection.find_one({"_id": job.id})
    assert (doc["status"], doc["attempts"]) == ("waiting", 1)
    assert q.history_collection.count_documents({}) == 0


def _claim_one(q: JobQueue, **pub: Any) -> Any:
    q.pub({"n": 1}, **pub)
    return q.next()


def _failed_job(q: JobQueue, *, swept: bool) -> Any:
    # swept: neither the oldest nor the newest job (a sweep keeps the last inserted), so the
    # sweep after its failure takes it out
    if swept:
        q.pub({"n": 0})
    job = _claim_one(q, max_attempts=1, priority=1)
    if swept:
        q.pub({"n": 2})
    q.fail(job, "boom")
    assert q.collection.count_documents({"_id": job.id}) == (0 if swept else 1)
    return job.id


def _requeued(q: JobQueue, job_id: Any, result: Any) -> None:
    assert result is True
    assert q.collection.find_one({"_id": job_id})["status"] == "waiting"
    assert q.history_collection.count_documents({"_id": job_id}) == 0


def _cancelled(q: JobQueue, job_id: Any, result: Any) -> None:
    assert result is True
    assert q.history_collection.find_one({"_id": job_id})["status"] == "cancelled"


def _promoted(q: JobQueue, job_id: Any, result: Any) -> None:
    assert result is True
    assert q.collection.find_one({"_id": job_id})["available_at"] <= utcnow()


def _expired_lease(q: JobQueue) -> Any:
    gone = JobQueue(q.db, q.name, lease=0.2)  # a worker that vanished mid-job
    job = _claim_one(gone)
    wait_for(lambda: utcnow() > job["lease_until"], 5, "the lease to expire")
    return job.id


def _reclaimed(q: JobQueue, job_id: Any, job: Any) -> None:
    assert (job.id, job["attempts"]) == (job_id, 2)
    assert q.collection.count_documents({"status": "working"}) == 1


def _two_done_unswept(q: JobQueue) -> list[Any]:
    q._sweeper.next_at = float("inf")  # the finishes leave the sweep to the operation
    ids = q.pub_many([{"n": n} for n in range(4)])
    for _ in range(2):
        q.done(q.next())
    return ids


def _swept(q: JobQueue, ids: Any, result: Any) -> None:
    # the second finished job left the ring (the sweep keeps the newest)
    assert q.collection.find_one({"_id": ids[1]}) is None
    assert q.history_collection.find_one({"_id": ids[1]})["status"] == "done"


CASES = {
    "pub": Case(lambda q: None, lambda q, _: q.pub({"n": 1}), _published),
    "pub, one by one": Case(lambda q: None, lambda q, _: q.pub({"n": 1}), _published, False),
    "pub_many": Case(
        lambda q: None, lambda q, _: q.pub_many([{"n": n} for n in range(3)]), _published
    ),
    "claim": Case(lambda q: q.pub_many([{"n": 1}, {"n": 2}]), lambda q, _: q.next(), _claimed),
    "lease reclaim": Case(_expired_lease, lambda q, _: q.next(), _reclaimed),
    "done": Case(_claim_one, lambda q, job: q.done(job, "ok"), _finished("done")),
    "done, one by one": Case(
        _claim_one, lambda q, job: q.done(job, "ok"), _finished("done"), False
    ),
    "touch (lease extension)": Case(
        lambda q: _claim_one(q), lambda q, job: q.touch(job, lease=600), _touched
    ),
    "release": Case(_claim_one, lambda q, job: q.release(job), _released),
    "fail, retried": Case(
        lambda q: _claim_one(q, max_attempts=2), lambda q, job: q.fail(job, "boom"), _retried
    ),
    "fail, final": Case(
        lambda q: _claim_one(q, max_attempts=1),
        lambda q, job: q.fail(job, "boom"),
        _finished("failed"),
    ),
    "retry (requeue)": Case(
        lambda q: _failed_job(q, swept=False), lambda q, job_id: q.retry(job_id), _requeued
    ),
    "retry, from history": Case(
        lambda q: _failed_job(q, swept=True), lambda q, job_id: q.retry(job_id), _requeued
    ),
    "cancel": Case(lambda q: q.pub({"n": 1}), lambda q, job_id: q.cancel(job_id), _cancelled),
    "promote": Case(
        lambda q: q.pub({"n": 1}, delay=60), lambda q, job_id: q.promote(job_id), _promoted
    ),
    "sweep": Case(_two_done_unswept, lambda q, _: q._sweeper.sweep(), _swept),
}


def _queue(client, case: Case) -> JobQueue:
    db = client[f"mjq_fault_{uuid.uuid4().hex[:10]}"]
    q = JobQueue(db, lease=30, backoff=0.05)
    if case.fused is False:
        q._fuse = False
    return q


def _steps(client, case: Case) -> list[tuple[str, int]]:
    """The write commands ``case``'s operation sends, each as (name, how many of that name
    came before): what a fail point with ``skip`` picks out."""
    q = _queue(client, case)
    try:
        given = case.setup(q)
        with client.commands.recording() as names:
            case.expect(q, given, case.run(q, given))
    finally:
        client.drop_database(q.db.name)
    seen: Counter[str] = Counter()
    steps = []
    for name in names:
        steps.append((name, seen[name]))
        seen[name] += 1
    assert steps, "the operation sent no write"
    return steps


@pytest.mark.parametrize("kind", FAULTS)
@pytest.mark.parametrize("name", CASES)
def test_an_operation_survives_a_fault_on_each_of_its_writes(admin, faulted, name, kind):
    case = CASES[name]
    for command, skip in _steps(faulted, case):
        q = _queue(faulted, case)
        try:
            given = case.setup(q)
            with fault(admin, command, skip, FAULTS[kind]):
                result = case.run(q, given)
            where = f"{name}, {kind} on {command} #{skip + 1}"
            case.expect(q, given, result)
            assert_consistent(q, where)
        finally:
            faulted.drop_database(q.db.name)


def test_a_worker_record_says_stopped_after_a_fault_on_any_of_its_writes(admin, faulted):
    """The registry's writes: a record written running, then stopped, each faulted."""
    for kind, data in FAULTS.items():
        for skip in (0, 1):  # the "running" write, then the last one, "stopped"
            q = _queue(faulted, CASES["pub"])
            try:
                records = WorkerRecords([q], "w-1", "w-1", 1, 0.2)
                with fault(admin, "update", skip, data):
                    records.write(State.RUNNING, [], [{}])
                    records.write(State.STOPPED, [], [{}])
                doc = workers_collection(q).find_one({"_id": "w-1"})
                # read long after its last heartbeat: stopped, not lost
                later = doc["heartbeat"] + (doc["expires_at"] - doc["heartbeat"]) / 2
                assert as_read(doc, later)["state"] == "stopped", (kind, skip)
            finally:
                faulted.drop_database(q.db.name)


# -- the checks -----------------------------------------------------------------------------


def assert_consistent(q: JobQueue, where: str) -> None:
    """Nothing lost, one history row per finish, no job both unfinished in the queue and
    finished in history, and counts() equal to a recount of both collections."""
    ring = {doc["_id"]: doc for doc in q.collection.find()}
    history = list(q.history_collection.find())
    finished = {doc["_id"]: doc for doc in history}
    assert len(finished) == len(history), f"{where}: a finish has two history rows"
    for job_id, doc in finished.items():
        assert doc["status"] in FINISHED, f"{where}: history holds an unfinished job"
        held = ring.get(job_id)
        assert held is None or held["status"] in FINISHED, (
            f"{where}: job {job_id} is {held['status']} in the queue and {doc['status']} in history"
        )
    status = {job_id: doc["status"] for job_id, doc in ring.items()}
    status.update((job_id, doc["status"]) for job_id, doc in finished.items())
    recount = Counter(status.values())
    published = (q.db[f"{q.name}.meta"].find_one({"_id": "counters"}) or {}).get("published", 0)
    assert published == len(status), f"{where}: {published} counted, {len(status)} stored"
    counts = q.counts(warn=False)
    expected = {s: recount.get(s, 0) for s in ("waiting", "working", "done", "failed")}
    expected.update(cancelled=recount.get("cancelled", 0), lost=0)
    assert counts == expected, f"{where}: counts() {counts}, recount {expected}"


# -- a second write that can't be made --------------------------------------------------------


def test_a_cancel_whose_queue_write_keeps_failing_takes_its_history_row_back(admin, faulted):
    q = _queue(faulted, CASES["cancel"])
    try:
        job_id = q.pub({"n": 1})
        # every try of the queue's update refused, before it is applied
        refused = {"errorCode": 91, "errorLabels": []}
        with fault(admin, "update", 0, refused, times=ATTEMPTS), pytest.raises(ServerUnavailable):
            q.cancel(job_id)
        assert q.collection.find_one({"_id": job_id})["status"] == "waiting"
        assert q.history_collection.count_documents({}) == 0
        assert_consistent(q, "cancel, queue write failed")
        assert q.cancel(job_id) is True  # and the next try does it
        assert_consistent(q, "cancel after a failed one")
    finally:
        faulted.drop_database(q.db.name)


def test_a_requeue_whose_history_write_keeps_failing_puts_the_job_back_to_failed(admin, faulted):
    q = _queue(faulted, CASES["retry (requeue)"])
    try:
        job_id = _failed_job(q, swept=False)
        refused = {"errorCode": 91, "errorLabels": []}
        with fault(admin, "delete", 0, refused, times=ATTEMPTS), pytest.raises(ServerUnavailable):
            q.retry(job_id)
        assert q.collection.find_one({"_id": job_id})["status"] == "failed"
        assert q.history_collection.find_one({"_id": job_id})["status"] == "failed"
        assert_consistent(q, "requeue, history write failed")
        assert q.retry(job_id) is True
        assert_consistent(q, "requeue after a failed one")
    finally:
        faulted.drop_database(q.db.name)


# -- a worker through it all --------------------------------------------------------------------


def test_a_worker_runs_each_job_once_through_faults_on_its_writes(admin, faulted):
    """Six write commands in a row of the worker's client fail after being applied (claims,
    finishes, registry writes): every job still runs once and ends done, the counts are exact
    and the worker's record says stopped."""
    q = _queue(faulted, CASES["done"])
    try:
        ids = q.pub_many([{"n": n} for n in range(3)])
        runs: Counter[Any] = Counter()

        def handler(job):
            runs[job.id] += 1
            return job.data["n"]

        wce = {"writeConcernError": {"code": 91, "errmsg": "replication failed"}}
        commands = ["findAndModify", "update", "bulkWrite", "insert", "delete"]
        with fault(admin, commands, 0, wce, times=6):
            stats = Worker(q, handler, heartbeat=0.2).run(drain=True)
        assert runs == {job_id: 1 for job_id in ids}
        assert stats.done == 3
        assert_consistent(q, "a worker through faults")
        assert q.counts(warn=False)["done"] == 3
        assert [w["state"] for w in q.workers()] == ["stopped"]
    finally:
        faulted.drop_database(q.db.name)


def test_the_embedded_servers_own_client_rides_out_a_not_primary_error(admin, fault_uri):
    """With the client options of the embedded server's URI (``server/embedded.py``), not the
    quicker ones of the matrix: the write is sent again once the client has found the server
    again, and the publish succeeds."""
    if TEST_URI:
        pytest.skip("the embedded server's client options")
    client = client_for(fault_uri, appName=APP)
    try:
        q = JobQueue(client[f"mjq_fault_{uuid.uuid4().hex[:10]}"])
        q._fuse = False
        with fault(admin, "insert", 0, {"errorCode": 91, "errorLabels": []}):
            job_id = q.pub({"n": 1})
        assert q.get(job_id)["status"] == "waiting"
        assert_consistent(q, "pub, 91 on the embedded server's own client")
    finally:
        client.drop_database(q.db.name)
        client.close()
