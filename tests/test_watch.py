"""The shared Watcher: live snapshots from change streams or polling, throttled callbacks,
one thread per queue that stops with its last subscriber, and outages ridden out."""

from __future__ import annotations

import itertools
import logging
import threading
import time

import pytest
from pymongo.errors import OperationFailure, ServerSelectionTimeoutError

from mjq_notebook import JobQueue, embedded_server
from mjq_notebook.core.outage import failure_reason
from mjq_notebook.live import watch as watch_module
from mjq_notebook.live.watch import Watcher
from mjq_notebook.notebook.widgets import Tail
from mjq_notebook.server import client_for

from .support.servers import TEST_URI, force_polling, free_port
from .support.views import status_of
from .support.waiting import wait_for, watcher_threads


@pytest.fixture(params=["auto", "polling"])
def mode(request, monkeypatch, queue):
    """Run a test as the server allows (change streams here) and with polling forced: the
    watch() call fails as on a standalone mongod."""
    if request.param == "polling":
        force_polling(monkeypatch, queue)
    return request.param


def _server_mode(queue) -> str:
    """How a watcher should follow this server: by change stream where it has them."""
    try:
        queue.collection.watch().close()
    except OperationFailure:
        return "polling"
    return "change stream"


def test_new_jobs_and_status_changes_show_up(queue, mode, other):
    watcher = Watcher.of(queue)
    sub = watcher.subscribe(lambda s: None)
    try:
        wait_for(lambda: watcher.snapshot.state == "live", 10, "live")
        assert watcher.snapshot.mode == ("polling" if mode == "polling" else _server_mode(queue))
        job_id = other.pub({"n": 1})  # how soon: benchmarks/bench_targets.py
        wait_for(lambda: status_of(watcher, job_id) == "waiting", 5, "the insert")
        job = other.next()
        wait_for(lambda: status_of(watcher, job_id) == "working", 1, "working")
        other.done(job, {"ok": True})
        wait_for(lambda: status_of(watcher, job_id) == "done", 1, "done")
        wait_for(lambda: watcher.snapshot.counts.get("done") == 1, 2, "the counts")
        wait_for(lambda: watcher.snapshot.activity.total_finished == 1, 2, "the charts")
        activity = watcher.snapshot.activity
        assert sum(activity.created) == 1 and len(activity.run_s) == 1
        assert activity.run_s[0] >= 0 and activity.wait_s[0] >= 0
    finally:
        sub.close()
    assert watcher.snapshot.state == "stopped"


def test_the_window_is_the_newest_jobs(queue, mode):
    ids = queue.pub_many([{"n": n} for n in range(8)])
    watcher = Watcher.of(queue)
    sub = watcher.subscribe(lambda s: None, window=5)
    try:
        wait_for(lambda: watcher.snapshot.state == "live", 10, "live")
        assert [j.id for j in watcher.snapshot.jobs] == ids[::-1][:5]
        more = queue.pub_many([{"n": n} for n in range(8, 10)])
        wait_for(lambda: watcher.snapshot.jobs[0].id == more[-1], 1, "the new jobs")
        assert [j.id for j in watcher.snapshot.jobs] == (ids + more)[::-1][:5]
        # a wider subscriber widens the window for all
        wider = watcher.subscribe(lambda s: None, window=7)
        wait_for(lambda: len(watcher.snapshot.jobs) == 7, 2, "the wider window")
        wider.close()
    finally:
        sub.close()


def test_one_watcher_and_one_thread_per_queue(queue, db):
    same = JobQueue(db, lease=30)
    assert Watcher.of(queue) is Watcher.of(same)
    assert Watcher.of(queue) is not Watcher.of(JobQueue(db, "another"))
    before = threading.active_count()
    subs = [Watcher.of(q).subscribe(lambda s: None) for q in (queue, same, queue)]
    assert len(watcher_threads()) == 1
    subs[0].close()
    subs[0].close()  # idempotent
    assert len(watcher_threads()) == 1
    for sub in subs[1:]:
        sub.close()
    assert watcher_threads() == []
    assert threading.active_count() <= before


def test_callbacks_are_throttled_and_only_on_change(queue):
    calls = []
    sub = Watcher.of(queue).subscribe(lambda s: calls.append((time.monotonic(), s)), rate=4)
    try:
        wait_for(lambda: calls and calls[-1][1].state == "live", 10, "a first call")
        time.sleep(0.6)
        quiet = len(calls)
        time.sleep(1.0)
        assert len(calls) == quiet, "called back although nothing changed"
        start = time.monotonic()
        while time.monotonic() - start < 1.5:
            queue.pub({"burst": True})
            time.sleep(0.02)
        burst = [t for t, _ in calls if t >= start]
        assert 2 <= len(burst) <= 8, len(burst)  # ~4/s over 1.5 s
        gaps = [b - a for a, b in itertools.pairwise(burst)]
        assert min(gaps) >= 0.2
        versions = [s.version for _, s in calls]
        assert versions == sorted(set(versions))
    finally:
        sub.close()


def test_a_failing_callback_is_logged_and_the_others_still_run(queue, caplog):
    good = []

    def bad(snapshot):
        raise RuntimeError("boom")

    watcher = Watcher.of(queue)
    with caplog.at_level(logging.ERROR, logger="mjq_notebook"):
        subs = [watcher.subscribe(bad), watcher.subscribe(good.append)]
        try:
            job_id = queue.pub({"x": 1})
            wait_for(lambda: any(j.id == job_id for s in good for j in s.jobs), 2, "the job")
        finally:
            for sub in subs:
                sub.close()
    assert "boom" in caplog.text


def test_the_charts_count_jobs_finished_before_the_watcher_started(queue):
    for n in range(2):
        queue.pub({"n": n})
        queue.done(queue.next())
    queue.pub({"last": True}, max_attempts=1)
    queue.fail(queue.next(), ValueError("bad"))
    watcher = Watcher.of(queue)
    sub = watcher.subscribe(lambda s: None)
    try:
        wait_for(lambda: watcher.snapshot.activity.total_finished == 3, 10, "three finishes")
        activity = watcher.snapshot.activity
        assert sum(activity.created) == 3 and len(activity.wait_s) == len(activity.run_s) == 3
        assert all(w >= 0 for w in activity.wait_s) and all(r >= 0 for r in activity.run_s)
    finally:
        sub.close()


def test_poke_rereads_at_once(queue, monkeypatch):
    force_polling(monkeypatch, queue)
    # polling rounds 60 s apart: within the wait below, only the poke can show the change
    monkeypatch.setattr(watch_module, "POLL_S", 60.0)
    monkeypatch.setattr(watch_module, "POLL_EMPTY_S", 60.0)
    watcher = Watcher.of(queue)
    sub = watcher.subscribe(lambda s: None)
    try:
        wait_for(lambda: watcher.snapshot.state == "live", 10, "live")
        job_id = queue.pub({"a": 1})
        job = queue.next()
        queue.done(job)  # no insert after the first: only a poke or the next round shows it
        watcher.poke()
        wait_for(lambda: status_of(watcher, job_id) == "done", 5, "done")
    finally:
        sub.close()


def test_the_outage_reason_never_shows_a_password():
    exc = ServerSelectionTimeoutError(
        "mongodb://alice:s3cr3t@db.example:27017: [Errno 111] Connection refused "
        "(configured timeouts: socketTimeoutMS: 20000.0ms), Timeout: 1.0s, Topology..."
    )
    text = failure_reason(exc)  # what the watcher shows while reconnecting
    assert "s3cr3t" not in text and text.startswith("ServerSelectionTimeoutError: ")
    assert "Topology" not in text


@pytest.mark.skipif(bool(TEST_URI), reason="restarts the embedded server; can't restart yours")
@pytest.mark.parametrize("polling", [False, True])
def test_an_outage_shows_reconnecting_then_resumes(tmp_path, polling, monkeypatch):
    port, data = free_port(), tmp_path / "data"
    with embedded_server(data, port=port) as server:
        client = client_for(server.uri, timeout=1)
        q = JobQueue(client["outage"])
        if polling:
            monkeypatch.setattr(
                q.collection, "watch", lambda *a, **k: (_ for _ in ()).throw(OperationFailure("x"))
            )
        first = q.pub({"before": True})
        watcher = Watcher.of(q)
        states = []
        sub = watcher.subscribe(lambda s: states.append(s.state))
        tail = Tail(q)
        wait_for(lambda: status_of(watcher, first) == "waiting", 10, "the first job")
    try:
        wait_for(lambda: watcher.snapshot.state == "reconnecting", 20, "reconnecting")
        assert watcher.snapshot.message and "://" not in watcher.snapshot.message
        wait_for(lambda: tail.table.state.startswith("reconnecting…: "), 1, "the tail to say so")
        time.sleep(1)  # it keeps trying, quietly
        assert watcher_threads()
        with embedded_server(data, port=port):
            wait_for(lambda: watcher.snapshot.state == "live", 30, "live again")
            second = JobQueue(client_for(server.uri)["outage"]).pub({"after": True})
            wait_for(lambda: status_of(watcher, second) == "waiting", 2, "a job after the outage")
            assert "reconnecting" in states and states[-1] == "live"
            wait_for(lambda: tail.table.rows[0]["id"] == str(second), 1, "the tail to resume")
            assert tail.table.state == "live"
            tail.close()
            sub.close()
    finally:
        tail.close()
        sub.close()
        client.close()
    assert watcher_threads() == []


def test_a_snapshot_its_rate_held_back_goes_out_when_due(queue, other):
    """A view at 2 updates a second that has just had one gets a job published right after
    at its next due time (0.5 s later), not after the watcher's next change-stream wait."""
    got = []  # (monotonic time, ids in the snapshot)
    sub = Watcher.of(queue).subscribe(
        lambda s: got.append((time.monotonic(), {job.id for job in s.jobs})), window=5, rate=2
    )
    try:
        wait_for(lambda: Watcher.of(queue).snapshot.state == "live" and got, 10, "live")
        late = []
        for n in range(4):
            time.sleep(0.7)  # quiet: the next delivery is not held
            before = len(got)
            job_id = other.pub({"n": n})  # shown at once, then held: it comes in a
            wait_for(lambda b=before: len(got) > b, 5, "the job's first update")  # second one
            first = got[before][0]
            other.pub({"m": n})  # a change while the rate holds updates back
            wait_for(lambda b=before: len(got) > b + 1, 5, "the held update")
            late.append(got[before + 1][0] - first - 0.5)
            assert job_id in got[before][1]
        assert max(late) < 0.2, [round(x, 3) for x in late]
    finally:
        sub.close()
