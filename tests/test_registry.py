"""The worker registry: records written by workers (threads and real `mjq work` processes),
read with their state as of now (lost when silent), shown as text, HTML and a frame."""

from __future__ import annotations

import datetime as dt
import signal
import socket
import threading
import time

import pytest

import mjq_notebook
from mjq_notebook import JobQueue, Worker
from mjq_notebook.core.registry import (
    KEEP_S,
    LOST_AFTER,
    as_read,
    read_workers,
    workers_collection,
)

from .support.processes import read_log, start_worker
from .support.waiting import wait_for


def _record(queue, worker_id):
    return queue.workers().by_id().get(worker_id)


def _close(*processes):
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


# -- a worker in this process ---------------------------------------------------------------


def test_a_worker_registers_says_what_it_runs_and_records_its_stop(queue):
    job_id = queue.pub({"n": 1})
    started, proceed = threading.Event(), threading.Event()

    def handler(job):
        started.set()
        proceed.wait(10)
        return "ok"

    worker = Worker(queue, handler, concurrency=2, heartbeat=0.2, name="reports").start()
    try:
        assert started.wait(10)
        job = queue.get(job_id)
        assert job["worker"] == worker.id  # claims carry the worker's own id...
        assert worker.id != queue.worker_id  # ...not the queue object's
        assert worker.queue is queue
        wait_for(lambda: _record(queue, worker.id)["running"], 5, "the running job listed")
        row = _record(queue, worker.id)
        assert row["name"] == "reports" and row["state"] == "running"
        assert (row["host"], row["concurrency"]) == (socket.gethostname(), 2)
        assert row["version"] == mjq_notebook.__version__ and row["interval"] == 0.2
        assert row["queues"] == [queue.name]
        [running] = row["running"]
        assert running["id"] == job_id and running["attempt"] == 1
        assert abs((running["since"] - job["ts"]["started"]).total_seconds()) < 0.01
        first = row["heartbeat"]
        wait_for(lambda: _record(queue, worker.id)["heartbeat"] > first, 2, "a later heartbeat")
        worker.stop()
        wait_for(lambda: _record(queue, worker.id)["state"] == "stopping", 2, "stopping")
    finally:
        proceed.set()
    assert worker.join(timeout=10)
    row = _record(queue, worker.id)
    assert row["state"] == "stopped" and row["running"] == []
    assert (row["done"], row["failed"], row["retried"]) == (1, 0, 0)
    assert row["busy_s"] > 0 and 0 < row["busy"] <= 1


def test_records_expire_through_a_ttl_index_a_day_after_their_last_write(queue):
    worker = Worker(queue, lambda job: None, heartbeat=0.2).start(drain=True)
    assert worker.join(timeout=30)
    collection = workers_collection(queue)
    assert collection.name == f"{queue.name}.workers"
    assert not collection.options().get("capped")
    [ttl] = [i for i in collection.list_indexes() if "expireAfterSeconds" in i]
    assert dict(ttl["key"]) == {"expires_at": 1} and ttl["expireAfterSeconds"] == 0
    doc = collection.find_one({"_id": worker.id})
    assert doc["expires_at"] - doc["heartbeat"] == dt.timedelta(seconds=KEEP_S)


def test_a_silent_worker_reads_as_lost_after_three_heartbeats():
    now = dt.datetime(2026, 1, 1, 12, tzinfo=dt.timezone.utc)
    doc = {
        "_id": "h:1:abc",
        "state": "running",
        "interval": 2.0,
        "concurrency": 2,
        "started": now - dt.timedelta(seconds=100),
        "heartbeat": now - dt.timedelta(seconds=LOST_AFTER * 2.0 - 0.1),
        "busy_s": 50.0,
    }
    assert as_read(doc, now)["state"] == "running"
    assert as_read(doc, now)["busy"] == pytest.approx(50 / (2 * (100 - 5.9)))
    late = {**doc, "heartbeat": now - dt.timedelta(seconds=LOST_AFTER * 2.0 + 0.1)}
    assert as_read(late, now)["state"] == "lost"
    assert as_read({**late, "state": "stopping"}, now)["state"] == "lost"
    assert as_read({**late, "state": "stopped"}, now)["state"] == "stopped"  # it said goodbye
    assert doc["state"] == "running"  # the stored record is left as it was


def test_displays_escape_what_the_records_say(queue):
    workers_collection(queue).insert_many(
        [
            {
                "_id": "evil",
                "name": "<script>alert(1)</script>",
                "host": '<img src=x onerror="alert(2)">',
                "pid": 1,
                "state": '<b class="x">running</b>',
                "queues": ["<i>q</i>"],
                "started": dt.datetime.now(dt.timezone.utc),
                "heartbeat": dt.datetime.now(dt.timezone.utc),
                "running": [],
            },
            {"_id": "odd\x1b[31m\nline", "state": "running"},  # a bare record reads too
        ]
    )
    workers = read_workers(queue)
    html = workers._repr_html_()
    for raw in ("<script>", "<img", "<b ", "<i>"):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x" in html
    text = repr(workers)
    assert "\x1b" not in text and len(text.splitlines()) == 3  # header + one line per worker


def test_workers_as_text_html_and_frame(db):
    urgent, bulk = JobQueue(db, "urgent"), JobQueue(db, "bulk")
    assert repr(read_workers(urgent)) == "no workers"
    assert "no workers" in read_workers(urgent)._repr_html_()
    job_id = urgent.pub({"n": 1})
    worker = Worker([urgent, bulk], lambda job: None, heartbeat=0.2, name="both")
    worker.start(drain=True)
    assert worker.join(timeout=30)
    for queue in (urgent, bulk):  # registered in each queue's registry
        [row] = read_workers(queue)
        assert row["_id"] == worker.id and row["queues"] == ["urgent", "bulk"]
    assert read_workers(urgent)[0]["done"] == 1 and read_workers(bulk)[0]["done"] == 0
    text = repr(read_workers(urgent))
    assert "both" in text and "stopped" in text and f"last ran {job_id}" in text
    assert "last ran" not in repr(read_workers(bulk))  # it ran nothing from bulk
    html = read_workers(urgent)._repr_html_()
    assert "mjq-badge" in html and "stopped" in html
    frame = read_workers(urgent).to_frame()
    assert list(frame["_id"]) == [worker.id] and frame.loc[0, "done"] == 1
    assert str(frame["heartbeat"].dt.tz) == "UTC"
    assert frame.loc[0, "jobs_running"] == 0 and frame.loc[0, "last_ran"] == job_id
    assert read_workers(bulk).to_frame().loc[0, "last_ran"] is None


# -- `mjq work` processes --------------------------------------------------------------------


def test_two_worker_processes_appear_within_5_s(db, server_uri, tmp_path):
    queue = JobQueue(db)
    log = tmp_path / "ran.log"
    began = time.monotonic()
    processes = [
        start_worker(server_uri, db, "record", log, "--heartbeat", "0.5", "--concurrency", "2")
        for _ in range(2)
    ]
    try:
        wait_for(lambda: len(queue.workers()) == 2, 30, "two workers registered")
        took = time.monotonic() - began
        rows = queue.workers()
        assert {row["pid"] for row in rows} == {p.pid for p in processes}
        assert all(row["state"] == "running" and row["concurrency"] == 2 for row in rows)
        assert all(row["interval"] == 0.5 for row in rows)
    finally:
        _close(*processes)
    print(f"\nregistered {took:.2f} s after the processes started")
    assert took < 5, f"registered {took:.1f} s after the processes started"


def test_a_killed_worker_reads_as_lost_with_the_job_it_ran(db, server_uri, tmp_path):
    queue = JobQueue(db)
    job_id = queue.pub({"task": "long"})
    log = tmp_path / "ran.log"
    doomed = start_worker(server_uri, db, "hang", log, "--heartbeat", "0.5")
    try:
        wait_for(lambda: read_log(log), 30, "the worker to start the job")
        [row] = queue.workers()
        wait_for(lambda: _record(queue, row["_id"])["running"], 5, "the job in its record")
        assert queue.get(job_id)["worker"] == row["_id"]
        assert row["pid"] == doomed.pid
        alive = queue.get(job_id)._repr_html_()  # the job's display says its worker is alive
        assert "(running · last heartbeat" in alive and "worker lost" not in alive
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
        killed = time.monotonic()
        took = wait_for(lambda: _record(queue, row["_id"])["state"] == "lost", 10, "lost")
    finally:
        _close(doomed)
    assert took < 4 * 0.5 + 1, f"lost {took:.1f} s after the kill, heartbeats every 0.5 s"
    lost = _record(queue, row["_id"])
    assert [job["id"] for job in lost["running"]] == [job_id]
    assert queue.workers().lost() == [row["_id"]]
    job = queue.get(job_id)
    assert job["status"] == "working"  # until its lease ends, or reclaim()
    shown = job._repr_html_()  # and its display says why, and how to hand it back sooner
    assert 'mjq-s-lost">lost</span>' in shown
    lease = job["lease_until"].strftime("%H:%M:%S")
    assert (
        f"worker lost · claimable again from {lease} UTC, when its lease ends, "
        "by the next free worker"
    ) in shown
    assert "q.reclaim(job) hands it back now" in shown
    print(f"\nlost {time.monotonic() - killed:.2f} s after the kill")


def test_a_clean_stop_reads_as_stopping_then_stopped(db, server_uri, tmp_path):
    queue = JobQueue(db)
    queue.pub_many([{"n": n} for n in range(3)])
    log = tmp_path / "ran.log"
    worker = start_worker(server_uri, db, "record", log, "--heartbeat", "0.5", sleep="1.5")
    try:
        wait_for(lambda: queue.counts()["working"] == 1, 30, "a claim")
        [row] = queue.workers()
        worker.send_signal(signal.SIGTERM)
        wait_for(lambda: _record(queue, row["_id"])["state"] == "stopping", 1.4, "stopping")
        out, _ = worker.communicate(timeout=30)
        assert worker.returncode == 0, out
    finally:
        _close(worker)
    row = _record(queue, row["_id"])
    assert row["state"] == "stopped" and row["running"] == [] and row["done"] == 1
    time.sleep(4 * 0.5)  # long past three heartbeats: a stopped worker is never lost
    assert _record(queue, row["_id"])["state"] == "stopped"


def test_queue_workers_reads_the_registry(queue):
    worker = Worker(queue, lambda job: None, heartbeat=0.2).start(drain=True)
    assert worker.join(timeout=30)
    assert queue.workers() == read_workers(queue) and queue.workers()[0]["_id"] == worker.id
    assert type(queue.workers()).__name__ == "WorkerList"
