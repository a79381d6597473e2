"""Errors, grouped: failures stored by real ``fail()`` calls carry a fingerprint, and
``q.errors()`` groups them inside MongoDB (one aggregation, one row per group or per
distinct type+message of errors stored without one) with counts, first/last seen, per-hour
counts, workers and an example; history frames carry the error's message and group."""

from __future__ import annotations

import datetime as dt

import pytest
from bson import ObjectId
from pymongo import monitoring

from mjq_notebook import JobQueue
from mjq_notebook.core.fingerprint import fingerprint, frame_of, pattern_of
from mjq_notebook.notebook.display import errors_html, errors_text

from .support.xss import assert_inert

T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.timezone.utc)


def lookup(user: int) -> None:
    raise KeyError(f"user {user} not found in shard 0x{user:04x}")


def load_file(path: str) -> None:
    raise FileNotFoundError(f"no such file: '{path}'")


def connect(host: str) -> None:
    raise TimeoutError(f"timed out after {len(host) * 1.5}s connecting to {host}:27017")


def connect_again(host: str) -> None:  # the same error from another function
    raise TimeoutError(f"timed out after {len(host) * 1.5}s connecting to {host}:27017")


def fail_with(queue: JobQueue, worker: str, call, *args) -> ObjectId:
    """Publish a job, claim it as ``worker`` and fail it with what ``call`` raises; the id."""
    queue.pub({"args": list(args)})
    queue.worker_id = worker
    job = queue.next()
    try:
        call(*args)
    except Exception as exc:
        assert queue.fail(job, exc) is False
    return job.id


def at(queue: JobQueue, ids: list[ObjectId], times: list[dt.datetime]) -> None:
    """Set the failures' ``ts.done`` to known times (their history rows are what q.errors()
    reads)."""
    for job_id, when in zip(ids, times, strict=True):
        queue.history_collection.update_one({"_id": job_id}, {"$set": {"ts.done": when}})


@pytest.fixture
def q(db):
    return JobQueue(db, "failing", lease=30, backoff=0.05, max_attempts=1)


def by_type(groups, kind):
    return [g for g in groups if g["type"] == kind]


def test_fingerprint_normalises_the_variable_parts():
    assert pattern_of("user 42 not found in shard 0x002a") == "user <n> not found in shard <hex>"
    assert pattern_of("job 65f1a2b3c4d5e6f708192a3b: '/a/b.csv' at 10.0.0.3:27017") == (
        "job <id>: <str> at <addr>"
    )
    assert pattern_of("open /var/data/run-17/out.parquet failed") == "open <path> failed"
    assert pattern_of("x" * 1000).endswith("…") and len(pattern_of("x" * 1000)) == 200
    text = (
        'Traceback...\n  File "/srv/app/jobs.py", line 3, in run\n'
        '  File "/srv/lib/db.py", line 9, in go\nE: x'
    )
    assert frame_of(text) == "db:go"
    one, two = fingerprint("E", "a 1", text), fingerprint("E", "a 2", text.replace("9", "99"))
    assert one == two and len(one["group"]) == 12
    assert fingerprint("F", "a 1", text)["group"] != one["group"]


def test_failures_group_by_type_pattern_and_frame(q):
    ids = {
        "key": [fail_with(q, f"w{i % 2}", lookup, 40 + i) for i in range(5)],
        "file": [fail_with(q, "w0", load_file, f"/data/in-{i}.csv") for i in range(3)],
        "timeout": [fail_with(q, "w2", connect, f"10.0.0.{i}") for i in range(2)],
        "timeout2": [fail_with(q, "w3", connect_again, "10.0.0.9")],
    }
    # known times: the KeyErrors over three hours (2 in the first, none in the second, 3)
    at(
        q,
        ids["key"],
        [
            T0,
            T0 + dt.timedelta(minutes=59),
            T0 + dt.timedelta(hours=2, minutes=1),
            T0 + dt.timedelta(hours=2, minutes=30),
            T0 + dt.timedelta(hours=2, minutes=59),
        ],
    )
    stored = q.history_collection.find_one({"_id": ids["key"][0]})["error"]
    assert stored["pattern"] == "user <n> not found in shard <hex>"  # unquoted KeyError
    assert stored["frame"] == "test_errors:lookup"
    assert len(stored["group"]) == 12

    groups = q.errors()
    assert len(groups) == 4  # KeyError, FileNotFoundError, TimeoutError from two functions
    (key,) = by_type(groups, "KeyError")
    assert key["count"] == 5
    assert key["first"].replace(tzinfo=dt.timezone.utc) == T0
    assert key["last"].replace(tzinfo=dt.timezone.utc) == T0 + dt.timedelta(hours=2, minutes=59)
    assert key["hours"] == [2, 0, 3]
    assert key["hours_from"] == T0
    assert sorted(key["workers"]) == ["w0", "w1"] and key["workers_count"] == 2
    assert key["example"] in ids["key"]
    assert key["query"] == f"group:{stored['group']}"
    assert key["frame"] == "test_errors:lookup"
    (files,) = by_type(groups, "FileNotFoundError")
    assert files["count"] == 3 and files["pattern"] == "no such file: <str>"
    timeouts = by_type(groups, "TimeoutError")
    assert sorted(g["count"] for g in timeouts) == [1, 2]
    assert {g["frame"] for g in timeouts} == {"test_errors:connect", "test_errors:connect_again"}
    assert timeouts[0]["pattern"] == "timed out after <n>s connecting to <addr>"
    # each group's filter matches exactly its jobs
    for group, kind in ((key, "key"), (files, "file")):
        found = {d["_id"] for d in q.history_collection.find(group["filter"], {"_id": 1})}
        assert found == set(ids[kind])
    # since bounds the failure's time; a query narrows
    assert [
        g["count"] for g in q.errors(since=T0 + dt.timedelta(hours=2)) if g["type"] == "KeyError"
    ] == [3]
    assert [g["type"] for g in q.errors(query={"data.args": "/data/in-1.csv"})] == [
        "FileNotFoundError"
    ]
    assert [g["count"] for g in q.errors(query=f"group:{stored['group']}")] == [5]
    frame = groups.to_frame()
    assert list(frame.sort_values("count")["count"]) == [1, 2, 3, 5]


def test_errors_without_a_fingerprint_are_grouped_by_the_same_function(q):
    """pymjq's jobs (an error as a plain string, no group) and errors stored before
    fingerprints (a document without group): grouped in Python after the server grouped
    them by (type, message); one stored with a group joins its fingerprint's group."""
    new = fail_with(q, "w0", lookup, 7)  # stored with its group
    text = q.history_collection.find_one({"_id": new})["error"]
    old = []
    for user in (8, 9):  # the same error stored without a fingerprint
        doc = {
            "_id": ObjectId(),
            "status": "failed",
            "ts": {"created": T0, "done": T0},
            "worker": "old",
            "data": {},
            "error": {
                "type": "KeyError",
                "message": f"'user {user} not found in shard 0x{user:04x}'",
                "traceback": text["traceback"],
            },
        }
        q.history_collection.insert_one(doc)
        old.append(doc["_id"])
    pymjq = []
    for n in range(4):  # pymjq: a string, in the ring (never swept to history yet)
        doc = {
            "_id": ObjectId(),
            "status": "failed",
            "ts": {"created": T0, "done": T0 + dt.timedelta(hours=n)},
            "data": {},
            "error": f"ValueError: bad row {n * 17} in batch {n}",
        }
        q.collection.insert_one(doc)
        pymjq.append(doc["_id"])
    q.history_collection.insert_one(q.collection.find_one({"_id": pymjq[0]}))  # swept, not yet
    groups = q.errors()  # deleted from the ring: counted once
    assert sorted(g["count"] for g in groups) == [3, 4]
    (key,) = by_type(groups, "KeyError")
    assert key["group"] == text["group"] and key["workers_count"] == 2
    found = {d["_id"] for d in q.history_collection.find(key["filter"], {"_id": 1})}
    assert found == {new, *old}
    (strings,) = by_type(groups, "Error")
    assert strings["pattern"] == "ValueError: bad row <n> in batch <n>"
    assert strings["hours"] == [1, 1, 1, 1] and strings["workers_count"] == 0
    assert strings["group"] == fingerprint("Error", "ValueError: bad row 0 in batch 0")["group"]
    found = {d["_id"] for d in q.collection.find(strings["filter"], {"_id": 1})}
    assert found == set(pymjq)


class Aggregates(monitoring.CommandListener):
    def __init__(self) -> None:
        self.commands: list[str] = []
        self.rows = 0

    def started(self, event):
        self.commands.append(event.command_name)

    def succeeded(self, event):
        if event.command_name in ("aggregate", "getMore"):
            cursor = event.reply.get("cursor", {})
            self.rows += len(cursor.get("firstBatch", cursor.get("nextBatch", [])))

    def failed(self, event):
        pass


def test_the_grouping_runs_in_the_server(server_uri, db, q):
    """200 failures of 3 kinds, 100 of them without a fingerprint (20 distinct messages):
    one aggregate, and at most one row per group or distinct message reaches Python."""
    for i in range(100):
        fail_with(q, f"w{i % 3}", lookup if i % 2 else connect, str(i))
    q.history_collection.insert_many(
        [
            {
                "_id": ObjectId(),
                "status": "failed",
                "ts": {"done": T0},
                "error": f"bad row {i % 20}",
            }
            for i in range(100)
        ]
    )
    listener = Aggregates()
    from pymongo import MongoClient

    client = MongoClient(server_uri, event_listeners=[listener])
    try:
        watched = JobQueue.open(client[db.name], q.name)
        listener.commands.clear()
        groups = watched.errors()
    finally:
        client.close()
    assert sorted(g["count"] for g in groups) == [50, 50, 100]
    assert listener.commands.count("aggregate") == 1
    assert "find" not in listener.commands
    assert listener.rows <= 2 + 20


HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>'\"&"


def test_hostile_error_texts_are_escaped(q):
    q.history_collection.insert_one(
        {
            "_id": ObjectId(),
            "status": "failed",
            "ts": {"done": T0},
            "worker": HOSTILE,
            "error": {"type": HOSTILE, "message": HOSTILE},
        }
    )
    fail_with(q, HOSTILE, load_file, HOSTILE)
    groups = q.errors()
    html = errors_html(groups)
    assert_inert(html)
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<script>alert(1)</script>" in errors_text(groups)  # text is text


def test_history_frames_carry_the_error_and_stats_group_by_it(q):
    fail_with(q, "w0", lookup, 1)
    fail_with(q, "w0", lookup, 2)
    q.pub({"ok": 1})
    q.done(q.next())
    q.collection.insert_one(
        {
            "_id": ObjectId(),
            "status": "failed",
            "ts": {"created": T0, "done": T0},
            "data": {},
            "error": "plain text error",
        }
    )
    frame = q.history()
    failed = frame[frame["status"] == "failed"].sort_values("created")
    assert set(failed["error_message"]) >= {
        "'user 1 not found in shard 0x0001'",
        "plain text error",
    }
    assert failed["error_group"].notna().sum() == 2 and failed["error_group"].nunique() == 1
    assert frame.loc[frame["status"] == "done", "error_message"].isna().all()
    by_frame = frame.mjq.errors()
    assert sorted(g["count"] for g in by_frame) == [1, 2]
    assert {g["group"] for g in by_frame} == {g["group"] for g in q.errors()}
    stats = q.stats(by="error.type")
    assert set(stats.index.get_level_values(0)) == {"KeyError", "Error", "(no error)"}
    assert stats.loc["(no error)"]["count"].max() == 1  # the done job
    same = q.stats(by="error_type")
    assert set(same.index.get_level_values(0)) == {"KeyError", "Error", "(no error)"}
