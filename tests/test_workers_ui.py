"""Seeing and steering a queue in the notebook (issue 16), headless against the real server:
the cancelled status everywhere, Pause queue / Resume queue and the "paused" badge, the tail's
Cancel (confirmed) / Run now / Release now, progress in the tail and the job's display, and
the workers panel (fed by the watcher only while some view shows it)."""

from __future__ import annotations

import datetime as dt
import re
import threading
import time

import pytest

from mjq_notebook import Empty, JobQueue, Worker
from mjq_notebook.core.registry import Registration, State
from mjq_notebook.live import lost as lost_module
from mjq_notebook.live.watch import Watcher
from mjq_notebook.notebook import display
from mjq_notebook.notebook.formatting import progress_of
from mjq_notebook.notebook.widgets import Dashboard, Tail
from mjq_notebook.notebook.widgets import tail as tail_module
from mjq_notebook.notebook.widgets.actions import lost_note
from mjq_notebook.notebook.widgets.workers import JobRates, workers_panel_html

from .support.servers import force_polling
from .support.views import row
from .support.waiting import wait_for
from .support.xss import XSS_IN_ONE

SOON = 5.0  # "eventually", with time to spare on a slow server


@pytest.fixture
def board(queue):
    board = Dashboard(queue)
    wait_for(lambda: board.watcher.snapshot.state == "live", 10, "live")
    yield board
    board.close()


# -- 1. cancelled everywhere -----------------------------------------------------------------


def test_cancelled_has_a_badge_colour_of_its_own_in_light_and_dark(queue):
    css = display.stylesheet()
    assert ".mjq-s-cancelled{background:var(--mjq-cancelled)}" in css
    light, dark = re.findall(r"--mjq-cancelled:(#[0-9a-f]{6})", css)
    others = set(re.findall(r"--mjq-(?:waiting|failed|done|working):(#[0-9a-f]{6})", css))
    assert light not in others and dark not in others
    for colour in (light, dark):  # white badge text reads on it (WCAG AA for bold small text)
        assert _contrast(colour, "#ffffff") >= 4.5, colour
    job_id = queue.pub({"n": 1})
    assert queue.cancel(job_id)
    counts = display.counts_html(queue.counts())
    assert '<span class="mjq-badge mjq-s-cancelled">cancelled 1</span>' in counts
    assert 'mjq-s-cancelled">cancelled</span>' in display.job_list_html(queue.jobs())
    assert "cancelled 1" in display.queue_html(queue)
    detail = display.job_html(queue.get(job_id))
    assert "<dt>cancelled</dt>" in detail and "ran" not in detail  # when, not a run time


def _contrast(a: str, b: str) -> float:
    def luminance(colour: str) -> float:
        rgb = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_tail_and_dashboard_counters_know_cancelled(queue, board):
    queue.cancel(queue.pub({"n": 1}))
    wait_for(lambda: "cancelled 1" in board.counters.value, SOON, "cancelled in the header")
    tail = Tail(queue)  # with its own counters
    try:
        wait_for(lambda: "cancelled 1" in tail.counters.value, SOON, "cancelled in the tail")
        assert row(tail, queue.jobs()[0].id)["status"] == "cancelled"
    finally:
        tail.close()


# -- 2. pause ----------------------------------------------------------------------------------


def test_pause_queue_in_the_dashboard_stops_claims_and_resume_lets_them_go_on(queue, board):
    queue.pub({"n": 1})
    button = board.pause_queue_button
    assert button.description == "Pause queue" and "mjq-s-paused" not in board.counters.value
    button.click()
    assert queue.paused
    started = time.monotonic()
    wait_for(lambda: "mjq-s-paused" in board.counters.value, 1.5, "the paused badge")
    assert time.monotonic() - started < 1.5
    assert button.description == "Resume queue"
    assert board.tail.pause_button.description == "Freeze view"  # the view is another thing
    with pytest.raises(Empty):
        queue.next()
    button.click()
    assert not queue.paused
    wait_for(lambda: "mjq-s-paused" not in board.counters.value, 1.5, "the badge to go")
    assert button.description == "Pause queue"
    assert queue.next(timeout=2)["data"] == {"n": 1}


def test_a_pause_from_elsewhere_shows_within_two_seconds(queue, board, client, db):
    other = JobQueue(client[db.name])
    other.pause()
    wait_for(lambda: "mjq-s-paused" in board.counters.value, 2.5, "the paused badge")
    other.resume()
    wait_for(lambda: board.pause_queue_button.description == "Pause queue", 2.5, "resumed")


def test_a_failed_pause_is_said_not_raised(queue, board, monkeypatch):
    def broken():
        raise ConnectionError("no server")

    monkeypatch.setattr(queue, "pause", broken)
    board.pause_queue_button.click()  # no exception
    assert "could not pause: ConnectionError" in board.steer_message.value


def test_the_flag_and_the_workers_are_read_only_while_a_view_shows_them(queue, monkeypatch):
    reads = {"paused": 0, "workers": 0}
    real_workers = JobQueue.workers

    def workers(self):
        reads["workers"] += 1
        return real_workers(self)

    monkeypatch.setattr(JobQueue, "workers", workers)
    monkeypatch.setattr(
        JobQueue, "paused", property(lambda self: reads.__setitem__("paused", 1 + reads["paused"]))
    )
    tail = Tail(queue)
    try:
        wait_for(lambda: tail.table.state == "live", 10, "live")
        time.sleep(2.5)
        assert reads == {"paused": 0, "workers": 0}  # a plain tail shows neither
        assert tail.watcher.snapshot.workers is None and tail.watcher.snapshot.paused is None
        tail.workers_button.value = True  # the compact panel: workers every WORKERS_S
        time.sleep(4.2)
        assert 2 <= reads["workers"] <= 4 and reads["paused"] == 0
        tail.workers_button.value = False
        time.sleep(0.6)
        before = reads["workers"]
        time.sleep(2.5)
        assert reads["workers"] == before
    finally:
        tail.close()


# -- 3. the tail's actions -----------------------------------------------------------------


def test_cancel_in_the_tail_asks_to_confirm_then_cancels(queue, tail):
    job_id = queue.pub({"cancel": "me"})
    wait_for(lambda: row(tail, job_id), SOON, "the job")
    tail.select(job_id)
    cancel = tail.actions.cancel_job_button
    assert cancel.layout.display is None and cancel.description == "Cancel job"
    assert tail.actions.run_now_button.layout.display == "none"  # due already
    cancel.click()
    assert queue.get(job_id)["status"] == "waiting"  # the first click only asks
    assert cancel.description == "Confirm cancel" and cancel.button_style == "danger"
    tail.actions.keep_button.click()
    assert cancel.description == "Cancel job" and queue.get(job_id)["status"] == "waiting"
    cancel.click()
    cancel.click()
    assert queue.get(job_id)["status"] == "cancelled"
    assert "is cancelled" in tail.message.value
    assert cancel.layout.display == "none"  # the detail shows it as it is now
    wait_for(lambda: row(tail, job_id)["status"] == "cancelled", SOON, "the row")
    assert queue.counts()["cancelled"] == 1


def test_a_confirmation_does_not_carry_over_to_another_job(queue, tail):
    first, second = queue.pub({"n": 1}), queue.pub({"n": 2})
    wait_for(lambda: row(tail, second), SOON, "the jobs")
    tail.select(first)
    tail.actions.cancel_job_button.click()
    tail.select(second)
    assert tail.actions.cancel_job_button.description == "Cancel job"
    tail.actions.cancel_job_button.click()  # asks again, for this one
    assert queue.get(second)["status"] == queue.get(first)["status"] == "waiting"


def test_run_now_promotes_a_delayed_job(queue, tail):
    job_id = queue.pub({"later": True}, delay=600)
    wait_for(lambda: row(tail, job_id), SOON, "the job")
    tail.select(job_id)
    run_now = tail.actions.run_now_button
    assert run_now.layout.display is None
    with pytest.raises(Empty):
        queue.next()
    run_now.click()
    assert "is due now" in tail.message.value
    assert run_now.layout.display == "none"
    assert queue.next(timeout=2).id == job_id


def test_actions_that_fail_say_so_in_the_message_line(queue, tail, monkeypatch):
    job_id = queue.pub({"n": 1}, delay=600)
    wait_for(lambda: row(tail, job_id), SOON, "the job")
    tail.select(job_id)

    def broken(job):
        raise ConnectionError("gone")

    monkeypatch.setattr(queue, "promote", broken)
    tail.actions.run_now_button.click()
    assert "run now failed: ConnectionError" in tail.message.value


def test_a_lost_workers_job_says_when_it_comes_back_and_can_be_released(queue, tail, client, db):
    job_id = queue.pub({"held": "by a lost worker"})
    job = queue.next()
    # the worker that claimed it registers, then falls silent: lost after 3 x 0.1 s
    record = Registration(queue, job["worker"], name="w", queues=[queue.name], concurrency=1,
                          interval=0.1)  # fmt: skip
    record.write(State.RUNNING, [{"id": job.id, "since": job["ts"]["started"], "attempt": 1}], {})
    tail.select(job_id)
    lease = job["lease_until"].strftime("%H:%M:%S")
    note = (
        f"worker lost · claimable again from {lease} UTC, when its lease ends, "
        "by the next free worker"
    )
    wait_for(lambda: note in tail.actions.note.value, SOON, "the lost worker's note")
    release = tail.actions.release_button
    assert release.layout.display is None
    release.click()
    assert "is waiting again" in tail.message.value
    assert queue.get(job_id)["status"] == "waiting"
    wait_for(lambda: tail.actions.note.value == "", SOON, "the note to go")
    other = JobQueue(client[db.name])  # another worker, alive as far as the registry says
    again = other.next(timeout=2)
    assert again.id == job_id and again["worker"] != job["worker"]
    wait_for(lambda: "attempt 2 of" in tail.detail.value, SOON, "the new attempt shown")
    assert release.layout.display == "none"
    release.click()  # (a hidden button can't be clicked in the page; here: nothing happens)
    assert queue.get(job_id)["status"] == "working" and queue.get(job_id)["attempts"] == 2
    assert not queue.reclaim(job)  # the attempt the user saw is over: the new one stays
    with pytest.raises(Exception):  # noqa: B017 - and the first claim can't finish it
        queue.done(job)


def test_a_working_job_of_a_live_worker_offers_no_release(queue, tail, monkeypatch):
    read = []
    real = lost_module.workers_by_id
    monkeypatch.setattr(
        lost_module, "workers_by_id", lambda q, ids: read.append(ids) or real(q, ids)
    )
    job_id = queue.pub({"n": 1})
    job = queue.next()
    record = Registration(queue, job["worker"], name="w", queues=[queue.name], concurrency=1,
                          interval=30)  # fmt: skip
    record.write(State.RUNNING, [], {})
    tail.select(job_id)
    wait_for(lambda: {job["worker"]} in read, SOON, "its worker's record read")
    time.sleep(0.5)
    assert tail.actions.release_button.layout.display == "none"
    assert tail.actions.note.value == ""


def test_a_job_shows_whether_its_worker_is_alive(queue):
    """``q.get(id)`` in a notebook: a working job's display says what the registry says of its
    worker now; a job of a consumer that never registered (a bare ``next()``) says nothing."""
    bare = queue.pub({"n": 0})
    queue.next()
    assert "heartbeat" not in queue.get(bare)._repr_html_()
    job_id = queue.pub({"n": 1})
    job = queue.next()
    record = Registration(queue, job["worker"], name="w", queues=[queue.name], concurrency=1,
                          interval=1.0)  # fmt: skip
    record.write(State.RUNNING, [{"id": job.id, "since": job["ts"]["started"], "attempt": 1}], {})
    shown = queue.get(job_id)._repr_html_()
    assert "(running · last heartbeat" in shown and "worker lost" not in shown
    wait_for(lambda: "worker lost" in queue.get(job_id)._repr_html_(), 10, "lost (3 x 1 s)")
    queue.done(job)
    done = queue.get(job_id)._repr_html_()
    assert "heartbeat" not in done and "worker lost" not in done  # finished: no worker now


def test_a_job_shows_without_its_worker_when_the_registry_is_not_readable(queue, monkeypatch):
    """A user allowed to read the queue but not its registry still gets the job."""
    from pymongo.errors import OperationFailure

    from mjq_notebook.core import registry

    class Unauthorized:
        def find(self, *args, **kwargs):
            raise OperationFailure("not authorized on the workers collection", code=13)

    job_id = queue.pub({"n": 1})
    queue.next()
    monkeypatch.setattr(registry, "workers_collection", lambda q: Unauthorized())
    job = queue.get(job_id)
    assert job["status"] == "working" and job._worker is None
    assert "heartbeat" not in job._repr_html_()


def test_lost_note_words():
    now = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    later = {"lease_until": now + dt.timedelta(seconds=190)}
    assert (
        lost_note(later, now)
        == "worker lost · claimable again from 12:03:10 UTC, when its lease ends, by the next "
        "free worker"
    )
    assert "its lease ended at 11:59:00 UTC: waiting for a free worker to take it" in lost_note(
        {"lease_until": now - dt.timedelta(minutes=1)}, now
    )


# -- 4. progress -----------------------------------------------------------------------------


def test_progress_text():
    at = dt.datetime.now(dt.timezone.utc)
    assert progress_of({"progress": {"done": 4, "total": 10, "message": "resizing", "at": at}}) == (
        0.4,
        "40% · 4/10 · resizing",
    )
    assert progress_of({"progress": {"done": 3, "total": None, "message": None}}) == (
        None,
        "3 done",
    )
    assert progress_of({}) is None and progress_of({"progress": "odd"}) is None


@pytest.mark.parametrize("mode", ["auto", "polling"])
def test_progress_reaches_the_tail_row_and_the_detail_within_a_second(queue, mode, monkeypatch):
    if mode == "polling":
        force_polling(monkeypatch, queue)
    tail = Tail(queue, limit=20)
    try:
        wait_for(lambda: tail.table.state == "live", 10, "the tail to go live")
        _progress_shows(queue, tail)
    finally:
        tail.close()


def _progress_shows(queue, tail):
    job_id = queue.pub({"resize": "photos"})
    job = queue.next()
    wait_for(lambda: row(tail, job_id) and row(tail, job_id)["status"] == "working", SOON, "w")
    tail.select(job_id)
    assert row(tail, job_id)["progress"] == "" and row(tail, job_id)["progress_pct"] == ""
    job.progress(4, 10, f"resizing {XSS_IN_ONE}")
    started = time.monotonic()
    wait_for(lambda: row(tail, job_id)["progress_pct"] == "40", 1.0, "progress in the row")
    print(f"progress shown after {time.monotonic() - started:.2f} s")
    assert row(tail, job_id)["progress"] == f"40% · 4/10 · resizing {XSS_IN_ONE}"  # the JS: text
    wait_for(lambda: "40% · 4/10 · resizing" in tail.detail.value, 1.0, "progress in the detail")
    assert 'role="progressbar"' in tail.detail.value and "width:40.0%" in tail.detail.value
    assert "<script>" not in tail.detail.value and "&lt;script&gt;" in tail.detail.value
    queue.done(job)
    wait_for(lambda: row(tail, job_id)["status"] == "done", SOON, "done")
    assert row(tail, job_id)["progress"] == ""  # a bar only while it runs
    assert "last progress" in display.job_html(queue.get(job_id))


def test_tail_js_renders_progress_as_text_and_a_clamped_width():
    source = (tail_module._STATIC / "tail.js").read_text()
    assert "innerHTML" not in source and "insertAdjacentHTML" not in source
    assert "Math.min(pct, 100)" in source and "label.textContent = text" in source


# -- 5. the workers panel --------------------------------------------------------------------


def test_the_dashboard_shows_two_workers_with_what_they_run(queue, board):
    gate = threading.Event()

    def handler(job):
        gate.wait(20)

    workers = [Worker(queue, handler, heartbeat=0.5, name=f"w{n} {XSS_IN_ONE}") for n in (1, 2)]
    for worker in workers:
        worker.start()
    try:
        job_id = queue.pub({"slow": True})
        panel = board.workers_panel

        def two_rows():
            running = f"<code>{job_id}</code> for"  # only the id in code font
            return panel.value.count("<tr data-state=") == 2 and running in panel.value

        wait_for(two_rows, SOON, "two workers, one running the job")
        html = panel.value
        assert "workers: 2 running" in html
        assert "<script>" not in html and "&lt;script&gt;" in html
        assert "<img src=x" not in html
        assert re.search(r"\d+ (ms|s) ago", html)
        for header in ("host:pid", "job", "done", "failed", "jobs/min", "busy"):
            assert f">{header}</th>" in html
    finally:
        gate.set()
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.join(10)
    wait_for(lambda: "2 stopped" in board.workers_panel.value, SOON, "both stopped")


def test_the_tails_compact_workers_panel(queue, tail):
    record = Registration(queue, "h:1:abc", name="compact", queues=[queue.name], concurrency=1,
                          interval=30)  # fmt: skip
    record.write(State.RUNNING, [], {"done": 3})
    view = tail.workers_view.widget
    assert view.layout.display == "none"
    tail.workers_button.value = True
    assert view.layout.display is None
    wait_for(lambda: "compact" in view.value, SOON, "the worker")
    assert "idle" in view.value and ">jobs/min</th>" not in view.value  # compact


def test_jobs_a_minute_from_heartbeats():
    start = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    rates = JobRates()
    row = {"_id": "w", "state": "running", "interval": 5.0, "started": start,
           "heartbeat": start + dt.timedelta(seconds=60), "done": 30, "failed": 0}  # fmt: skip
    rates.add([row])
    assert rates.per_minute(row) == pytest.approx(30.0)  # its life's average at first
    later = {**row, "heartbeat": start + dt.timedelta(seconds=70), "done": 40, "failed": 2}
    rates.add([later])
    assert rates.per_minute(later) == pytest.approx(72.0)  # 12 jobs in 10 s


def test_the_panel_escapes_every_record_field():
    now = dt.datetime.now(dt.timezone.utc)
    record = {**dict.fromkeys(("_id", "name", "host", "pid", "state", "done"), XSS_IN_ONE),
              "heartbeat": now, "running": [{"id": XSS_IN_ONE, "since": now}],
              "busy": None}  # fmt: skip
    for compact in (False, True):
        html = workers_panel_html([record], now, JobRates(), compact=compact)
        assert "<script>" not in html and "<img" not in html and "<b>" not in html
        assert 'mjq-s-other"' in html  # an unknown state: a fixed class
    assert "no workers registered" in workers_panel_html([], now)


def test_one_watcher_thread_feeds_the_dashboard_and_its_panel(queue, board):
    names = [t.name for t in threading.enumerate() if t.name.startswith("mjq-watch-")]
    assert names == [f"mjq-watch-{queue.db.name}.{queue.name}"]
    assert Watcher.of(queue) is board.watcher
