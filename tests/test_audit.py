"""Who did what: every action a person takes (through ``Steering``: a page, a widget, ``mjq``)
is recorded once in ``<queue>.audit`` with what, which jobs and who; a viewer is refused every
action; ``q.audit()`` and ``mjq audit`` show the record, and a foreign or hostile document
there breaks neither them nor the HTML."""

from __future__ import annotations

import datetime as dt
import getpass
import itertools
import json
import logging
import socket

import pytest
from bson import DatetimeMS, ObjectId

from mjq_notebook import JobQueue, JobQueueError, queues
from mjq_notebook.core.audit import MAX_IDS, Actor, Steering
from mjq_notebook.core.catalog import queue_names
from mjq_notebook.errors import ReadOnlyError
from mjq_notebook.notebook.display import audit_html, audit_text

from .support.processes import run_mjq
from .support.waiting import wait_for

USER, HOST = getpass.getuser(), socket.gethostname()


@pytest.fixture
def q(db):
    """A queue whose jobs fail for good at their first failure (so requeues can be tried)."""
    return JobQueue(db, "audited", lease=30, backoff=0.05, max_attempts=1)


def _actions(queue: JobQueue) -> list[str]:
    """The actions recorded, oldest first."""
    return [entry["action"] for entry in reversed(queue.audit(1000))]


_PRIORITY = itertools.count(1000)


def _finished(queue: JobQueue, how: str = "done") -> ObjectId:
    """Publish a job as a program would (not audited), claim it (the highest priority yet)
    and finish it ``how``."""
    queue.pub({"finish": how}, priority=next(_PRIORITY))
    job = queue.next()
    queue.done(job) if how == "done" else queue.fail(job, "boom")
    wait_for(lambda: queue.history_collection.find_one({"_id": job.id}), 10, "history")
    return job.id


def test_steering_records_each_action_once_with_what_and_who(q):
    hands = Steering(q, Actor.here("notebook"))
    ids = hands.pub_many([{"n": 1}, {"n": 2}])
    hands.pause()
    hands.resume()
    assert hands.cancel(ids[0]) is True
    (later,) = hands.pub_many([{"n": 3}], delay=3600)
    assert hands.promote(later) is True
    working = q.next()
    assert hands.reclaim(working) is True
    failed = _finished(q, "fail")
    assert hands.retry(failed) is True
    _finished(q, "fail")
    _finished(q, "fail")
    assert hands.retry_failed({"data.finish": "fail"}) == 2
    _finished(q, "done")
    pruned = hands.prune_history(0)
    assert pruned > 0
    try:
        hands.resize(max_jobs=50_000)
        resized = ["resize"]
    except JobQueueError:  # SecantusDB ignores collMod: a resize not done is not recorded
        resized = []

    expected = ["publish", "pause", "resume", "cancel", "publish", "run now", "release",
                "requeue", "requeue all", "prune", *resized]  # fmt: skip
    assert _actions(q) == expected
    entries = list(reversed(q.audit()))
    by_action = dict(zip(expected, entries, strict=True))
    assert entries[0]["jobs"] == ids and entries[0]["count"] == 2
    assert by_action["cancel"]["jobs"] == [ids[0]] and by_action["cancel"]["count"] == 1
    assert by_action["run now"]["jobs"] == [later]
    assert by_action["release"]["jobs"] == [working.id]
    assert by_action["requeue"]["jobs"] == [failed]
    assert (
        by_action["requeue all"]["count"] == 2
        and "data.finish" in by_action["requeue all"]["detail"]
    )
    assert by_action["prune"]["count"] == pruned
    assert "jobs" not in by_action["pause"] and "jobs" not in by_action["prune"]
    for entry in entries:
        assert entry["who"] == {"via": "notebook", "user": USER, "host": HOST, "role": "owner"}
        assert isinstance(entry["at"], dt.datetime)
    times = [entry["at"] for entry in entries]
    assert times == sorted(times)  # q.audit() is newest first


def test_an_action_that_changed_nothing_records_nothing(q):
    hands = Steering(q, Actor.here("notebook"))
    done = _finished(q, "done")
    q.pub({"due": "now"})  # a program's own publish is not audited
    due = q.collection.find_one({"data.due": "now"})["_id"]
    assert hands.cancel(done) is False  # finished: nothing to cancel
    assert hands.promote(due) is False  # already due
    assert hands.reclaim(due) is False  # not working
    assert hands.retry(done) is False  # not failed
    assert hands.retry_failed() == 0
    assert hands.pub_many([]) == []  # nothing to publish
    assert hands.prune_history(3600) == 0  # finished too lately
    assert q.audit() == []
    assert f"{q.name}.audit" not in q.db.list_collection_names()  # not even made


def _snapshot(queue: JobQueue) -> tuple:
    """Everything an action could change: counts, the pause flag, every job, the audit."""
    jobs = list(queue.collection.find({}, sort=[("_id", 1)]))
    history = list(queue.history_collection.find({}, sort=[("_id", 1)]))
    return queue.counts(warn=False), queue.paused, jobs, history, list(queue.audit())


def test_a_viewer_is_refused_every_action_and_nothing_changes(q):
    failed = _finished(q, "fail")
    _finished(q, "done")
    q.pub({"w": 0})
    working = q.next()
    waiting = q.pub({"w": 1})
    delayed = q.pub({"d": 1}, delay=3600)
    Steering(q, Actor.here("notebook")).pause()  # an entry, which must stay the only one
    before = _snapshot(q)
    assert before[0]["waiting"] == 2 and before[0]["working"] == 1 and before[1] is True

    viewer = Steering(q, Actor.page({}))  # a page's kernel not told its role is a viewer
    assert viewer.read_only and viewer.actor.role == "viewer"
    calls = {
        "pub_many": lambda: viewer.pub_many([{"from": "viewer"}]),
        "pause": viewer.pause,
        "resume": viewer.resume,
        "cancel": lambda: viewer.cancel(waiting),
        "promote": lambda: viewer.promote(delayed),
        "reclaim": lambda: viewer.reclaim(working),
        "retry": lambda: viewer.retry(failed),
        "retry_failed": viewer.retry_failed,
        "retry_all": lambda: viewer.retry_all({}),
        "retry_with": lambda: viewer.retry_with(failed, {"edited": True}),
        "cancel_all": lambda: viewer.cancel_all(""),
        "promote_all": lambda: viewer.promote_all({}),
        "prune_history": lambda: viewer.prune_history(0),
        "resize": lambda: viewer.resize(max_jobs=10),
    }
    methods = {name for name in vars(Steering) if not name.startswith("_")}
    methods -= {"read_only"}  # a property, not an action
    assert set(calls) == methods  # an action added to Steering is added here too
    for name, call in calls.items():
        with pytest.raises(ReadOnlyError, match="read-only"):
            call()
            pytest.fail(f"a viewer could {name}")
    assert _snapshot(q) == before
    assert _actions(q) == ["pause"]
    assert not Steering(q, Actor.page({"HTTP_X_MJQ_ROLE": "owner"})).read_only


def test_an_entry_keeps_max_ids_ids_and_the_exact_count(q):
    many = MAX_IDS + 7
    ids = Steering(q, Actor.here("cli")).pub_many([{"n": n} for n in range(many)])
    (entry,) = q.audit()
    assert entry["count"] == many and entry["jobs"] == ids[:MAX_IDS]
    assert f"{many} job(s)" in audit_text([entry])


def test_q_audit_reads_the_newest_entries_and_makes_a_frame(q):
    hands = Steering(q, Actor.here("notebook"))
    hands.pause()
    hands.resume()
    hands.pub_many([{"n": 1}])
    assert [entry["action"] for entry in q.audit(2)] == ["publish", "resume"]
    assert q.audit(0) == []  # to MongoDB a limit of 0 means all of them
    frame = q.audit().to_frame()
    assert list(frame["action"]) == ["publish", "resume", "pause"]
    assert set(frame["who_user"]) == {USER} and set(frame["who_via"]) == {"notebook"}
    assert set(frame["who_host"]) == {HOST} and frame["count"].iloc[0] == 1
    assert "publish" in repr(q.audit()) and "notebook · " + USER in repr(q.audit())
    assert "<table" in q.audit()._repr_html_()


HOSTILE = "<script>alert(1)</script>"


def _foreign_entries(queue: JobQueue) -> None:
    """What another program could have written to the audit: markup, terminal escapes,
    huge strings, wrong types, missing fields. Dated weeks ago, so their "ago" reads the same
    from one rendering to the next."""
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)
    queue.db[f"{queue.name}.audit"].insert_many([
        {"at": now, "action": HOSTILE, "count": 1, "jobs": [HOSTILE],
         "who": {"via": "<b>cli", "user": "u" * 200_000, "host": "\x1b[2Jevil\nhost"},
         "detail": '<img src=x onerror="alert(1)">' * 5000},
        {"at": "yesterday", "action": 42, "who": "just a string", "count": "many",
         "jobs": "not a list", "detail": {"$where": HOSTILE}},
        {},
        {"at": now, "action": ["a", {"b": HOSTILE}], "count": None, "jobs": list(range(1000)),
         "who": {"via": "page", "role": [HOSTILE], "client": {"$x": HOSTILE}}},
    ])  # fmt: skip


def test_foreign_audit_documents_are_shown_escaped_and_bounded(q):
    _foreign_entries(q)
    entries = q.audit()
    assert len(entries) == 4
    assert max(len(entry.get("jobs", [])) for entry in entries) == MAX_IDS  # read bounded

    page = audit_html(entries)
    assert "<script" not in page and "<img" not in page and "<b>" not in page
    assert "&lt;script&gt;" in page
    assert len(page) < len(audit_html([])) + 10_000  # a 1 MB detail is shown cut short
    assert entries._repr_html_() == page

    text = audit_text(entries)
    assert "\x1b" not in text and len(text.splitlines()) == 1 + 4  # one line per entry
    assert max(len(line) for line in text.splitlines()) < 300
    assert repr(entries) == text
    frame = entries.to_frame()
    assert len(frame) == 4 and "just a string" in list(frame["who"])

    # a date out of Python's range, as a real mongod can hold, is shown, not raised
    assert "DatetimeMS" in audit_text([{"at": DatetimeMS(2**62), "action": "x"}])


def test_a_refused_record_keeps_the_action_and_warns(db, caplog):
    db.create_collection("kept.audit", validator={"never": {"$exists": True}})
    queue = JobQueue(db, "kept")
    with caplog.at_level(logging.WARNING, logger="mjq_notebook"):
        (job_id,) = Steering(queue, Actor.here("cli")).pub_many([{"n": 1}])
        Steering(queue, Actor.here("cli")).pause()
    assert queue.get(job_id) is not None and queue.paused
    assert queue.audit() == []
    warned = [
        r.getMessage() for r in caplog.records if "not recorded in its audit" in r.getMessage()
    ]
    assert len(warned) == 2 and warned[0].startswith("publish on queue kept")


def test_the_catalog_lists_no_audit_as_a_queue(q):
    Steering(q, Actor.here("notebook")).pause()
    # another program's capped "<x>.audit" holding job-like documents is no queue either
    q.db.create_collection("other.audit", capped=True, size=4096)
    q.db["other.audit"].insert_one({"status": "waiting", "ts": {}, "data": {}})
    assert queue_names(q.db) == ["audited"]
    assert [row["queue"] for row in queues(q.db)] == ["audited"]


def test_clearing_a_queue_keeps_who_did_what(q):
    Steering(q, Actor.here("notebook")).pause()
    q.clear_queue()
    assert _actions(q) == ["pause"]


def _mjq(db, uri, *args):
    """``mjq <args>`` on the queue "cli" of ``db``."""
    return run_mjq(*args, "--db", db.name, "--queue", "cli", uri=uri)


def test_mjq_actions_are_in_mjq_audit_once_each_with_the_user(db, server_uri):
    published = _mjq(db, server_uri, "pub", '{"n": 1}')
    assert published.returncode == 0, published.stderr
    job_id = published.stdout.strip()
    queue = JobQueue(db, "cli")
    assert queue.get(ObjectId(job_id)) is not None  # the output is as before: the id
    for action in ("pause", "resume"):
        result = _mjq(db, server_uri, action)
        assert result.returncode == 0 and f"{db.name}.cli" in result.stdout, result.stderr
    _finished(queue, "done")  # a job to prune
    pruned = _mjq(db, server_uri, "prune", "--older-than", "0")
    assert pruned.returncode == 0 and "pruned 1 job(s)" in pruned.stdout, pruned.stderr
    resized = _mjq(db, server_uri, "resize", "--max-jobs", "50000")
    assert resized.returncode in (0, 1), resized.stderr  # 1: SecantusDB ignores collMod
    expected = ["pub", "pause", "resume", "prune"] + ["resize"] * (resized.returncode == 0)

    table = _mjq(db, server_uri, "audit")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["when", "(UTC)", "ago"]
    actions = [{"pub": "publish"}.get(a, a) for a in expected]
    assert len(lines) == 1 + len(actions)  # the head, then one row per action
    for action in actions:
        rows = [line for line in lines[1:] if f"  {action}  " in line]
        assert len(rows) == 1, (action, table.stdout)
        assert f"cli · {USER}@{HOST}" in rows[0]
    assert job_id in table.stdout  # a one-job entry names the job

    as_json = _mjq(db, server_uri, "audit", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    entries = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [entry["action"] for entry in entries] == actions[::-1]  # newest first
    for entry in entries:
        assert entry["who"] == {"via": "cli", "user": USER, "host": HOST, "role": "owner"}
        assert ObjectId(entry["_id"]) and dt.datetime.fromisoformat(entry["at"]).tzinfo
    assert entries[-1]["jobs"] == [job_id] and entries[-1]["count"] == 1
    assert entries[len(actions) - 4]["count"] == 1  # the prune: one job

    one = _mjq(db, server_uri, "audit", "--limit", "1", "--format", "json")
    assert [json.loads(line)["action"] for line in one.stdout.splitlines()] == [actions[-1]]


def test_mjq_audit_of_foreign_entries_and_of_no_queue(db, server_uri):
    queue = JobQueue(db, "cli")
    empty = _mjq(db, server_uri, "audit")
    assert empty.returncode == 0 and empty.stdout.strip() == "no actions recorded"
    _foreign_entries(queue)
    table = _mjq(db, server_uri, "audit")
    assert table.returncode == 0, table.stderr
    assert "\x1b" not in table.stdout and len(table.stdout.splitlines()) == 1 + 4
    as_json = _mjq(db, server_uri, "audit", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    entries = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert len(entries) == 4 and "\x1b" not in as_json.stdout  # escaped as \u001b
    assert any(entry.get("action") == HOSTILE for entry in entries)
    missing = run_mjq("audit", "--db", db.name, "--queue", "nope", uri=server_uri)
    assert missing.returncode == 1 and "no queue 'nope'" in missing.stderr
    assert "its queues: cli" in missing.stderr
