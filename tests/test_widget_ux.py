"""What a newcomer tripped over in the widgets, and their shared life cycle: running jobs stay
in sight in the tail's "all" view with a backlog, the view-pause says it is one, and every
widget closes cleanly, also after a failed ``__init__`` (headless, against the real server)."""

from __future__ import annotations

import gc
import time

import ipywidgets as widgets
import pytest

from mjq_notebook import JobQueue
from mjq_notebook.live.watch import Watcher
from mjq_notebook.notebook.widgets import Dashboard, Explorer, Publisher, Tail
from mjq_notebook.notebook.widgets.lifecycle import Lifecycle
from mjq_notebook.notebook.widgets.tail import in_sight

from .support.waiting import mjq_threads, wait_for

pytestmark = pytest.mark.both_feeds  # conftest's queue, followed both ways


# -- running jobs stay in sight ----------------------------------------------------------------


def test_running_jobs_stay_in_sight_in_the_all_view_with_a_backlog(queue):
    """With more waiting jobs than rows, the newest rows are all waiting: the running jobs,
    older, used to be out of sight. They come first now, then the newest others."""
    first = queue.pub_many([{"n": n} for n in range(5)])
    running = [queue.next(timeout=5).id for _ in range(2)]
    assert running == first[:2]
    backlog = queue.pub_many([{"backlog": n} for n in range(30)])
    tail = Tail(queue, limit=10)
    try:
        expected = [str(i) for i in [*running[::-1], *backlog[::-1][:8]]]
        wait_for(lambda: [r["id"] for r in tail.table.rows] == expected, 5, "running on top")
        assert [r["status"] for r in tail.table.rows[:2]] == ["working", "working"]
        # finished, a job leaves the top; the newest others fill its row
        queue.done(queue.get(running[1]))
        expected = [str(running[0]), *[str(i) for i in backlog[::-1][:9]]]
        wait_for(lambda: [r["id"] for r in tail.table.rows] == expected, 5, "the row given back")
        # a job claimed from the backlog (the oldest waiting) comes into sight
        claimed = queue.next(timeout=5).id
        assert claimed == first[2]
        wait_for(lambda: tail.table.rows[0]["id"] == str(claimed), 5, "the new claim on top")
        assert tail.table.rows[0]["status"] == "working"
    finally:
        tail.close()
    assert mjq_threads() == []


def test_the_watcher_reads_working_jobs_only_when_the_window_is_full(queue, monkeypatch):
    queue.pub_many([{"n": n} for n in range(3)])
    claimed = queue.next(timeout=5)
    reads = []
    jobs = queue.jobs

    def counting(status=None, **kwargs):
        reads.append(status)
        return jobs(status=status, **kwargs)

    monkeypatch.setattr(queue, "jobs", counting)
    watcher = Watcher.of(queue)
    sub = watcher.subscribe(lambda _snapshot: None, window=10)
    try:
        wait_for(lambda: watcher.snapshot.working, 5, "the working job")
        assert [job.id for job in watcher.snapshot.working] == [claimed.id]
        assert "working" not in reads  # three jobs fill no window of ten: no extra read
        queue.pub_many([{"more": n} for n in range(10)])
        wait_for(lambda: "working" in reads, 5, "a read of the working jobs")
        assert [job.id for job in watcher.snapshot.working] == [claimed.id]
    finally:
        sub.close()


def test_in_sight_keeps_half_the_rows_for_the_newest_jobs():
    from mjq_notebook import Job

    def job(n: int, status: str) -> Job:
        return Job({"_id": n, "status": status})

    working = [job(n, "working") for n in range(20, 0, -1)]
    newest = [job(n, "waiting") for n in range(100, 90, -1)]
    rows = in_sight(working, newest, 10)
    assert [j["_id"] for j in rows] == [20, 19, 18, 17, 16, 100, 99, 98, 97, 96]
    # a job in both shows once, as the working read (the later one) has it
    both = in_sight([job(100, "working")], newest, 3)
    assert [(j["_id"], j["status"]) for j in both] == [
        (100, "working"),
        (99, "waiting"),
        (98, "waiting"),
    ]


# -- the view-pause says it pauses the view ------------------------------------------------------


def test_the_pause_button_says_it_freezes_the_view_not_the_queue(queue):
    tail = Tail(queue)
    try:
        button = tail.pause_button
        assert button.description == "Freeze view"
        assert "the queue keeps running" in button.tooltip
        assert "table" in button.tooltip
        button.value = True
        assert button.description == "Resume view" and tail.table.state == "paused"
        job_id = queue.pub({"while": "frozen"})
        time.sleep(0.5)
        assert str(job_id) not in {r["id"] for r in tail.table.rows}
        assert queue.counts()["waiting"] == 1  # the queue went on
        button.value = False
        assert button.description == "Freeze view"
        wait_for(lambda: tail.table.rows and tail.table.rows[0]["id"] == str(job_id), 5, "live")
    finally:
        tail.close()


def test_the_front_end_words_the_paused_state_as_a_frozen_view():
    from mjq_notebook.notebook.widgets import tail as tail_module

    script = (tail_module._STATIC / "tail.js").read_text()
    assert "view frozen: the queue keeps running" in script


# -- one life cycle -------------------------------------------------------------------------------


def _tree(widget: widgets.Widget) -> list[widgets.Widget]:
    found = [widget]
    for child in getattr(widget, "children", ()):
        found.extend(_tree(child))
    for name in ("tail", "publisher"):
        inner = getattr(widget, name, None)
        if isinstance(inner, widgets.Widget) and inner is not widget:
            found.extend(_tree(inner))
    return found


def _make(kind: str, queue: JobQueue) -> widgets.Widget:
    if kind == "explorer":
        pytest.importorskip("pandas")
        pytest.importorskip("matplotlib")
        return Explorer(queue)
    return {"tail": Tail, "publisher": Publisher, "dashboard": Dashboard}[kind](queue)


KINDS = ["tail", "publisher", "dashboard", "explorer"]


@pytest.mark.parametrize("kind", KINDS)
def test_close_closes_every_widget_it_is_made_of_once(db, kind):
    queue = JobQueue(db, lease=30)
    widget = _make(kind, queue)
    assert isinstance(widget, Lifecycle)
    parts = _tree(widget)
    assert all(part.comm is not None for part in parts)
    widget.close()
    open_parts = [type(part).__name__ for part in parts if part.comm is not None]
    assert open_parts == []  # the explorer's time range, grouping and Refresh stayed open
    widget.close()  # a second close does nothing
    assert mjq_threads() == []


class _Broken(Exception):
    pass


class _BrokenQueue:
    """A queue whose attributes fail: every widget's ``__init__`` fails on it, at a point of
    its own (before or after it made its parts)."""

    def __init__(self, queue: JobQueue, fails: str) -> None:
        self._queue, self._fails = queue, fails

    def __getattr__(self, name: str):
        if name == self._fails:
            raise _Broken(name)
        return getattr(self._queue, name)


@pytest.mark.parametrize(
    "kind, fails",
    [
        ("publisher", "max_attempts"),  # after the editor, before the other controls
        ("tail", "db"),  # Watcher.of: before any control
        ("dashboard", "db"),
        ("explorer", "history"),  # refresh() reports it: no failure
    ],
)
# an exception in a __del__ (Widget.__del__ calls close()) is "unraisable": make it fail
@pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")
def test_a_widget_whose_init_failed_closes_quietly(db, kind, fails):
    queue = _BrokenQueue(JobQueue(db, lease=30), fails)
    try:
        widget = _make(kind, queue)
    except _Broken:
        pass
    else:
        widget.close()
    gc.collect()  # Widget.__del__ closes what __init__ left half-made
    assert mjq_threads() == []


def test_a_half_made_widget_closes_its_own_comm(db, monkeypatch):
    """``__init__`` failing after the widget was made (here: its first subscription) must
    not leave the widget registered with the kernel."""

    def fails(self):
        raise _Broken("subscribe")

    from ipywidgets.widgets.widget import _instances  # the kernel's registry of widgets

    monkeypatch.setattr(Tail, "_subscribe", fails)
    before = set(_instances)
    with pytest.raises(_Broken):
        Tail(JobQueue(db, lease=30))
    leftovers = [_instances[m] for m in set(_instances) - before]
    tails = [w for w in leftovers if isinstance(w, Tail)]
    assert len(tails) == 1
    tails[0].close()
    assert tails[0].comm is None


@pytest.mark.parametrize("kind", ["tail", "dashboard"])
def test_a_live_widget_stops_when_no_longer_shown_and_resumes_when_shown(queue, kind):
    widget = _make(kind, queue)
    counted = widget.table if kind == "tail" else widget
    try:
        wait_for(lambda: mjq_threads(), 5, "the watcher thread")
        counted._view_count = 1  # as the front end reports a view
        counted._view_count = 0  # ... and its going (the cell cleared)
        if kind == "dashboard":
            widget.tail.table._view_count = 1
            widget.tail.table._view_count = 0
        wait_for(lambda: mjq_threads() == [], 5, "every thread to stop")
        counted._view_count = 1
        wait_for(lambda: mjq_threads(), 5, "the watcher thread again")
    finally:
        widget.close()
    assert mjq_threads() == []


@pytest.mark.parametrize("kind", ["tail", "dashboard"])
def test_a_live_widget_leaves_a_static_snapshot_beside_itself(db, kind):
    """The output keeps HTML of the queue beside the widget: a front end that can't show the
    widget (GitHub, nbviewer, an untrusted notebook after a restart) shows that instead of
    "model not found". Job data in it is escaped."""
    queue = JobQueue(db, name="snap")
    job_id = queue.pub({"note": "<script>alert(1)</script>"})
    widget = _make(kind, queue)
    try:
        bundle = widget._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle  # the live widget first
        snapshot = bundle["text/html"]
        assert str(job_id) in snapshot and "snap" in snapshot
        assert "<script>alert" not in snapshot and "&lt;script&gt;" in snapshot
    finally:
        widget.close()
