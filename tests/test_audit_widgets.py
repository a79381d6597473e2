"""The notebook widgets' side of who did what (issue 23, items 4 and 5): every action taken
from a widget goes through its actor's Steering and is recorded once in the queue's audit;
a read-only viewer's overview, dashboard and tail show everything and hold no action
control at all (none is even made), and its handlers, called anyway, change nothing. Driven
in-process as a page's kernel would drive them, against the real server."""

from __future__ import annotations

import getpass
import html
import json
import socket

import ipywidgets as W
import pytest
from ipywidgets.widgets.widget import _instances

import mjq_notebook
from mjq_notebook import JobQueue
from mjq_notebook.core.audit import Actor
from mjq_notebook.core.registry import Registration, State
from mjq_notebook.notebook.widgets import Dashboard, Publisher, Tail
from mjq_notebook.notebook.widgets.lifecycle import Lifecycle

from .support.waiting import mjq_threads, wait_for

SOON = 5.0
OWNER_PAGE = {"HTTP_X_MJQ_ROLE": "owner", "HTTP_X_MJQ_CLIENT": "10.1.2.3:5555"}
VIEWER_PAGE = {"HTTP_X_MJQ_ROLE": "viewer", "HTTP_X_MJQ_CLIENT": "10.9.8.7:4444"}
# every label an action control has ever had; a viewer's tree must hold none of them
ACTION_LABELS = (
    "Pause queue", "Resume queue", "Publish", "Retry", "Retry all failed…",
    "Don't retry", "Cancel job", "Confirm cancel", "Keep it", "Run now", "Release now",
    "Copy to publish form", "Edit and retry", "Retry with this data",
)  # fmt: skip


def _entries(queue: JobQueue) -> list[dict]:
    return list(queue.audit())


def _only(queue: JobQueue, action: str) -> dict:
    """The one entry of ``action`` in the audit (fails if there are none or several)."""
    found = [entry for entry in _entries(queue) if entry["action"] == action]
    assert len(found) == 1, f"{action}: {found}"
    return found[0]


def _notebook_user(who: dict) -> None:
    assert who == {
        "via": "notebook",
        "user": getpass.getuser(),
        "host": socket.gethostname(),
        "role": "owner",
    }


def _row(tail: Tail, job_id) -> dict | None:
    return next((r for r in tail.table.rows if r["id"] == str(job_id)), None)


def _select(tail: Tail, job_id, status: str) -> None:
    wait_for(lambda: (_row(tail, job_id) or {}).get("status") == status, SOON, status)
    tail.select(job_id)


def _fail(queue: JobQueue, *data: dict) -> list:
    ids = queue.pub_many(list(data), max_attempts=1)
    for _ in ids:
        queue.fail(queue.next(), "broken")
    return ids


def _lost_worker_job(queue: JobQueue):
    """A job held by a worker whose record fell silent (lost after 3 x 0.1 s)."""
    queue.pub({"held": "by a worker that is gone"}, priority=100)  # claimed before the rest
    job = queue.next()
    record = Registration(queue, job["worker"], name="gone", queues=[queue.name],
                          concurrency=1, interval=0.1)  # fmt: skip
    record.write(State.RUNNING, [{"id": job.id, "since": job["ts"]["started"], "attempt": 1}], {})
    return job.id


def _said(widget: W.HTML) -> str:
    return html.unescape(widget.value)


def _tree(widget: W.Widget):
    """Every widget in ``widget``'s tree, itself included."""
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _tree(child)


def _controls(widgets) -> list[str]:
    return [w.description for w in widgets if isinstance(w, (W.Button, W.ToggleButton))]


# -- each action, once, with who ------------------------------------------------------------


def test_each_action_of_a_notebook_dashboard_is_recorded_once_with_who(queue):
    """Publish (3 copies), pause, resume, cancel, run now, requeue, requeue all and release,
    each by clicking the dashboard's own buttons: one entry each, with the jobs or the count
    and this notebook's user; the audit panel shows them."""
    board = Dashboard(queue)  # what q.dashboard() makes: no actor, this notebook's user
    tail = board.tail
    failed = _fail(queue, {"n": 1}, {"n": 2}, {"n": 3})  # before any job waits
    try:
        board.publisher.copies.value = 3
        board.publisher.publish_button.click()
        published = _only(queue, "publish")
        assert published["count"] == 3 and len(published["jobs"]) == 3
        assert {queue.get(i)["status"] for i in published["jobs"]} == {"waiting"}
        _notebook_user(published["who"])
        wait_for(lambda: "publish" in board.audit_panel.value, SOON, "the panel's publish")

        board.pause_queue_button.click()
        assert queue.paused
        wait_for(lambda: board.pause_queue_button.description == "Resume queue", SOON, "resume")
        board.pause_queue_button.click()
        assert not queue.paused
        _notebook_user(_only(queue, "pause")["who"])
        _notebook_user(_only(queue, "resume")["who"])

        waiting = published["jobs"][0]
        _select(tail, waiting, "waiting")
        tail.actions.cancel_job_button.click()  # asks first: nothing recorded yet
        assert not [e for e in _entries(queue) if e["action"] == "cancel"]
        tail.actions.cancel_job_button.click()
        assert queue.get(waiting)["status"] == "cancelled"
        assert _only(queue, "cancel")["jobs"] == [waiting]

        delayed = queue.pub({"later": True}, delay=600)
        _select(tail, delayed, "waiting")
        tail.actions.run_now_button.click()
        assert _only(queue, "run now")["jobs"] == [delayed]

        _select(tail, failed[0], "failed")
        tail.requeue_button.click()
        assert queue.get(failed[0])["status"] == "waiting"
        assert _only(queue, "requeue")["jobs"] == [failed[0]]
        tail.requeue_all_button.click()
        assert "Retry 2 failed jobs" in tail.confirm_label.value
        tail.confirm_button.click()
        entry = _only(queue, "requeue all")
        assert entry["count"] == 2 and {queue.get(i)["status"] for i in failed} == {"waiting"}

        # the tail's "all" view shows the working job first
        held = _lost_worker_job(queue)
        wait_for(lambda: (_row(tail, held) or {}).get("worker_lost") == "1", SOON, "lost")
        tail.select(held)
        release = tail.actions.release_button
        wait_for(lambda: release.layout.display is None, SOON, "Release now")
        release.click()
        assert queue.get(held)["status"] == "waiting"
        assert _only(queue, "release")["jobs"] == [held]

        actions = [entry["action"] for entry in _entries(queue)]
        assert sorted(actions) == sorted(
            ["publish", "pause", "resume", "cancel", "run now", "requeue", "requeue all",
             "release"]
        )  # fmt: skip
        assert all(entry["who"]["via"] == "notebook" for entry in _entries(queue))
        for action in ("release", "requeue all", "run now", "cancel", "resume", "pause"):
            wait_for(lambda a=action: f"<td>{a}</td>" in board.audit_panel.value, SOON, action)
    finally:
        board.close()
    assert mjq_threads() == []  # the panel added no thread of its own


def test_a_page_owners_actions_through_the_overview_say_page_role_and_client(db):
    """The overview hands its actor to the dashboard it opens, and on to its tail and form."""
    owner = Actor.page(OWNER_PAGE)
    JobQueue(db, "jobs").pub({"seed": 1})
    view = mjq_notebook.overview(db, queue="jobs", actor=owner)
    try:
        board = view.dashboard
        assert board.actor is owner and board.tail.actor is owner
        assert board.publisher.actor is owner
        board.publisher.publish_button.click()
        board.pause_queue_button.click()
        queue = JobQueue.open(db, "jobs")
        for action in ("publish", "pause"):
            who = _only(queue, action)["who"]
            assert who["via"] == "page" and who["role"] == "owner"
            assert who["client"] == "10.1.2.3:5555"
    finally:
        view.close()


def test_the_standalone_tail_and_form_record_their_actions_too(queue):
    form = queue.publisher()
    tail = queue.tail()
    try:
        form.max_attempts.value = 1  # its failure is final
        form.publish_button.click()
        [job_id] = _only(queue, "publish")["jobs"]
        queue.fail(queue.next(), "broken")
        wait_for(lambda: tail.table.state == "live", 10, "the tail live")
        _select(tail, job_id, "failed")
        tail.requeue_button.click()
        _notebook_user(_only(queue, "requeue")["who"])
    finally:
        tail.close()
        form.close()


# -- a read-only viewer ---------------------------------------------------------------------


@pytest.fixture
def viewed(db):
    """A queue with jobs in every state and a worker, and a viewer's overview open on it;
    yields (queue, overview, widgets made while it was built)."""
    queue = JobQueue(db, "watched", lease=30)
    failed = _fail(queue, {"kind": "bad"})[0]
    waiting = queue.pub({"kind": "fine"})
    queue.pub({"kind": "later"}, delay=600)
    record = Registration(queue, "w-1", name="reader-visible-worker", queues=[queue.name],
                          concurrency=1, interval=5.0)  # fmt: skip
    record.write(State.RUNNING, [], {})
    before = set(_instances)  # every widget alive, each with its comm to the front end
    view = mjq_notebook.overview(db, queue="watched", actor=Actor.page(VIEWER_PAGE))
    made = [_instances[key] for key in set(_instances) - before]
    yield queue, view, made, {"failed": failed, "waiting": waiting}
    view.close()


def test_a_viewer_sees_everything_and_no_action_control_exists(viewed):
    _queue, view, made, ids = viewed
    board = view.dashboard
    assert board is not None and board.actor.read_only
    tail = board.tail
    # shown: rows, counts, workers, a job's detail, the audit panel
    wait_for(lambda: _row(tail, ids["failed"]) and _row(tail, ids["waiting"]), SOON, "rows")
    wait_for(lambda: "failed 1" in board.counters.value, SOON, "the counts")
    wait_for(lambda: "reader-visible-worker" in board.workers_panel.value, SOON, "workers")
    tail.select(ids["failed"])
    assert "broken" in tail.detail.value
    wait_for(lambda: "no actions recorded" in board.audit_panel.value, SOON, "the audit")
    assert "read-only" in board.steer_message.value and "read-only" in view.children[0].value

    # absent: not hidden, not made; nothing in the tree, nothing among the widgets made
    assert board.publisher is None and board.pause_queue_button is None
    assert tail.copy_button is None and tail.requeue_all_button is None
    assert tail.confirm_box is None and tail.requeue_button is None
    tree = list(_tree(view))
    assert board in tree and tail in tree
    assert not [w for w in tree if isinstance(w, (Publisher, W.Textarea))]
    for widgets in (tree, made):
        labels = _controls(widgets)
        opens = {button.description for button in board.errors_panel.buttons}  # a group
        assert set(labels) <= {"watched", "Close", "Freeze view", "Workers", *opens}, labels
    # nor in any widget's synced state (the tail's anywidget included)
    states = json.dumps([w.get_state() for w in made if not isinstance(w, W.Image)],
                        default=str)  # fmt: skip
    for label in ACTION_LABELS:
        assert f'"{label}"' not in states, label
    assert '"Freeze view"' in states  # the check would see a label: a view control's


def test_a_viewers_handlers_called_anyway_change_nothing_and_record_nothing(viewed):
    queue, view, _made, ids = viewed
    board = view.dashboard
    tail = board.tail
    counts = queue.counts()
    board._toggle_queue_pause()
    assert "read-only: can't pause" in _said(board.steer_message) and not queue.paused

    _select(tail, ids["waiting"], "waiting")
    tail.actions._cancel()
    assert "read-only: can't cancel" in _said(tail.message)
    tail.actions._run_now()
    assert "read-only: can't run now" in _said(tail.message)
    tail.select(ids["failed"])
    tail.actions._requeue()
    assert "read-only: can't retry" in _said(tail.message)
    tail.requeue_all._ask()
    tail.requeue_all._pending = {"query": None}  # as if a confirmation had been shown
    tail.requeue_all._confirm()
    assert "read-only: can't retry all" in _said(tail.message)
    held = _lost_worker_job(queue)
    tail.actions.show(queue.get(held), worker_lost=True)
    tail.actions._release()
    assert "read-only: can't release" in _said(tail.message)
    form = Publisher(queue, actor=board.actor)
    try:
        assert form.publish() == [] and "read-only: can't publish" in _said(form.message)
        assert form.editor is None and form.publish_button is None
        assert _controls(_tree(form)) == []
    finally:
        form.close()

    assert queue.get(ids["waiting"])["status"] == "waiting"
    assert queue.get(ids["failed"])["status"] == "failed"
    assert queue.get(held)["status"] == "working"
    counts["working"] += 1  # the lost worker's job, published and claimed above
    assert queue.counts() == counts
    assert _entries(queue) == []


def test_a_viewers_standalone_tail_says_it_is_read_only(queue):
    tail = Tail(queue, actor=Actor.page(VIEWER_PAGE))
    try:
        assert "read-only" in tail.read_only_note.value
        labels = _controls(_tree(tail))
        assert set(labels) == {"Freeze view", "Workers"}, labels
        assert isinstance(tail, Lifecycle)
    finally:
        tail.close()


# -- the audit panel's cost -----------------------------------------------------------------


def test_the_audit_panel_reads_entries_only_when_the_audit_moved(queue, monkeypatch):
    """Idle, the panel looks (one count) at its pace and reads no entry, sends nothing; an
    action from elsewhere (the CLI's Steering) shows at the next look, read once."""
    from mjq_notebook.core.audit import Steering
    from mjq_notebook.notebook.widgets import audit_panel

    monkeypatch.setattr(audit_panel, "AUDIT_EVERY_S", 0.2)  # 25 times the pace: a short test
    reads, looks, sent = [], [], []
    real_read, real_collection = audit_panel.read, audit_panel.audit_collection

    def counted_collection(q):
        looks.append(1)
        return real_collection(q)

    monkeypatch.setattr(audit_panel, "read", lambda q, n: reads.append(n) or real_read(q, n))
    monkeypatch.setattr(audit_panel, "audit_collection", counted_collection)
    board = Dashboard(queue)
    try:
        wait_for(lambda: "no actions recorded" in board.audit_panel.value, SOON, "the panel")
        board.audit_panel.observe(sent.append, "value")
        first_reads, first_looks = len(reads), len(looks)
        wait_for(lambda: len(looks) >= first_looks + 5, SOON, "five more looks")
        assert len(reads) == first_reads and sent == []
        assert reads == [audit_panel.AUDIT_ROWS]  # the newest 20 only, once
        Steering(queue, Actor.here("cli")).pause()
        wait_for(lambda: "<td>pause</td>" in board.audit_panel.value, SOON, "the pause")
        assert len(reads) == first_reads + 1
        assert "cli · " in board.audit_panel.value
    finally:
        board.close()
