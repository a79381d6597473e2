"""The dashboard's Errors panel: failures grouped by error, a group's button opening its jobs
in the tail (``group:<key>``), "Retry all N" / "Cancel all…" after a confirmation with the
count, through the audit; a viewer gets no action; hostile error texts stay text."""

from __future__ import annotations

import time

import pytest

from mjq_notebook import JobQueue
from mjq_notebook.core.audit import Actor

from .support.waiting import mjq_threads, wait_for
from .support.xss import XSS, assert_escaped


def fail_many(queue: JobQueue, n: int, exc_type: type[Exception], text: str) -> list:
    """``n`` jobs, each failed for good with ``exc_type(text.format(i))``; their ids."""
    ids = []
    for i in range(n):
        queue.pub({"i": i, "kind": exc_type.__name__})
        job = queue.next()
        try:
            raise exc_type(text.format(i))
        except Exception as exc:
            assert queue.fail(job, exc) is False
        ids.append(job.id)
    return ids


@pytest.fixture
def q(db):
    return JobQueue(db, "panel", lease=30, backoff=0.05, max_attempts=1)


@pytest.fixture
def board(q):
    from mjq_notebook.notebook.widgets.dashboard import Dashboard

    board = Dashboard(q)
    yield board
    board.close()
    assert mjq_threads() == []


def _row_of(panel, kind: str) -> int:
    return next(i for i, g in enumerate(panel.groups) if g["type"] == kind)


def test_a_group_opens_its_jobs_in_the_tail_and_retry_all_requeues_exactly_them(q, board):
    keys = fail_many(q, 3, KeyError, "user {} missing")
    values = fail_many(q, 2, ValueError, "bad row {}")
    panel = board.errors_panel
    panel.refresh(force=True)
    assert [g["count"] for g in panel.groups] == [2, 3]  # the newest failure first
    assert panel.rows[1].layout.display == "flex" and panel.rows[2].layout.display == "none"
    assert "user &lt;n&gt; missing" in panel.cells[_row_of(panel, "KeyError")].value
    row = _row_of(panel, "KeyError")
    key = panel.groups[row]["group"]
    panel.buttons[row].click()
    assert board.tail.search.value == f"group:{key}"
    assert panel.retry_button.description == "Retry all 3"
    assert panel.retry_button.layout.display is None  # shown
    panel.retry_button.click()
    assert panel.confirm_button.description == "Confirm: retry 3 jobs"
    assert panel.confirm_button.layout.display is None
    panel.confirm_button.click()
    assert "retried 3 jobs" in panel.message.value
    assert {q.get(i)["status"] for i in keys} == {"waiting"}
    assert {q.get(i)["status"] for i in values} == {"failed"}
    assert q.audit(1)[0]["action"] == "retry all" and q.audit(1)[0]["count"] == 3
    panel.refresh()  # due after the action: aggregated again
    assert [g["type"] for g in panel.groups] == ["ValueError"]
    # the retried jobs wait with their last error: "Cancel all…" counts and cancels them
    panel.open(key)  # no longer a failed group: nothing selected
    assert panel.selected is None and panel.retry_button.layout.display == "none"


def test_cancel_all_asks_first_and_keep_changes_nothing(q, board):
    *ids, _stays = fail_many(q, 3, KeyError, "user {} missing")  # the group stays listed
    assert q.retry_all({"_id": {"$in": ids}}) == 2  # waiting again, their last error kept
    panel = board.errors_panel
    panel.refresh(force=True)
    panel.buttons[0].click()
    panel.cancel_button.click()
    assert panel.confirm_button.description == "Confirm: cancel 2 jobs"
    panel.keep_button.click()
    assert panel.confirm_button.layout.display == "none"
    assert {q.get(i)["status"] for i in ids} == {"waiting"}
    panel.cancel_button.click()
    panel.confirm_button.click()
    assert {q.get(i)["status"] for i in ids} == {"cancelled"}
    assert "cancelled 2 jobs" in panel.message.value


def test_a_viewer_gets_no_action_but_can_open_a_group(q):
    from mjq_notebook.notebook.widgets.dashboard import Dashboard

    fail_many(q, 2, KeyError, "user {} missing")
    board = Dashboard(q, actor=Actor(via="page", user="u", host="h", role="viewer"))
    try:
        panel = board.errors_panel
        assert panel.retry_button is None and panel.cancel_button is None
        assert panel.confirm_button is None
        panel.refresh(force=True)
        panel.buttons[0].click()
        assert board.tail.search.value == f"group:{panel.groups[0]['group']}"
        with pytest.raises(Exception, match="read-only"):
            board.steering.retry_all(panel.groups[0]["query"])
    finally:
        board.close()


def test_hostile_error_texts_are_escaped_in_the_panel(q, board):
    for payload in XSS:
        q.pub({})
        job = q.next()
        q.worker_id = payload
        q.fail(job, payload)
    panel = board.errors_panel
    panel.refresh(force=True)
    assert len(panel.groups) >= 1
    panel.buttons[0].click()
    assert_escaped(panel.widget)


def test_the_dashboard_tick_regroups_when_the_failed_count_moved(q, board, monkeypatch):
    from mjq_notebook.notebook.widgets import errors_panel

    monkeypatch.setattr(errors_panel, "ERRORS_EVERY_S", 0.5)
    panel = board.errors_panel
    fail_many(q, 1, KeyError, "user {} missing")
    wait_for(lambda: len(panel.groups) == 1, 15, "the first group on the chart tick")
    wait_for(lambda: board.watcher.snapshot.counts.get("failed") == 1, 5, "the count")
    time.sleep(1.5)  # a tick or more after the count moved: the panel has looked at it
    reads = []
    real = q.errors
    monkeypatch.setattr(q, "errors", lambda *a, **k: reads.append(1) or real(*a, **k))
    time.sleep(2)  # ticks with nothing moved: no aggregation
    assert reads == []
    fail_many(q, 1, ValueError, "bad row {}")
    wait_for(lambda: len(panel.groups) == 2, 15, "the new group on the chart tick")
    assert "bad row &lt;n&gt;" in "".join(cell.value for cell in panel.cells)
