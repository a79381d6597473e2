"""``group:<key>`` names every failed job whose error's fingerprint is that group, stored with
the error (``fail()``) or not (pymjq's plain-string errors, older documents without a group):
in ``q.find``, ``count_matches``, bulk actions, the search box and ``mjq find``, as
``q.errors()`` counts them (``core/error_groups.py``)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from bson import ObjectId
from pymongo import MongoClient, monitoring

from mjq_notebook import JobQueue
from mjq_notebook.core.error_groups import GroupMembers
from mjq_notebook.core.fingerprint import fingerprint
from mjq_notebook.server import client_for

from .support.waiting import wait_for

EVENTUALLY = 10.0


def lookup(user: int) -> None:
    raise KeyError(f"user {user} not found in shard 0x{user:04x}")


@pytest.fixture
def q(db):
    return JobQueue(db, "moved", lease=30, backoff=0.05, max_attempts=1)


def failed_here(queue: JobQueue, error) -> ObjectId:
    """A job failed by this package's ``fail()`` (its error stored with its fingerprint)."""
    queue.pub({"here": True})
    job = queue.next()
    if callable(error):
        try:
            error()
        except Exception as exc:
            error = exc
    assert queue.fail(job, error) is False
    return job.id


def as_pymjq(queue: JobQueue, error, where: str = "ring") -> ObjectId:
    """A failed job as pymjq (or an older program) wrote it: no priority, no attempts, naive
    local times, ``error`` as given (a plain string, or a document without a group)."""
    now = dt.datetime.now()  # pymjq's local time, naive
    doc = {
        "_id": ObjectId(),
        "status": "failed",
        "ts": {"created": now, "started": now, "done": now},
        "data": {"by": "pymjq"},
        "error": error,
    }
    collection = queue.collection if where == "ring" else queue.history_collection
    collection.insert_one(doc)
    return doc["_id"]


@pytest.fixture
def failures(q):
    """Two error groups, each mixing failures with and without a stored fingerprint, and
    failures of other groups and a done job that no group query may name."""
    keyed = failed_here(q, lambda: lookup(7))
    stored = q.history_collection.find_one({"_id": keyed})["error"]
    old_keys = [  # older documents: the same error, no group (in history)
        as_pymjq(
            q,
            {
                "type": "KeyError",
                "message": f"'user {n} not found in shard 0x{n:04x}'",
                "traceback": stored["traceback"],
            },
            "history",
        )
        for n in (8, 9)
    ]
    rows = [  # pymjq: plain strings differing in numbers only (one swept to history too)
        as_pymjq(q, f"ValueError: bad row {n * 17} in batch {n}") for n in range(1, 4)
    ]
    q.history_collection.insert_one(q.collection.find_one({"_id": rows[0]}))
    rows.append(as_pymjq(q, {"type": "Error", "message": "ValueError: bad row 5 in batch 9"}))
    rows.append(failed_here(q, "ValueError: bad row 77 in batch 8"))  # fail() with a string
    others = [as_pymjq(q, "ValueError: no rows at all"), failed_here(q, lambda: lookup(None))]
    q.pub({"ok": True})
    q.done(q.next())
    groups = {g["group"]: g for g in q.errors()}
    key = stored["group"]
    row_key = fingerprint("Error", "ValueError: bad row 0 in batch 0")["group"]
    assert {groups[key]["count"], groups[row_key]["count"]} == {3, 5}
    return {"key": groups[key], "keyed": {keyed, *old_keys}, "rows": groups[row_key],
            "row_ids": set(rows), "others": set(others)}  # fmt: skip


def ids(jobs) -> set[ObjectId]:
    return {job.id for job in jobs}


def test_find_and_count_name_every_failure_of_a_group_stored_or_not(q, failures):
    for group, want in (
        (failures["key"], failures["keyed"]),
        (failures["rows"], failures["row_ids"]),
    ):
        assert ids(q.find(group["query"])) == want
        assert q.count_matches(group["query"]) == len(want)
        assert ids(q.find(group["filter"])) == want  # the errors' exact filter agrees
        assert ids(q.find(f"group:{group['group'][:7]}")) == want  # a prefix of the key
    everything = ids(q.find("status:failed"))
    assert everything == failures["keyed"] | failures["row_ids"] | failures["others"]
    rows = failures["rows"]["query"]
    assert ids(q.find(f"status:failed -{rows}")) == everything - failures["row_ids"]
    assert ids(q.find(f"-{rows} -{failures['key']['query']}")) >= failures["others"]
    assert ids(q.find(f"{rows} data.by:pymjq")) == failures["row_ids"] - ids(
        q.find("data.here:true")
    )
    (only,) = q.errors(query=rows)  # q.errors() takes the same query
    assert only["count"] == 5 and only["group"] == failures["rows"]["group"]


def test_retry_all_retries_exactly_the_group(q, failures):
    rows, want = failures["rows"]["query"], failures["row_ids"]
    assert q.count_matches(rows, "retry") == 5
    changed: list[ObjectId] = []
    assert q.retry_all(rows, changed=changed) == 5
    assert set(changed) == want
    status = {doc["_id"]: doc["status"] for doc in q.collection.find({"_id": {"$in": list(want)}})}
    assert status == dict.fromkeys(want, "waiting")
    assert ids(q.find("status:failed")) == failures["keyed"] | failures["others"]
    assert q.retry_all(rows) == 0 and q.count_matches(rows, "retry") == 0


def test_the_search_box_shows_the_group(q, failures):
    from mjq_notebook.notebook.widgets import Tail

    tail = Tail(q, limit=20)
    try:
        wait_for(lambda: tail.table.state == "live", EVENTUALLY, "the tail to go live")
        for group, want in (
            (failures["rows"], failures["row_ids"]),
            (failures["key"], failures["keyed"]),
        ):
            tail.search.value = group["query"]
            wait_for(
                lambda want=want: shown(tail) == want, EVENTUALLY, f"the rows of {group['query']}"
            )
            assert tail.query_box.error.layout.display == "none"
        tail.bulk_actions.buttons["retry"].click()  # the box's bulk action counts them too
        assert "Retry 3 failed jobs matching" in tail.bulk_actions.label.value
    finally:
        tail.close()


def shown(tail) -> set[ObjectId]:
    return {ObjectId(row["id"]) for row in tail.table.rows}


def test_mjq_find_and_mjq_retry_take_the_group(q, failures, server_uri, capsys):
    from mjq_notebook.cli.main import main

    where = ["--uri", server_uri, "--db", q.db.name, "--queue", q.name]
    query = failures["rows"]["query"]
    assert main(["find", query, "--format", "json", *where]) == 0
    printed = {ObjectId(json.loads(line)["_id"]) for line in capsys.readouterr().out.splitlines()}
    assert printed == failures["row_ids"]
    assert main(["retry", failures["key"]["query"], "--yes", *where]) == 0
    assert "retried 3 failed jobs" in capsys.readouterr().out
    assert ids(q.find("status:failed")) == failures["row_ids"] | failures["others"]


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: object) -> None: ...

    def failed(self, event: object) -> None: ...


def test_the_groups_are_read_only_for_a_group_term_and_once_while_fresh(q, failures, server_uri):
    listener = Commands()
    client: MongoClient = client_for(server_uri, event_listeners=[listener])
    try:
        watched = JobQueue(client[q.db.name], name=q.name, max_attempts=1)
        watched.find("status:failed error:ValueError")
        assert "aggregate" not in listener.names  # no group: term, no read of the groups
        resolve = GroupMembers(watched, max_age=60)
        typed = [failures["rows"]["group"][:n] for n in range(1, 8)]  # keystrokes
        assert all(resolve(prefix) for prefix in typed)
        assert listener.names.count("aggregate") == 1  # one read served every keystroke
        assert len(resolve(failures["rows"]["group"])) == 2  # the strings, and type Error
    finally:
        client.close()


def test_messages_are_values_never_operators(q):
    """Hostile and odd stored errors, each its own group: each group's query names its own
    job only (a message read as an operator or a pattern would name the others too)."""
    hostile = [
        as_pymjq(q, ".* ^(a+)+$ ["),
        as_pymjq(q, {"type": "KeyError", "message": {"$ne": None}}, "history"),
        as_pymjq(q, {"type": "$where", "message": "sleep(1000) || true"}),
        as_pymjq(q, {"type": "OSError"}),  # no message
        as_pymjq(q, None),  # no error at all
    ]
    others = [
        as_pymjq(q, "anything else"),
        as_pymjq(q, {"type": "KeyError", "message": "a real one"}, "history"),
    ]
    groups = q.errors()
    assert len(groups) == len(hostile) + len(others)
    assert {g["example"] for g in groups} == {*hostile, *others}
    for group in groups:
        assert ids(q.find(group["query"])) == {group["example"]}, group["group"]
        assert ids(q.find(group["filter"])) == {group["example"]}
