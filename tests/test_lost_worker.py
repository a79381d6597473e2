"""A lost worker's job, as people look at it (issue 22): its row in the tail and the dashboard
says "working · worker lost" with the Workers panel closed, its detail offers Release now,
what the display promises about its lease is what happens, and a stopped or lost worker's
record says what it ran last with a rate that no longer moves. Real `mjq work` processes,
killed with SIGKILL, against the real server; no kernel."""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mjq_notebook import Empty, JobQueue
from mjq_notebook.core.job import utcnow
from mjq_notebook.core.parts.leases import RECLAIM_EVERY_S
from mjq_notebook.core.registry import Registration, State, worker_cells, workers_text
from mjq_notebook.live import lost as lost_module
from mjq_notebook.notebook.formatting import LOST_ROW
from mjq_notebook.notebook.widgets import Dashboard, Tail
from mjq_notebook.notebook.widgets.workers import JobRates, workers_panel_html

from .support.processes import read_log, start_worker
from .support.views import row
from .support.waiting import wait_for

SOON = 5.0  # "eventually", with time to spare on a slow server
BEAT = "0.3"  # the workers' heartbeat: lost 0.9 s after the kill


def _work(uri: str, db, handler: str, log: Path, *extra: str) -> subprocess.Popen:
    """`mjq work handlers:<handler>` on ``db``, beating every BEAT seconds."""
    return start_worker(uri, db, handler, log, "--heartbeat", BEAT, *extra)


def _close(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.kill()
    out, _ = process.communicate(timeout=30)
    return out


def tail_status(tail, job_id) -> str | None:
    found = row(tail, job_id)
    return None if found is None else found["status"]


def test_a_killed_workers_job_says_so_in_its_row_with_the_workers_panel_closed(
    queue, tail, server_uri, tmp_path
):
    job_id = queue.pub({"task": "long"})
    log = tmp_path / "ran.log"
    doomed = _work(server_uri, queue.db, "hang", log)
    try:
        wait_for(lambda: read_log(log), 30, "the worker to start the job")
        wait_for(lambda: tail_status(tail, job_id) == "working", SOON, "the job working")
        assert row(tail, job_id)["worker_lost"] == ""  # alive: a plain "working"
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
        took = wait_for(lambda: tail_status(tail, job_id) == LOST_ROW, 10, "the row to say lost")
    finally:
        _close(doomed)
    print(f"\nthe row said 'worker lost' {took:.2f} s after the kill (heartbeat {BEAT} s)")
    assert LOST_ROW == "working · worker lost"
    assert row(tail, job_id)["worker_lost"] == "1"
    # the Workers panel was never opened, so the whole registry was never read
    assert not tail.workers_button.value and tail.watcher.snapshot.workers is None

    tail.select(job_id)
    job = queue.get(job_id)
    lease = job["lease_until"].strftime("%H:%M:%S")
    note = (
        f"worker lost · claimable again from {lease} UTC, when its lease ends, by the next "
        "free worker; Release now hands it back at once"
    )
    wait_for(lambda: note in tail.actions.note.value, SOON, "the detail's note")
    release = tail.actions.release_button
    assert release.layout.display is None and release.description == "Release now"

    board = Dashboard(queue)  # the dashboard's rows say so too
    try:
        wait_for(lambda: tail_status(board.tail, job_id) == LOST_ROW, 10, "the dashboard's row")
    finally:
        board.close()

    release.click()
    assert "is waiting again" in tail.message.value
    assert queue.get(job_id)["status"] == "waiting"
    # the row and the detail change in one update (a snapshot taken before the release may
    # show the job working a moment longer): both, as one state
    wait_for(
        lambda: tail_status(tail, job_id) == "waiting" and release.layout.display == "none",
        SOON,
        "the row waiting and Release now gone",
    )
    assert row(tail, job_id)["worker_lost"] == ""


def test_what_the_display_says_of_a_lost_workers_lease_is_what_happens(db):
    """Before its lease ends the job can't be claimed; after, nothing moves it by itself: it
    stays working until a free worker's claim hands it back and takes it."""
    queue = JobQueue(db, lease=6, backoff=0.05)
    job_id = queue.pub({"held": "by a worker that dies"})
    job = queue.next()
    # the worker that claimed it registers, then falls silent: lost after 3 x 0.1 s
    record = Registration(queue, job["worker"], name="gone", queues=[queue.name],
                          concurrency=1, interval=0.1)  # fmt: skip
    record.write(State.RUNNING, [{"id": job.id, "since": job["ts"]["started"], "attempt": 1}], {})
    lease = job["lease_until"]
    at = lease.strftime("%H:%M:%S")
    tail = Tail(queue, limit=20)
    try:
        wait_for(lambda: tail_status(tail, job_id) == LOST_ROW, SOON, "the row to say lost")
        tail.select(job_id)
        promise = f"claimable again from {at} UTC, when its lease ends, by the next free worker"
        wait_for(lambda: promise in tail.actions.note.value, SOON, "the note")
        free = JobQueue(db, lease=6)  # another consumer, free to claim
        assert utcnow() < lease - dt.timedelta(seconds=0.5), "too slow to look before the lease"
        with pytest.raises(Empty):  # not claimable before the time named
            free.next()
        # the lease ends; the reclaimer would be due; no one claims: it is still working,
        # and what the display says now is that it waits for a free worker
        gone = lease + dt.timedelta(seconds=RECLAIM_EVERY_S + 0.5)
        time.sleep(max(0.0, (gone - utcnow()).total_seconds()))
        assert queue.get(job_id)["status"] == "working"
        ended = f"its lease ended at {at} UTC: waiting for a free worker to take it"
        shown = queue.get(job_id)._repr_html_()
        assert ended in shown and "claimable again" not in shown
        wait_for(lambda: ended in tail.actions.note.value, SOON, "the tail's note to follow")
        assert queue.get(job_id)["status"] == "working"  # it still waits for a claim
        again = free.next(timeout=3)  # the next free worker takes it
        assert again.id == job_id and again.attempts == 2 and again["worker"] == free.worker_id
        wait_for(lambda: tail_status(tail, job_id) == "working", SOON, "no longer lost")
        wait_for(lambda: tail.actions.note.value == "", SOON, "the note gone")
    finally:
        tail.close()


def test_the_registry_is_read_by_id_only_while_working_jobs_are_in_view(queue, monkeypatch):
    reads: list[set] = []
    real = lost_module.workers_by_id

    def counted(q, ids):
        reads.append(set(ids))
        return real(q, ids)

    monkeypatch.setattr(lost_module, "workers_by_id", counted)
    queue.pub({"n": 1})
    tail = Tail(queue, limit=20)
    try:
        wait_for(lambda: tail.table.rows, SOON, "the waiting job shown")
        time.sleep(2.5)
        assert reads == []  # nothing working: no read
        job = queue.next()
        wait_for(lambda: tail_status(tail, job.id) == "working", SOON, "the job working")
        time.sleep(4.2)  # every WORKERS_S (2 s): two or three reads, each of its one worker
        assert 1 <= len(reads) <= 3 and all(ids == {job["worker"]} for ids in reads)
        tail.workers_button.value = True  # the panel reads every record: no read by id then
        wait_for(lambda: tail.watcher.snapshot.workers is not None, SOON, "the panel's read")
        time.sleep(0.5)
        before = len(reads)
        time.sleep(4.2)
        assert len(reads) == before
        tail.workers_button.value = False
        queue.done(job)
        wait_for(lambda: tail_status(tail, job.id) == "done", SOON, "the job done")
        time.sleep(0.5)
        before = len(reads)
        time.sleep(2.5)
        assert len(reads) == before  # nothing working again: no read
    finally:
        tail.close()


def test_a_killed_or_stopped_worker_says_what_it_ran_last_at_a_rate_that_stands(
    db, server_uri, tmp_path
):
    queue = JobQueue(db)
    queue.pub_many([{"n": n} for n in range(3)])
    log = tmp_path / "ran.log"
    killed = _work(server_uri, db, "record", log)
    try:
        wait_for(lambda: len(read_log(log)) == 3, 30, "three jobs run")
        [mine] = queue.workers()
        wait_for(lambda: queue.workers()[0]["done"] == 3, SOON, "its record to count them")
        wait_for(lambda: _life(queue.workers()[0]) >= 2, SOON, "two seconds of its life")
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        wait_for(lambda: queue.workers()[0]["state"] == "lost", 10, "lost")
    finally:
        _close(killed)
    last = read_log(log)[-1][0]
    _ran_last_at_a_standing_rate(queue, mine["_id"], last, done=3)

    queue.pub_many([{"n": n} for n in range(2)])
    stopped = _work(server_uri, db, "record", log)
    try:
        wait_for(lambda: len(read_log(log)) == 5, 30, "two more jobs run")
        wait_for(lambda: _life(queue.workers()[0]) >= 2, SOON, "two seconds of its life")
        stopped.send_signal(signal.SIGTERM)
        out = stopped.communicate(timeout=30)[0]
        assert stopped.returncode == 0, out
    finally:
        _close(stopped)
    [second] = [w for w in queue.workers() if w["_id"] != mine["_id"]]
    assert second["state"] == "stopped" and second["running"] == []
    _ran_last_at_a_standing_rate(queue, second["_id"], read_log(log)[-1][0], done=2)


def _ran_last_at_a_standing_rate(queue, worker_id, last: str, done: int) -> None:
    """The worker's record says it ran ``last`` last (in ``q.workers()``, ``mjq workers``'s
    text and the panel), and its jobs a minute is its life's up to its last heartbeat, the
    same on a later read."""
    record = queue.workers().by_id()[worker_id]
    assert str(record["last"]["id"]) == last
    now = utcnow()
    cells = worker_cells(record, now)
    assert cells["job"] == f"last ran {last}"
    assert f"last ran {last}" in workers_text([record], now)
    rates = JobRates()
    rates.add([record])
    life = _life(record)
    assert rates.per_minute(record) == pytest.approx(done * 60 / life)
    time.sleep(1.0)
    later = queue.workers().by_id()[worker_id]
    rates.add([later])
    assert rates.per_minute(later) == pytest.approx(done * 60 / life)  # it stopped counting
    html = workers_panel_html([later], utcnow(), rates)
    assert f"last ran <code>{last}</code>" in html  # only the id in code font
    assert f">{done * 60 / life:.1f}</td>" in html


def _life(record) -> float:
    """Seconds from a worker's start to its last heartbeat."""
    return (record["heartbeat"] - record["started"]).total_seconds()


def test_a_stop_a_moment_after_a_heartbeat_is_no_rate():
    """A stop writes at once, off the heartbeat clock: 58 jobs between a heartbeat and that
    write 2.7 s later once read as 1,289 a minute (1,265 once stopped), for ever. Now: a
    window shorter than a heartbeat interval is no rate, and a stopped worker's is its
    life's, up to its last heartbeat."""
    start = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    at = [start + dt.timedelta(seconds=s) for s in (600, 602.7, 602.75)]
    beat = {"_id": "w", "state": State.RUNNING.value, "interval": 5.0, "started": start,
            "heartbeat": at[0], "done": 0, "failed": 0}  # fmt: skip
    stopping = {**beat, "state": State.STOPPING.value, "heartbeat": at[1], "done": 58}
    stopped = {**stopping, "state": State.STOPPED.value, "heartbeat": at[2]}
    rates = JobRates()
    for record in (beat, stopping):
        rates.add([record])
    assert rates.per_minute(stopping) == pytest.approx(58 * 60 / 602.7)
    rates.add([stopped])
    assert rates.per_minute(stopped) == pytest.approx(58 * 60 / 602.75)
    lost = {**stopping, "state": State.LOST.value}  # a lost one: the same, to its last beat
    assert rates.per_minute(lost) == pytest.approx(58 * 60 / 602.7)
