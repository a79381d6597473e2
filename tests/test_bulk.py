"""Acting on every match of a query: ``q.retry_all``, ``q.cancel_all``, ``q.promote_all``
change exactly the matching jobs in the state their one-job action changes, count exactly,
work in batches, report progress, and are audited as one entry when a person acts (the
tail's bulk buttons, ``mjq retry|cancel|promote QUERY``)."""

from __future__ import annotations

import os
import pty
import subprocess
import sys

import pytest

from mjq_notebook import Empty, JobQueue
from mjq_notebook.core.audit import MAX_IDS, Actor, Steering
from mjq_notebook.core.parts import bulk
from mjq_notebook.errors import QuerySyntaxError

from .support.processes import run_mjq


@pytest.fixture
def q(db):
    return JobQueue(db, "bulk", lease=30, backoff=0.05)


def _failed(q, data):
    """Publish ``data`` and fail it for good; returns its id."""
    job_id = q.pub(data, max_attempts=1, priority=10)
    job = q.next()
    assert job.id == job_id
    q.fail(job, RuntimeError("boom"))
    return job_id


def _world(q):
    """Jobs of kind x in every state, and some of kind y; ids by state."""
    jobs: dict[str, list] = {}
    jobs["history_only"] = [_failed(q, {"kind": "x", "n": n}) for n in range(3)]
    q._sweeper.sweep()  # finished jobs leave the ring once in history (the newest stays)
    q.collection.delete_many({"_id": {"$in": jobs["history_only"]}})  # as an eviction would
    jobs["ring_failed"] = [_failed(q, {"kind": "x", "n": n}) for n in range(2)]
    jobs["other_failed"] = [_failed(q, {"kind": "y"}) for _ in range(2)]
    done = q.pub({"kind": "x"}, priority=10)
    q.done(q.next())
    jobs["done"] = [done]
    jobs["working"] = [q.pub({"kind": "x"}, priority=10)]
    assert q.next().id == jobs["working"][0]
    jobs["waiting"] = q.pub_many([{"kind": "x"}] * 2)
    jobs["delayed"] = q.pub_many([{"kind": "x"}] * 2, delay=3600)
    jobs["other_waiting"] = q.pub_many([{"kind": "y"}] * 2, delay=3600)
    assert q.collection.count_documents({"_id": {"$in": jobs["history_only"]}}) == 0
    assert q.collection.count_documents({"_id": {"$in": jobs["ring_failed"]}}) == 2
    return jobs


def _statuses(q, ids):
    return [q.get(i)["status"] for i in ids]


def test_retry_all_requeues_the_failed_matches_in_ring_and_history_only(q):
    jobs = _world(q)
    assert q.count_matches("data.kind:x", "retry") == 5
    assert q.count_matches("data.kind:x") == 11
    changed: list = []
    assert q.retry_all("data.kind:x", changed=changed) == 5
    assert set(changed) == {*jobs["history_only"], *jobs["ring_failed"]}
    assert _statuses(q, changed) == ["waiting"] * 5
    assert q.history_collection.count_documents({"_id": {"$in": changed}}) == 0
    assert _statuses(q, jobs["other_failed"]) == ["failed"] * 2
    assert _statuses(q, jobs["done"] + jobs["working"]) == ["done", "working"]
    assert q.counts()["failed"] == 2 and q.counts()["waiting"] == 11
    assert q.retry_all("data.kind:x") == 0  # nothing failed matches any more


def test_retry_all_retries_only_failed_jobs_whatever_the_query_says_of_status(q):
    jobs = _world(q)
    assert q.retry_all("status:waiting data.kind:x") == 0
    assert q.retry_all({"status": "waiting"}) == 0
    assert q.retry_all("status:waiting,failed data.kind:x") == 5
    assert _statuses(q, jobs["waiting"]) == ["waiting"] * 2
    assert q.retry_failed({"data.kind": "y"}) == 2  # the one-job and the old filter form too
    assert q.retry(jobs["done"][0]) is False


def test_cancel_all_cancels_the_waiting_and_delayed_matches_only(q):
    jobs = _world(q)
    assert q.count_matches("data.kind:x", "cancel") == 4
    assert q.cancel_all("status:done data.kind:x") == 0
    assert q.cancel_all("data.kind:x") == 4
    assert _statuses(q, jobs["waiting"] + jobs["delayed"]) == ["cancelled"] * 4
    assert _statuses(q, jobs["other_waiting"]) == ["waiting"] * 2
    assert _statuses(q, jobs["working"] + jobs["ring_failed"]) == ["working", "failed", "failed"]
    # history first, as every finish: each cancelled job is there once
    cancelled = jobs["waiting"] + jobs["delayed"]
    assert q.history_collection.count_documents({"_id": {"$in": cancelled}}) == 4
    assert q.counts()["cancelled"] == 4 and q.counts()["waiting"] == 2


def test_promote_all_makes_the_delayed_matches_due_only(q):
    jobs = _world(q)
    assert q.count_matches("data.kind:x", "promote") == 2
    changed: list = []
    assert q.promote_all("data.kind:x", changed=changed) == 2
    assert set(changed) == set(jobs["delayed"])
    assert q.promote_all("data.kind:x") == 0  # due now: not delayed any more
    claimed = set()
    for _ in range(4):  # the two waiting and the two promoted are claimable now
        claimed.add(q.next().id)
    assert claimed == {*jobs["waiting"], *jobs["delayed"]}
    assert _statuses(q, jobs["other_waiting"]) == ["waiting"] * 2
    with pytest.raises(Empty):
        q.next()  # kind y is still delayed


def test_batches_and_progress(q, monkeypatch):
    monkeypatch.setattr(bulk, "BATCH", 7)
    ids = q.pub_many([{"kind": "x", "n": n} for n in range(50)], delay=3600)
    q.pub_many([{"kind": "y"}] * 5, delay=3600)
    reads = []
    find = type(q.collection).find

    def counted_find(self, *args, **kwargs):
        cursor = find(self, *args, **kwargs)
        reads.append(cursor)
        return cursor

    monkeypatch.setattr(type(q.collection), "find", counted_find)
    seen: list[tuple[int, int]] = []
    changed: list = []
    assert q.promote_all("data.kind:x", progress=lambda *p: seen.append(p), changed=changed) == 50
    assert sorted(changed) == sorted(ids) and len(changed) == 50
    assert seen[0] == (0, 50) and seen[-1] == (50, 50)
    assert [done for done, _ in seen[1:]] == [7, 14, 21, 28, 35, 42, 49, 50]
    assert len([cursor for cursor in reads if cursor._limit == 7]) >= 50 // 7  # pages of 7
    monkeypatch.undo()
    assert q.count_matches("data.kind:x", "promote") == 0
    assert q.count_matches("data.kind:y", "promote") == 5


def test_cancel_and_retry_in_batches_over_fifty_jobs(q, monkeypatch):
    monkeypatch.setattr(bulk, "BATCH", 7)
    ids = q.pub_many([{"kind": "x"}] * 50, max_attempts=1)
    assert q.cancel_all("data.kind:x") == 50
    assert q.counts()["cancelled"] == 50
    assert q.history_collection.count_documents({"status": "cancelled"}) == 50
    failed = [_failed(q, {"kind": "z", "n": n}) for n in range(15)]
    assert q.retry_all({"data.kind": "z"}) == 15
    assert set(_statuses(q, failed)) == {"waiting"} and len(ids) == 50


def test_a_query_that_cant_be_read_changes_nothing(q):
    jobs = _world(q)
    with pytest.raises(QuerySyntaxError):
        q.cancel_all("stauts:waiting")
    with pytest.raises(TypeError):
        q.cancel_all(42)
    assert _statuses(q, jobs["waiting"]) == ["waiting"] * 2


def test_steering_records_one_entry_with_the_exact_count_query_and_capped_ids(q, monkeypatch):
    monkeypatch.setattr(bulk, "BATCH", 40)
    ids = q.pub_many([{"kind": "x"}] * (MAX_IDS + 5), delay=3600)
    hands = Steering(q, Actor.here("notebook"))
    assert hands.promote_all("data.kind:x") == MAX_IDS + 5
    assert hands.cancel_all("data.kind:nothing") == 0  # nothing changed: nothing recorded
    [entry] = q.audit()
    assert entry["action"] == "run all now" and entry["count"] == MAX_IDS + 5
    assert entry["detail"] == "data.kind:x"
    assert len(entry["jobs"]) == MAX_IDS and set(entry["jobs"]) <= set(ids)
    assert hands.cancel_all({"data.kind": "x"}) == MAX_IDS + 5
    assert q.audit()[0]["action"] == "cancel all" and "'data.kind': 'x'" in q.audit()[0]["detail"]


def test_a_viewer_cant_act_on_matches(q):
    from mjq_notebook.errors import ReadOnlyError

    q.pub({"kind": "x"})
    viewer = Steering(q, Actor("page", "someone", "host", role="viewer"))
    for act in (viewer.retry_all, viewer.cancel_all, viewer.promote_all):
        with pytest.raises(ReadOnlyError):
            act("data.kind:x")
    assert q.counts()["waiting"] == 1 and q.audit() == []


def test_mjq_retry_cancel_promote_a_query(q, server_uri):
    failed = [_failed(q, {"kind": "x"}) for _ in range(3)]
    _failed(q, {"kind": "y"})
    base = ("--db", q.db.name, "--queue", q.name)
    out = run_mjq("retry", "status:failed data.kind:x", "--yes", *base, uri=server_uri)
    assert out.returncode == 0, out.stderr
    assert "retried 3 failed jobs" in out.stdout
    assert _statuses(q, failed) == ["waiting"] * 3
    [entry] = q.audit()
    assert (entry["action"], entry["count"], entry["who"]["via"]) == ("retry all", 3, "cli")
    assert entry["detail"] == "status:failed data.kind:x"
    out = run_mjq("promote", "data.kind:x", "--yes", *base, uri=server_uri)
    assert out.returncode == 0 and "0 delayed jobs" in out.stdout
    out = run_mjq("cancel", "data.kind:x", *base, uri=server_uri, stdin="n\n")
    assert out.returncode == 1 and "nothing done" in out.stderr  # not a terminal: no --yes
    assert _statuses(q, failed) == ["waiting"] * 3
    out = run_mjq("cancel", "data.kind:x", "--yes", *base, uri=server_uri)
    assert out.returncode == 0 and "cancelled 3 waiting jobs" in out.stdout
    out = run_mjq("cancel", "stauts:x", "--yes", *base, uri=server_uri)
    assert out.returncode == 2 and "stauts" in out.stderr


def test_the_tails_bulk_buttons_ask_with_the_count_then_act(tail, queue):
    from mjq_notebook.notebook.widgets import bulk_actions

    bulk_ui = tail.bulk_actions
    failed = [_failed(queue, {"kind": "x"}) for _ in range(2)]
    other = _failed(queue, {"kind": "y"})
    assert bulk_ui.button_row.layout.display == "none"  # no query: no bulk buttons
    tail.search.value = "data.kind:x"
    assert bulk_ui.button_row.layout.display is None
    bulk_ui.buttons["retry"].click()
    assert bulk_ui.confirm_box.layout.display is None
    assert "Retry 2 failed jobs matching <code>data.kind:x</code>?" in bulk_ui.label.value
    assert _statuses(queue, failed) == ["failed"] * 2  # nothing happened yet
    bulk_ui.no.click()
    assert bulk_ui.confirm_box.layout.display == "none"
    bulk_ui.buttons["retry"].click()
    bulk_ui.yes.click()
    bulk_ui.wait(30)
    assert "retried 2 failed jobs matching data.kind:x" in bulk_ui.message.value
    assert _statuses(queue, [*failed, other]) == ["waiting", "waiting", "failed"]
    [entry] = queue.audit()
    assert (entry["action"], entry["count"], entry["detail"]) == ("retry all", 2, "data.kind:x")
    tail.search.value = "data.kind:y"  # the message was about another query: it goes
    assert bulk_ui.message.value == ""
    bulk_ui.buttons["cancel"].click()
    assert "no waiting jobs match data.kind:y" in bulk_ui.message.value
    tail.search.value = "stauts:x"
    bulk_ui.buttons["cancel"].click()
    assert "no query" in bulk_ui.message.value and "stauts" in bulk_ui.message.value
    assert bulk_actions.LONG > 2  # the short run above showed no progress bar
    assert bulk_ui.progress.layout.display == "none"


def test_a_long_bulk_run_shows_its_progress(tail, queue, monkeypatch):
    from mjq_notebook.notebook.widgets import bulk_actions

    monkeypatch.setattr(bulk_actions, "LONG", 10)
    monkeypatch.setattr(bulk, "BATCH", 7)
    queue.pub_many([{"kind": "x"}] * 20, delay=3600)
    bulk_ui = tail.bulk_actions
    seen = []
    bulk_ui.progress.observe(lambda change: seen.append(change["new"]), "value")
    tail.search.value = "data.kind:x"
    bulk_ui.buttons["promote"].click()
    assert "Run now 20 delayed jobs matching" in bulk_ui.label.value
    assert bulk_ui.yes.description == "Run them now"
    bulk_ui.yes.click()
    bulk_ui.wait(30)
    assert "made due now 20 delayed jobs" in bulk_ui.message.value
    assert bulk_ui.progress.max == 20 and seen and seen[-1] == 20
    assert queue.count_matches("data.kind:x", "promote") == 0


def test_a_viewer_gets_no_bulk_buttons(queue):
    from mjq_notebook.notebook.widgets import Tail

    viewer = Tail(queue, actor=Actor("page", "someone", "host", role="viewer"))
    try:
        assert viewer.bulk_actions.box is None and viewer.bulk_actions.buttons == {}
        assert viewer.bulk_actions.box not in viewer.children
        viewer.search.value = "data.kind:x"
        labels = {getattr(w, "description", None) for w in _tree(viewer)}
        assert not labels & {"Retry all matches", "Cancel all matches", "Run all now"}
        assert "Workers" in labels  # the tree was walked
    finally:
        viewer.close()


def _tree(widget):
    """Every widget in ``widget``'s tree."""
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _tree(child)


@pytest.mark.parametrize("answer", ["y", "n"])
def test_mjq_asks_with_the_count_on_a_terminal(q, server_uri, answer):
    ids = q.pub_many([{"kind": "x"}] * 2)
    controller, terminal = pty.openpty()
    command = [sys.executable, "-m", "mjq_notebook.cli", "cancel", "data.kind:x"]
    process = subprocess.Popen(
        [*command, "--db", q.db.name, "--queue", q.name],
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MJQ_MONGODB_URI": server_uri},
    )
    os.close(terminal)
    try:
        os.write(controller, f"{answer}\n".encode())
        out, err = process.communicate(timeout=60)
    finally:
        os.close(controller)
    assert "Cancel 2 waiting jobs matching `data.kind:x`? [y/N]" in out
    if answer == "y":
        assert process.returncode == 0 and "cancelled 2 waiting jobs" in out
        assert _statuses(q, ids) == ["cancelled"] * 2
    else:
        assert process.returncode == 1 and "nothing done" in err
        assert _statuses(q, ids) == ["waiting"] * 2 and q.audit() == []
