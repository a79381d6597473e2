"""``mjq_notebook.queues(db)``: every queue in a database (ours and pymjq's), none of their
companions or other collections, with exact counts, and nothing created by looking."""

from __future__ import annotations

import datetime as dt
import time

import pytest

import mjq_notebook
from mjq_notebook import InvalidQueueError, JobQueue, queues
from mjq_notebook.core.catalog import queue_names
from mjq_notebook.core.registry import Registration, State

from .support.xss import XSS, assert_inert

HOUR = dt.timedelta(hours=1)


def _register(queue, worker_id, state, interval=5.0):
    """A worker record written as a Worker writes it."""
    record = Registration(
        queue, worker_id, name=worker_id, queues=[queue.name], concurrency=1, interval=interval
    )
    record.write(state, [], {"done": 0, "failed": 0})


def _pymjq_queue(db, now):
    """What pymjq left: a capped ``jobqueue`` of documents with only status, ts and data."""
    db.create_collection("jobqueue", capped=True, size=100_000)
    for status, created, done in [
        ("waiting", now - HOUR, now - HOUR),  # pymjq pre-filled ts.done while waiting
        ("waiting", now - HOUR / 2, now - HOUR / 2),
        ("done", now - 2 * HOUR, now - dt.timedelta(minutes=1)),  # finished lately
        ("done", now - 3 * HOUR, now - 2 * HOUR),
    ]:
        ts = {"created": created, "started": created, "done": done}
        db.jobqueue.insert_one({"status": status, "ts": ts, "data": {"from": "pymjq"}})


@pytest.fixture
def database(db):
    """Two queues of ours, a pymjq queue, a plain collection, a history collection without a
    queue, and a capped collection that is no queue."""
    now = dt.datetime.now(dt.timezone.utc)
    emails = JobQueue(db, "emails", max_attempts=1)
    emails.pub_many([{"to": n} for n in range(5)])
    emails.done(emails.next())
    emails.done(emails.next())
    emails.fail(emails.next(), RuntimeError("bounced"))  # one attempt: failed
    emails.next()  # working
    emails.pause()
    _register(emails, "alive", State.RUNNING)
    _register(emails, "finished", State.STOPPED)
    _register(emails, "silent", State.RUNNING, interval=0.05)  # lost once 0.15 s pass
    reports = JobQueue(db, "reports")
    reports.cancel(reports.pub({"kind": "pdf"}))
    _pymjq_queue(db, now)
    db.users.insert_one({"name": "ada"})
    db["old.history"].insert_one({"status": "done", "ts": {"done": now}})
    db.create_collection("applog", capped=True, size=100_000)
    db.applog.insert_one({"level": "info", "msg": "a capped log, not a queue"})
    time.sleep(0.2)
    return db


def test_queues_finds_exactly_the_queues_with_exact_counts(database):
    before = sorted(database.list_collection_names())
    rows = queues(database)
    assert sorted(database.list_collection_names()) == before  # nothing created
    assert [row["queue"] for row in rows] == ["emails", "jobqueue", "reports"]
    emails, pymjq, reports = rows
    assert emails == emails | {
        "waiting": 1, "working": 1, "done": 2, "failed": 1, "cancelled": 0, "lost": 0,
        "finished_10min": 3, "paused": True, "workers": 1, "workers_lost": 1,
    }  # fmt: skip
    assert 0 <= emails["oldest_waiting_s"] < 60
    assert pymjq == pymjq | {
        "waiting": 2, "working": 0, "done": 2, "failed": 0, "cancelled": 0, "lost": 0,
        "finished_10min": 1, "paused": False, "workers": None, "workers_lost": None,
    }  # fmt: skip
    assert 3600 - 60 < pymjq["oldest_waiting_s"] < 3600 + 60  # the older waiting job
    assert reports == reports | {
        "waiting": 0, "working": 0, "done": 0, "failed": 0, "cancelled": 1, "lost": 0,
        "finished_10min": 1, "oldest_waiting_s": None, "paused": False, "workers": None,
    }  # fmt: skip
    # the same counts as each queue's own
    assert {k: emails[k] for k in JobQueue.open(database, "emails").counts()} == (
        JobQueue.open(database, "emails").counts()
    )
    assert queue_names(database) == ["emails", "jobqueue", "reports"]
    assert mjq_notebook.queues is queues


def test_rows_show_as_text_html_and_a_frame(database):
    for payload in XSS:  # queue names are whatever anyone with access named a collection
        database.create_collection(f"q{payload}", capped=True, size=4096)
    rows = queues(database)
    text = repr(rows)
    assert text.splitlines()[0].split()[:3] == ["queue", "waiting", "working"]
    [emails] = [line for line in text.splitlines() if line.startswith("emails ")]
    assert "paused" in emails and emails.endswith("1 running, 1 lost")
    html = rows._repr_html_()
    shown = assert_inert(html)
    for payload in XSS:
        assert f"q{payload}" in shown  # as text
    assert f"{3 + len(XSS)} queues in" in shown and "paused" in shown  # emails, jobqueue, reports
    frame = rows.to_frame()
    assert list(frame["queue"]) == [row["queue"] for row in rows]
    assert frame.set_index("queue").loc["emails", "failed"] == 1
    assert rows.by_name()["reports"]["cancelled"] == 1


def test_an_empty_database_has_no_queues(db):
    rows = queues(db)
    assert rows == [] and repr(rows) == "no queues"
    assert "no queues" in rows._repr_html_()
    assert db.list_collection_names() == []


def test_open_reads_an_existing_queue_and_creates_nothing(db):
    with pytest.raises(InvalidQueueError, match=r"no queue \S+\.nosuch"):
        JobQueue.open(db, "nosuch")
    assert db.list_collection_names() == []
    _pymjq_queue(db, dt.datetime.now(dt.timezone.utc))
    q = JobQueue.open(db)  # pymjq's queue: no history, no indexes made for it
    assert q.valid() and q.counts()["waiting"] == 2
    assert db.list_collection_names() == ["jobqueue"]
    assert list(db.jobqueue.index_information()) == ["_id_"]


class _Commands:
    """A pymongo command listener that keeps (command name, collection, command) per call."""

    def __init__(self):
        self.seen = []

    def started(self, event):
        target = event.command.get(event.command_name)
        self.seen.append((event.command_name, target, event.command))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


def test_the_cost_is_a_few_bounded_round_trips_per_queue(database, server_uri):
    from pymongo import monitoring

    from mjq_notebook.server import client_for

    class Listener(_Commands, monitoring.CommandListener):
        pass

    listener = Listener()
    client = client_for(server_uri, event_listeners=[listener])
    try:
        listener.seen.clear()  # the ping of client_for
        rows = queues(client[database.name])
    finally:
        client.close()
    assert len(rows) == 3
    # what new connections of the thread pool say to log in, and the client's close
    connection = {"saslStart", "saslContinue", "endSessions", "hello", "isMaster", "ping"}
    seen = [(name, target) for name, target, _ in listener.seen if name not in connection]
    # 1 listCollections; 2 finds for the capped collections without companions (applog,
    # jobqueue); emails: 6 for counts, 2 recent, 1 pause, 1 oldest waiting, 1 registry = 11;
    # jobqueue (pymjq, no registry) 10, + 2 to look up in history the job pymjq finished;
    # reports (nothing waits, no registry) 9
    assert len(seen) == 1 + 2 + 11 + 12 + 9, seen
    assert sorted([target for name, target in seen if name == "find"][:2]) == ["applog", "jobqueue"]
    for name, target, command in listener.seen:  # history: metadata or an index range
        if isinstance(target, str) and target.endswith(".history"):
            if name == "count":
                assert not command.get("query"), command  # metadata, not a scan
            elif name == "find":  # jobs finished by others, looked up by id
                assert list(command["filter"]) == ["_id"], command
            else:
                assert name == "aggregate", command
                [match] = [stage["$match"] for stage in command["pipeline"][:1]]
                assert set(match) <= {"status", "ts.done"}, command
