"""The live views stay true and bounded: after a burst, under a flood of change events far
past the embedded server's pace, for a job outside the window, through outages, and with
several queues. (How much CPU they cost is measured in benchmarks/bench_widgets.py.)"""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from mjq_notebook import JobQueue
from mjq_notebook.live import activity as activity_module
from mjq_notebook.live.activity import SPAN_S, Activity
from mjq_notebook.live.watch import REFRESH_S, Snapshot
from mjq_notebook.notebook.widgets import Tail
from mjq_notebook.notebook.widgets.dashboard import Dashboard, counters_html

from .support.feed import SyntheticStream, feed_queue
from .support.waiting import mjq_threads, wait_for

pytestmark = pytest.mark.both_feeds  # conftest's queue, followed both ways


def _finish(q: JobQueue, n: int, fail_every: int = 0) -> None:
    """Claim and finish ``n`` jobs; every ``fail_every``-th fails (for good: one attempt)."""
    for i in range(n):
        job = q.next(timeout=5)
        if fail_every and i % fail_every == 0:
            q.fail(job, ValueError("bad luck"))
        else:
            q.done(job)


def test_after_a_burst_of_5000_jobs_the_dashboard_shows_the_truth(queue, other, monkeypatch):
    # a burst inserted over several seconds is counted in full at the next whole recount
    monkeypatch.setattr(activity_module, "RECOUNT_S", 2)
    board = Dashboard(queue)
    try:
        wait_for(lambda: board.watcher.snapshot.state == "live", 10, "live")
        other.pub_many([{"n": n} for n in range(40)], max_attempts=1)
        _finish(other, 40, fail_every=8)
        burst = other.pub_many([{"burst": n} for n in range(5000)])
        expected = queue.counts(warn=False)
        assert expected == {
            "waiting": 5000,
            "working": 0,
            "done": 35,
            "failed": 5,
            "cancelled": 0,
            "lost": 0,
        }
        wait_for(lambda: board.watcher.snapshot.counts == expected, 10, "the true counts")
        wait_for(lambda: "waiting 5,000" in board.counters.value, 3, "the counters shown")
        # the rows are the newest jobs, newest first
        newest = [str(job_id) for job_id in burst[::-1][:50]]
        wait_for(lambda: [r["id"] for r in board.tail.table.rows] == newest, 3, "the rows")
        # the charts count every job finished (and created) in their window, once
        wait_for(lambda: board.watcher.snapshot.activity.total_finished == 40, 3, "the charts")
        activity = board.watcher.snapshot.activity
        start = dt.datetime.fromtimestamp(activity.end - SPAN_S, dt.timezone.utc)
        finished = queue.history_collection.count_documents({"ts.done": {"$gte": start}})
        assert activity.total_finished == finished == 40
        assert len(activity.run_s) == 40
        wait_for(lambda: sum(board.watcher.snapshot.activity.created) == 5040, 5, "created")
        wait_for(lambda: "last 40 finished jobs" in board.histogram.value, 3, "the histogram")
        # stopping freezes the counts of that moment, not those of the last refresh
        other.pub({"late": True})
        board.stop()
        assert "waiting 5,001" in board.counters.value and "stopped" in board.counters.value
    finally:
        board.close()
    assert mjq_threads() == []


def _count_messages(widgets: list) -> list[float]:
    """Record the moment of every message the widgets send to the front end."""
    sent: list[float] = []
    for widget in widgets:
        original = widget._send

        def counting(msg, buffers=None, original=original):
            sent.append(time.monotonic())
            return original(msg, buffers=buffers)

        widget._send = counting
    return sent


def test_a_flood_of_30000_events_a_second_sends_at_most_ten_messages_and_stays_exact(
    db, other, monkeypatch
):
    q = JobQueue(db, lease=30, backoff=0.05)
    feed_queue(q, 30_000, monkeypatch)  # the stream: 10,000 jobs/s as a real MongoDB would
    board = Dashboard(q)
    try:
        wait_for(lambda: board.watcher.snapshot.state == "live", 10, "live")
        parts = [board.counters, board.sparkline, board.histogram, board.tail.table]
        sent = _count_messages([*parts, board.tail.counters, board.tail.detail])
        offered, read = SyntheticStream.offered, SyntheticStream.read
        stop = threading.Event()

        def publish() -> None:  # real changes too, so the views do have news to send
            while not stop.wait(0.02):
                other.pub({"real": True})

        publisher = threading.Thread(target=publish)
        publisher.start()
        start = time.monotonic()
        time.sleep(4)
        stop.set()
        publisher.join()
        seconds = time.monotonic() - start
        flood = [t for t in sent if t >= start]
        assert len(flood) / seconds <= 10, f"{len(flood)} messages in {seconds:.1f} s"
        assert len(flood) >= 4  # it did keep showing the real jobs
        time.sleep(0.5)  # the feed's streams are closed as the watcher reopens them
        # of the ~120,000 events, those that came while a stream was open could have been
        # read; one per refresh was, and refreshes come at least REFRESH_S apart, whatever the
        # load (a refresh that waits for nothing reads twice as many here, or more)
        handed_out = SyntheticStream.read - read
        elapsed = time.monotonic() - start
        assert 4 <= handed_out <= elapsed / REFRESH_S + 2, f"{handed_out} in {elapsed:.1f} s"
        assert SyntheticStream.offered - offered > 100 * handed_out
        # what it shows is exact: the counts, the newest rows
        expected = q.counts(warn=False)
        wait_for(lambda: board.watcher.snapshot.counts == expected, 3, "the true counts")
        newest = [str(job.id) for job in q.jobs(limit=50)]
        wait_for(lambda: [r["id"] for r in board.tail.table.rows] == newest, 3, "the rows")
    finally:
        board.close()
    assert mjq_threads() == []


def test_the_detail_follows_a_job_outside_the_window_after_requeue(queue, other):
    tail = Tail(queue, limit=2)
    try:
        wait_for(lambda: tail.table.state == "live", 10, "live")
        job_id = other.pub({"follow": "me"}, max_attempts=1)
        other.fail(other.next(timeout=5), ValueError("first try"))
        other.pub_many([{"n": n} for n in range(3)])  # pushes it out of the two rows shown
        wait_for(lambda: str(job_id) not in {r["id"] for r in tail.table.rows}, 3, "scrolled")
        tail.select(job_id)
        assert "failed" in tail.detail.value
        tail.requeue_button.click()
        wait_for(lambda: "waiting" in tail.detail.value, 2, "requeued")
        job = other.next(timeout=5)
        assert job.id == job_id  # the oldest waiting job is claimed first
        other.done(job, {"answer": 42})
        wait_for(lambda: "42" in tail.detail.value, 1.5, "the job's end in its detail")
    finally:
        tail.close()


def test_counters_are_marked_stale_while_reconnecting():
    counts = {"waiting": 3, "working": 1, "done": 7, "failed": 0, "cancelled": 0, "lost": 0}
    empty = Activity(0, (), (), (), ())
    live = Snapshot((), counts, empty, "live", "", "change stream", 1, counts_at=1.7e9)
    away = Snapshot(
        (), counts, empty, "reconnecting", "refused", "change stream", 2, counts_at=1.7e9
    )
    assert "mjq-stale" not in counters_html(live) and "waiting 3" in counters_html(live)
    stale = counters_html(away)
    assert "mjq-stale" in stale and "waiting 3" in stale and "as of 22:13:20 UTC" in stale
    assert "reconnecting" in stale


def test_three_dashboards_on_three_queues_stop_cleanly(db, other):
    queues = [JobQueue(db, name=f"q{n}", lease=30) for n in range(3)]
    boards = [Dashboard(q) for q in queues]
    try:
        for board in boards:
            wait_for(lambda board=board: board.watcher.snapshot.state == "live", 10, "live")
        assert len(mjq_threads()) == 6  # a watcher and a chart thread each
        for n, q in enumerate(queues):
            q.pub_many([{"n": i} for i in range(n + 1)])
        for n, board in enumerate(boards):
            wait_for(lambda n=n, board=board: f"waiting {n + 1}" in board.counters.value, 3, "")
    finally:
        for board in boards:
            board.close()
    assert mjq_threads() == []
