"""``q.find`` and ``count_matches`` (core/parts/find.py): the ring and history merged, newest
first, each job once; bounded by the scan cap and maxTimeMS, as the commands sent show."""

from __future__ import annotations

import csv
import io
import json

import pytest
from bson import ObjectId
from pymongo import MongoClient, monitoring

from mjq_notebook import JobQueue
from mjq_notebook.core.parts import find
from mjq_notebook.errors import JobQueueError, QuerySyntaxError


class Finds(monitoring.CommandListener):
    """The find, count and aggregate commands a client sends."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in ("find", "aggregate", "count"):
            self.sent.append(dict(event.command))

    def succeeded(self, event: object) -> None: ...

    def failed(self, event: object) -> None: ...


def _keys(value: object):
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


def _finished(q: JobQueue, n: int) -> list[ObjectId]:
    ids = q.pub_many(
        [{"customer": i, "kind": "a" if i % 3 else "b"} for i in range(n)], max_attempts=1
    )
    for i in range(n):
        job = q.next()
        if i % 2:
            q.fail(job, TimeoutError(f"customer {i} timed out"))
        else:
            q.done(job)
    return list(ids)


def test_find_merges_the_ring_and_history_newest_first(queue):
    _finished(queue, 6)
    queue.pub_many([{"customer": 100 + i} for i in range(3)])
    found = queue.find("status:failed", limit=10)
    assert [job["data"]["customer"] for job in found] == [5, 3, 1]
    assert all(
        job["status"] == "failed" and job["error"]["type"] == "TimeoutError" for job in found
    )
    assert [job["data"]["customer"] for job in queue.find("data.customer:>=4")] == [
        102,
        101,
        100,
        5,
        4,
    ]
    assert [j["data"]["customer"] for j in queue.find("error:timeout -data.customer:3")] == [5, 1]
    assert len(queue.find("")) == 9 and len(queue.find("", limit=2)) == 2
    assert [j["data"]["customer"] for j in queue.find({"data.kind": "b"})] == [3, 0]  # raw filter
    assert find.count_matches(queue, "status:failed") == 3
    assert find.count_matches(queue, "status:waiting,failed") == 6
    assert find.count_matches(queue, {"data.kind": "b"}) == 2
    with pytest.raises(QuerySyntaxError, match="did you mean `status`"):
        queue.find("stauts:failed")
    with pytest.raises(ValueError, match="limit"):
        queue.find("status:failed", limit=0)


def test_a_job_in_ring_and_history_is_found_once(queue):
    job_id = queue.pub({"customer": 1}, max_attempts=1)
    queue.fail(queue.next(), TimeoutError("slow"))  # in history, maybe still in the ring
    doc = queue.history_collection.find_one({"_id": job_id})
    queue.collection.replace_one({"_id": job_id}, doc, upsert=True)
    assert queue.collection.count_documents({"_id": job_id}) == 1
    assert [job.id for job in queue.find("error:TimeoutError")] == [job_id]
    assert find.count_matches(queue, "error:TimeoutError") == 1


def test_the_scan_cap_bounds_every_read_and_all_lifts_it(server_uri, db, monkeypatch):
    listener = Finds()
    client = MongoClient(server_uri, event_listeners=[listener])
    try:
        q = JobQueue(client[db.name])
        ids = _finished(q, 8)
        monkeypatch.setattr(find, "SCAN_CAP", 5)
        listener.sent.clear()
        assert [job.id for job in q.find("$where")] == []  # a literal word, not an operator
        found = q.find("status:done,failed")
        assert [job.id for job in found] == ids[::-1][:5]  # the newest 5 only
        assert find.count_matches(q, "status:failed") == 3  # customers 7, 5, 3 (1 is out)
        sent = listener.sent
        assert sent and all(c.get("maxTimeMS") == find.MAX_TIME_MS for c in sent)
        assert "$where" not in set(_keys(sent))
        asked = [c for c in sent if "status" in repr(c) or "where" in repr(c)]
        assert len(asked) >= 5 and all("'$gte': ObjectId(" in repr(c) for c in asked)
        assert [job.id for job in q.find("status:done,failed", all=True)] == ids[::-1]
        assert find.count_matches(q, "status:failed", all=True) == 4
    finally:
        client.close()


def test_mjq_find_prints_each_format(queue, server_uri, capsys, monkeypatch):
    from mjq_notebook.cli.main import main

    ids = _finished(queue, 4)
    where = ["--uri", server_uri, "--db", queue.collection.database.name, "--queue", queue.name]
    assert main(["find", "status:failed", *where]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["id", "status"] and len(lines) == 3
    assert str(ids[3])[-6:] in lines[1] and "TimeoutError" in lines[1]
    assert main(["find", "status:failed", "--format", "json", "--limit", "1", *where]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    job = json.loads(line)
    assert job["_id"] == str(ids[3]) and job["data"] == {"customer": 3, "kind": "b"}
    assert main(["find", "--format", "csv", *where, "--", "-status:failed"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0][:2] == ["id", "status"] and [row[0] for row in rows[1:]] == [
        str(ids[2]),
        str(ids[0]),
    ]
    assert json.loads(rows[1][-1]) == {"customer": 2, "kind": "a"}
    monkeypatch.setattr(find, "SCAN_CAP", 2)  # --all looks past the cap
    assert main(["find", "status:failed", "--format", "json", *where]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1  # only ids[3] among the newest 2
    assert main(["find", "status:failed", "--all", "--format", "json", *where]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    assert main(["find", "status:failed stauts:done", *where]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "mjq find: unknown field `stauts` at 15; did you mean `status`?",
        "  status:failed stauts:done",
        "                ^",
    ]


def test_a_find_over_its_time_is_stopped_with_advice(queue, monkeypatch):
    queue.history_collection.insert_many(
        [{"status": "done", "data": {"a": {"b": [n, "text"]}}} for n in range(3000)]
    )
    monkeypatch.setattr(find, "MAX_TIME_MS", 1)  # the server stops each read after 1 ms
    with pytest.raises(JobQueueError, match=r"stopped: narrow it \(status:, id:, a time range"):
        queue.find("nowhere")
    with pytest.raises(JobQueueError, match="or leave out all=True"):
        find.count_matches(queue, "nowhere", all=True)


def test_a_found_list_becomes_a_frame_in_the_history_columns(queue):
    """``q.find(...).to_frame()``: the history frame's columns, the error's type and message
    beside each other, the data flattened; each job once, as found."""
    queue.max_attempts = 1
    queue.pub_many([{"customer": 42, "plan": {"tier": "pro"}}, {"customer": 7}])
    failing = queue.next()
    queue.fail(failing, TimeoutError("host db-3 timed out after 30 s"))
    frame = queue.find("data.customer:*").to_frame()
    assert len(frame) == 2 and set(frame["id"]) == {job.id for job in queue.jobs()}
    row = frame.set_index("id").loc[failing.id]
    assert row["status"] == "failed" and row["error_type"] == "TimeoutError"
    assert row["error_message"] == "host db-3 timed out after 30 s"
    assert row["data.customer"] == failing.data["customer"]
    assert {"created", "wait_s", "run_s", "data.plan.tier"} <= set(frame.columns)
    assert queue.find("data.customer:1000").to_frame().empty
