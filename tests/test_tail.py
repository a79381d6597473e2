"""The live tail, headless: rows from other clients and processes within the bounds, filters,
pause, detail, requeue with confirmation, escaping, and clean stops."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mjq_notebook.live.watch import Watcher
from mjq_notebook.notebook.widgets import Tail
from mjq_notebook.notebook.widgets import tail as tail_module

from .support.views import row
from .support.waiting import wait_for, watcher_threads
from .support.xss import XSS_IN_ONE

pytestmark = pytest.mark.both_feeds  # the queue, and conftest's "other" and "tail" on it


def shows(tail, job_id, status=None, **cells):
    r = row(tail, job_id)
    return (
        r is not None
        and (status is None or r["status"] == status)
        and all(r[k] == v for k, v in cells.items())
    )


# The tail's speed (a new job shown within 0.5 s, a status change within 1 s) is measured by
# benchmarks/bench_targets.py; these tests check that things show, with time to spare.
EVENTUALLY = 5.0


def test_a_job_from_another_client_appears(tail, other):
    for n in range(3):
        job_id = other.pub({"n": n, "text": "hello"})
        wait_for(lambda: shows(tail, job_id, "waiting"), EVENTUALLY, "the new job")  # noqa: B023
    r = row(tail, job_id)
    assert r["attempts"] == "0/3" and r["data"] == '{"n": 2, "text": "hello"}'
    # still waiting: its wait goes on (the front end counts it on from live_from)
    assert r["wait"].endswith(" …") and r["run"] == "—" and r["live"] == "wait"
    assert len(r["created"]) == len("2026-03-01 12:00:00.000")
    assert all(isinstance(v, str) for k, v in r.items() if k != "live_from")
    assert tail.table.rows[0]["id"] == str(job_id)  # newest first


def test_a_job_from_mjq_pub_in_another_process_appears(tail, server_uri, db):
    env = {k: v for k, v in os.environ.items() if k not in ("MJQ_MONGODB_URI", "MONGODB_URI")}
    out = subprocess.run(
        [sys.executable, "-m", "mjq_notebook.cli", "pub", "--uri", server_uri, "--db", db.name,
         json.dumps({"from": "cli"})],
        capture_output=True, text=True, timeout=60, env=env, check=True,
    ).stdout  # fmt: skip
    job_id = out.strip()
    wait_for(lambda: shows(tail, job_id, "waiting"), EVENTUALLY, "the job from mjq pub")


def test_status_changes_show(tail, other):
    job_id = other.pub({"task": 1}, max_attempts=2)
    wait_for(lambda: shows(tail, job_id, "waiting"), EVENTUALLY, "the job")
    job = other.next()
    wait_for(lambda: shows(tail, job_id, "working", attempts="1/2"), EVENTUALLY, "working")
    other.fail(job, ValueError("first try"))  # attempts remain: waiting again
    wait_for(
        lambda: shows(tail, job_id, "waiting", attempts="1/2"), EVENTUALLY, "waiting for a retry"
    )
    job = other.next(timeout=5)  # after the retry's back-off
    wait_for(lambda: shows(tail, job_id, "working", attempts="2/2"), EVENTUALLY, "working again")
    other.fail(job, ValueError("second try"))
    wait_for(lambda: shows(tail, job_id, "failed"), EVENTUALLY, "failed")
    done_id = other.pub({"task": 2})
    other.done(other.next(), "ok")
    wait_for(lambda: shows(tail, done_id, "done"), EVENTUALLY, "done")
    r = row(tail, done_id)
    assert r["wait"] != "—" and r["run"] != "—"
    wait_for(lambda: "done 1" in tail.counters.value, EVENTUALLY, "the counters")
    assert "failed 1" in tail.counters.value


def test_filter_and_search_narrow_the_rows(tail, queue):
    ids = queue.pub_many([{"kind": "email", "to": "ann"}, {"kind": "sms"}, {"kind": "email"}])
    queue.done(queue.next())  # the first email
    wait_for(lambda: len(tail.table.rows) == 3, EVENTUALLY, "three rows")
    tail.status_filter.value = "waiting"
    wait_for(
        lambda: {r["id"] for r in tail.table.rows} == {str(i) for i in ids[1:]},
        EVENTUALLY,
        "waiting",
    )
    tail.search.value = "EMAIL"
    wait_for(
        lambda: [r["id"] for r in tail.table.rows] == [str(ids[2])], EVENTUALLY, "waiting emails"
    )
    tail.status_filter.value = "all"
    emails = [str(ids[2]), str(ids[0])]
    wait_for(lambda: [r["id"] for r in tail.table.rows] == emails, EVENTUALLY, "all emails")
    tail.search.value = str(ids[1])  # an id (or a prefix of one)
    wait_for(lambda: [r["id"] for r in tail.table.rows] == [str(ids[1])], EVENTUALLY, "by id")
    # filtered rows stay live
    late = queue.pub({"kind": "sms", "late": True})
    tail.search.value = "sms"
    wait_for(
        lambda: [r["id"] for r in tail.table.rows] == [str(late), str(ids[1])], EVENTUALLY, "live"
    )
    tail.search.value = ""
    wait_for(lambda: len(tail.table.rows) == 4, EVENTUALLY, "everything again")
    assert tail.search.value == "" and tail.status_filter.value == "all"  # never written back


def test_pause_stops_updates_and_resume_catches_up(tail, queue):
    tail.pause_button.value = True
    assert tail.table.state == "paused"
    assert tail.pause_button.description.startswith("Resume")  # "Resume view": the view only
    assert watcher_threads() == []  # nothing polls while paused
    job_id = queue.pub({"while": "paused"})
    time.sleep(0.7)
    assert row(tail, job_id) is None
    tail.pause_button.value = False
    wait_for(lambda: shows(tail, job_id, "waiting"), EVENTUALLY, "the catch-up")
    assert tail.table.state == "live"


def test_select_shows_the_detail_with_the_traceback_and_requeue(tail, queue):
    job_id = queue.pub({"payload": XSS_IN_ONE}, max_attempts=1)
    try:
        raise RuntimeError(f"bad {XSS_IN_ONE}")
    except RuntimeError as exc:
        queue.fail(queue.next(), exc)
    wait_for(lambda: shows(tail, job_id, "failed"), EVENTUALLY, "failed")
    assert tail.requeue_button.layout.display == "none"
    tail.select(job_id)
    assert tail.table.selected == str(job_id)
    detail = tail.detail.value
    assert "Traceback" in detail and "RuntimeError" in detail
    assert "<script>" not in detail and "&lt;script&gt;" in detail
    assert "<img src=x" not in detail
    assert tail.requeue_button.layout.display is None
    tail.requeue_button.click()
    assert queue.get(job_id)["status"] == "waiting"
    assert "waiting again" in tail.message.value
    wait_for(lambda: shows(tail, job_id, "waiting", attempts="1/4"), EVENTUALLY, "requeued")
    assert tail.requeue_button.layout.display == "none"
    tail.requeue_button.click()  # not failed any more: nothing happens
    assert queue.get(job_id)["status"] == "waiting"


def test_the_detail_follows_the_selected_job(tail, queue):
    job_id = queue.pub({"follow": "me"})
    wait_for(lambda: row(tail, job_id), EVENTUALLY, "the job")
    tail.select(job_id)
    assert "waiting" in tail.detail.value
    queue.done(queue.next(), {"answer": 42})
    wait_for(lambda: "42" in tail.detail.value, EVENTUALLY, "the result in the detail")
    tail.select("")
    assert tail.detail.value == "" and tail.copy_button.disabled


def test_requeue_all_needs_confirmation_and_requeues_only_the_failed(tail, queue):
    ids = queue.pub_many([{"n": n, "kind": "a" if n % 2 else "b"} for n in range(6)],
                         max_attempts=1)  # fmt: skip
    for n in range(6):
        job = queue.next()
        if n < 4:
            queue.fail(job, "broken")
        elif n == 4:
            queue.done(job)
    # ids[0..3] failed, ids[4] done, ids[5] working
    wait_for(lambda: shows(tail, ids[3], "failed"), EVENTUALLY, "the failures")
    tail.requeue_all_button.click()
    assert tail.confirm_box.layout.display is None
    assert "Retry 4 failed jobs" in tail.confirm_label.value
    assert queue.counts()["failed"] == 4  # nothing happened yet
    tail.cancel_button.click()
    assert tail.confirm_box.layout.display == "none" and queue.counts()["failed"] == 4
    tail.search.value = "data.kind:a"
    tail.requeue_all_button.click()
    assert "Retry 2 failed jobs" in tail.confirm_label.value
    tail.confirm_button.click()
    assert {queue.get(i)["status"] for i in (ids[1], ids[3])} == {"waiting"}
    assert {queue.get(i)["status"] for i in (ids[0], ids[2])} == {"failed"}
    tail.search.value = ""
    tail.requeue_all_button.click()
    assert "Retry 2 failed jobs" in tail.confirm_label.value
    tail.confirm_button.click()
    assert "retried 2" in tail.message.value
    statuses = [queue.get(i)["status"] for i in ids]
    assert statuses == ["waiting"] * 4 + ["done", "working"]
    assert queue.history_collection.count_documents({"status": "done"}) == 1
    tail.requeue_all_button.click()
    assert tail.confirm_box.layout.display == "none" and "no failed" in tail.message.value


def test_copy_to_the_publish_form(tail, queue):
    got = []
    tail.on_copy(got.append)
    job_id = queue.pub({"copy": [1, 2]})
    wait_for(lambda: row(tail, job_id), EVENTUALLY, "the job")
    assert tail.copy_button.disabled
    tail.select(job_id)
    tail.copy_button.click()
    assert got == [{"copy": [1, 2]}]


def test_rows_are_plain_text_and_the_counters_escaped(tail, queue):
    job_id = queue.pub({XSS_IN_ONE: XSS_IN_ONE})
    wait_for(lambda: row(tail, job_id), EVENTUALLY, "the job")
    data = row(tail, job_id)["data"]
    assert "<script>" in data  # raw text: the front end writes it with textContent only
    js = (Path(tail_module.__file__).parent / "_static" / "tail.js").read_text()
    assert "innerHTML" not in js and "textContent" in js
    assert "<script>" not in tail.counters.value


def test_close_stops_the_thread_and_closes_the_widgets(queue):
    Tail(queue).close()  # open the client's pooled connections first
    before = threading.active_count()
    tail = Tail(queue)
    wait_for(lambda: tail.table.state == "live", 10, "live")
    assert len(watcher_threads()) == 1
    tail.close()
    tail.close()
    assert watcher_threads() == []
    assert threading.active_count() <= before  # pymongo's own threads may end, none is added
    assert tail.table.comm is None and tail.search.comm is None


def test_two_tails_share_one_watcher_and_thread(queue):
    first, second = Tail(queue), Tail(queue, limit=5)
    try:
        assert first.watcher is second.watcher is Watcher.of(queue)
        assert len(watcher_threads()) == 1
        job_id = queue.pub({"both": True})
        wait_for(lambda: row(first, job_id) and row(second, job_id), EVENTUALLY, "both tails")
        first.close()
        assert len(watcher_threads()) == 1
        other_id = queue.pub({"second": "still live"})
        wait_for(lambda: row(second, other_id), EVENTUALLY, "the second tail")
    finally:
        first.close()
        second.close()
    assert watcher_threads() == []


def test_a_tail_no_longer_shown_stops_following(queue):
    tail = Tail(queue)
    try:
        wait_for(lambda: tail.table.state == "live", 10, "live")
        tail.table._view_count = 1  # the front end counts its views
        tail.table._view_count = 0  # the cell was cleared or re-run
        assert watcher_threads() == []
        tail.table._view_count = 1  # shown again
        job_id = queue.pub({"back": True})
        wait_for(lambda: row(tail, job_id), EVENTUALLY, "the job after the view came back")
    finally:
        tail.close()


def test_at_most_ten_messages_a_second_and_none_when_idle(tail, queue):
    sent = []
    for widget in (tail.table, tail.counters, tail.detail):
        original = widget._send

        def counting(msg, buffers=None, widget=widget, original=original):
            sent.append((time.monotonic(), widget, msg))
            return original(msg, buffers=buffers)

        widget._send = counting
    time.sleep(0.6)
    sent.clear()
    time.sleep(1.0)
    assert sent == [], "sent updates although nothing changed"
    start = time.monotonic()
    while time.monotonic() - start < 2.0:
        queue.pub({"flood": True})
        time.sleep(0.01)
    table = [t for t, widget, _ in sent if widget is tail.table]
    assert 5 <= len(table) <= 24, len(table)  # ~10 a second over 2 s
    assert len([w for _, w, _ in sent if w is tail.counters]) <= 4  # counts: once a second


def test_the_tail_and_q_jobs_show_a_job_alike(queue):
    """One row builder: a delayed job is "due in", a running one runs on, and a waiting job
    of pymjq (ts.started and ts.done filled with its publish time) waits on, in both."""
    from mjq_notebook.core.job import utcnow
    from mjq_notebook.notebook.display import job_cells
    from mjq_notebook.notebook.widgets.rows import job_row

    delayed = queue.pub({"later": True}, delay=3600)
    queue.pub({"running": True})
    running = queue.next()
    published = utcnow()
    pymjq = queue.collection.insert_one(
        {"status": "waiting", "data": {"from": "pymjq"},
         "ts": {"created": published, "started": published, "done": published}}
    ).inserted_id  # fmt: skip
    now = utcnow()
    jobs = {job.id: job for job in queue.jobs()}
    rows = {job_id: job_row(jobs[job_id], now) for job_id in (delayed, running.id, pymjq)}
    for job_id, r in rows.items():
        cells = job_cells(jobs[job_id], now)
        assert {k: r[k] for k in cells if k != "error"} == {
            k: v for k, v in cells.items() if k != "error"
        }
    assert rows[delayed]["wait"].startswith("due in ") and rows[delayed]["live"] == "due"
    assert rows[running.id]["run"].endswith(" …") and rows[running.id]["live"] == "run"
    assert rows[pymjq]["wait"].endswith(" …") and rows[pymjq]["run"] == "—"
    assert rows[pymjq]["live"] == "wait"
    assert rows[pymjq]["live_from"] == published.timestamp() * 1000
    assert "due in" in queue.jobs()._repr_html_()  # q.jobs() says the same


NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="needs Node.js to run the front end's code")
def test_the_front_end_counts_times_as_the_kernel_writes_them():
    """tail.js ticks wait and run cells between updates with its own formatSeconds: it must
    write what text.format_seconds writes, or a cell changes style as it ticks."""
    from mjq_notebook.text import format_seconds

    source = (Path(tail_module.__file__).parent / "_static" / "tail.js").read_text()
    functions = source[source.index("function significant") : source.index("function liveText")]
    values = [0, 0.0004, 0.004, 0.0123, 0.85, 1, 2.5, 12.34, 59.4, 59.99, 64, 252, 599.4,
              601, 1559, 3599, 3601, 5400, 36000, 172700, 3 * 86400, -30]  # fmt: skip
    script = functions + f"console.log(JSON.stringify({values}.map(formatSeconds)));"
    out = subprocess.run([NODE, "-e", script], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [format_seconds(v) for v in values]
