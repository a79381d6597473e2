"""The rollups (core/metrics.py) against exact values: a generated workload written into
history as the queue writes it, and real jobs run by a Worker; q.metrics(), rebuild_metrics(),
prune_history keeping them, the oldest waiting job's age, the companion collection."""

from __future__ import annotations

import datetime as dt
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from mjq_notebook import JobQueue, QueueNameError, Worker
from mjq_notebook.core import hours, metrics
from mjq_notebook.core.catalog import queues
from mjq_notebook.core.sketch import RELATIVE_ERROR, ZERO_S, Sketch

from .support.waiting import wait_for
from .support.workload import Workload

UTC = dt.timezone.utc
COUNTS = ["created", "started", "done", "failed", "cancelled", "retried"]
VOLATILE = ("rolled_at", "fence", "oldest_wait_s")  # what a later pass may write differently


def _midnight(days_ago: int) -> dt.datetime:
    today = dt.datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - dt.timedelta(days=days_ago)


@pytest.fixture(scope="module")
def workload():
    """Three hours of jobs two days ago, from midnight UTC (so 1 h and 1 D periods align)."""
    return Workload(start=_midnight(2), minutes=180, jobs=1500)


def _load(queue, workload):
    queue.history_collection.insert_many([dict(doc) for doc in workload.history])
    queue.attempts_collection.insert_many([dict(doc) for doc in workload.attempts])


def _recount(frame: pd.DataFrame) -> dict[str, dict]:
    """Per-minute counts from a history frame (q.history()), each recounted by pandas."""
    out = {"created": frame["created"].dt.floor("min").value_counts().to_dict()}
    for status in ("done", "failed", "cancelled"):
        rows = frame[frame["status"] == status]
        out[status] = rows["done"].dt.floor("min").value_counts().to_dict()
    return out


def _stored(queue, since, until) -> dict[str, dict]:
    docs = metrics.read(queue, since, until)
    return {name: {pd.Timestamp(d["_id"]): d[name] for d in docs if d[name]} for name in COUNTS}


def _plain(docs):
    return [{k: v for k, v in d.items() if k not in VOLATILE} for d in docs]


def _exact(values, q):
    ordered = np.sort(np.asarray(values, dtype=float))
    return float(ordered[math.floor(q * (len(ordered) - 1))])


def _close(got, want):
    if want <= ZERO_S:
        return got == 0.0
    return abs(got - want) <= RELATIVE_ERROR * want * (1 + 1e-9)


def test_rollups_equal_a_recount_from_history(queue, workload):
    _load(queue, workload)
    assert metrics.roll(queue) > 0  # the first pass rolls from the queue's oldest job
    history = queue.history(limit=None)
    assert len(history) == workload.jobs
    stored = _stored(queue, workload.start, workload.end)
    for name, counts in _recount(history).items():
        assert stored[name] == {pd.Timestamp(m): n for m, n in counts.items()}, name
    as_stamps = {pd.Timestamp(m): n for m, n in workload.started.items()}
    assert stored["started"] == as_stamps
    assert stored["retried"] == {pd.Timestamp(m): n for m, n in workload.retried.items()}
    assert sum(stored["cancelled"].values()) > 0 and sum(stored["retried"].values()) > 0


def test_merged_percentiles_are_within_the_stated_error(queue, workload):
    _load(queue, workload)
    history = queue.history(limit=None)
    finished = history[history["status"].isin(["done", "failed"])]
    minute = finished["done"].dt.floor("min").value_counts().idxmax()  # the busiest minute
    hour = workload.start + dt.timedelta(hours=1)
    cases = [  # (every, the row's period start, the jobs finished in it)
        ("1min", minute, finished[finished["done"].dt.floor("min") == minute]),
        ("1h", pd.Timestamp(hour), finished[finished["done"].dt.floor("h") == hour]),
        ("1D", pd.Timestamp(workload.start), finished),  # the whole run
    ]
    for every, period, jobs in cases:
        frame = queue.metrics(since=workload.start, until=workload.end, every=every)
        row = frame.loc[period]
        assert row["done"] + row["failed"] == len(jobs) > 0, every
        for stage in ("wait", "run"):
            for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
                want = _exact(jobs[f"{stage}_s"], q)
                got = row[f"{stage}_{name}"]
                assert _close(got, want), (every, stage, name, got, want)
        assert row["error_rate"] == pytest.approx(row["failed"] / (row["done"] + row["failed"]))


def test_rebuild_writes_the_same_documents(queue, workload):
    _load(queue, workload)
    metrics.roll(queue)
    window = (workload.start - dt.timedelta(minutes=5), workload.end)
    rolled = _plain(metrics.read(queue, *window))
    assert queue.rebuild_metrics() > 0
    assert _plain(metrics.read(queue, *window)) == rolled
    metrics.collection(queue).delete_many({})  # a queue older than its rollups
    assert queue.rebuild_metrics() == len(rolled)
    assert _plain(metrics.read(queue, *window)) == rolled
    # from a time on: the minutes before it are left as they are
    half = workload.start + dt.timedelta(minutes=90)
    metrics.collection(queue).update_many({}, {"$set": {"done": -1}})
    queue.rebuild_metrics(since=half)
    again = _plain(metrics.read(queue, *window))
    assert [d for d in again if d["_id"] >= half] == [d for d in rolled if d["_id"] >= half]
    assert all(d["done"] == -1 for d in again if d["_id"] < half)


def test_prune_history_keeps_the_metrics(queue, workload):
    _load(queue, workload)
    recount = _recount(queue.history(limit=None))
    # and jobs finished just now, in the minutes every pass rolls again
    ids = queue.pub_many([{"n": i} for i in range(12)])
    for _ in range(10):
        queue.done(queue.next())
    queue.cancel(ids[-1])
    before = queue.metrics(since=workload.start, every="1h")
    assert queue.prune_history(0) == workload.jobs + 11  # rolled first, then deleted
    assert queue.history_collection.count_documents({}) == 0
    stored = _stored(queue, workload.start, workload.end)
    for name, counts in recount.items():
        assert stored[name] == {pd.Timestamp(m): n for m, n in counts.items()}, name
    after = queue.metrics(since=workload.start, every="1h")  # rolls the last minutes again
    columns = [c for c in before.columns if c != "oldest_wait_s"]
    pd.testing.assert_frame_equal(after[columns], before[columns])
    assert after["done"].sum() == sum(recount["done"].values()) + 10
    queue.rebuild_metrics()  # the pruned minutes are frozen: nothing to recount them from
    pd.testing.assert_frame_equal(
        queue.metrics(since=workload.start, every="1h")[columns], before[columns]
    )


def _handler(job):
    mode = job.data["mode"]
    if mode == "bad" or (mode == "flaky" and job.attempts == 1):
        raise RuntimeError(f"{mode} job")
    return "ok"


def test_real_jobs_with_several_workers(queue):
    jobs = (["ok"] * 30) + (["flaky"] * 5) + (["bad"] * 3)
    queue.pub_many([{"mode": mode} for mode in jobs])
    cancelled = queue.pub_many([{"mode": "ok"} for _ in range(4)], delay=3600)
    assert all(queue.cancel(job) for job in cancelled)
    workers = [Worker(queue, _handler, concurrency=2, name=f"w{i}") for i in range(2)]
    for worker in workers:
        worker.start(drain=True)
    for worker in workers:
        assert worker.join(60)
    metrics.roll(queue)
    frame = queue.metrics(since="1h")
    totals = frame[COUNTS].sum().to_dict()
    # 42 published; 30 + 5 done; 3 failed for good after 3 attempts; 5 + 3 * 2 retried
    assert totals == {"created": 42, "started": 30 + 5 * 2 + 3 * 3, "done": 35, "failed": 3,
                      "cancelled": 4, "retried": 11}  # fmt: skip
    history = queue.history(limit=None)
    stored = _stored(queue, dt.datetime.now(UTC) - dt.timedelta(hours=1), dt.datetime.now(UTC))
    for name, counts in _recount(history).items():
        assert stored[name] == {pd.Timestamp(m): n for m, n in counts.items()}, name
    finished = history[history["status"].isin(["done", "failed"])]
    # the whole run's sketches merged (a period of the frame could split it at its boundary)
    minutes = metrics.read(queue, frame.index[0], dt.datetime.now(UTC) + dt.timedelta(minutes=1))
    for stage in ("wait", "run"):
        whole = Sketch()
        for minute in minutes:
            whole.merge(Sketch.from_doc(minute[stage]))
        assert _close(whole.quantile(0.9), _exact(finished[f"{stage}_s"], 0.9)), stage
    assert frame["failed"].sum() / (frame["done"].sum() + frame["failed"].sum()) == 3 / 38


def test_the_frame_merges_minutes_into_periods(queue, workload):
    _load(queue, workload)
    until = workload.start + dt.timedelta(hours=3)
    minutes = queue.metrics(since=workload.start, until=until)
    assert len(minutes) == 180 and minutes.index.name == "period"
    assert str(minutes.index.tz) == "UTC"
    for every, rows in (("15min", 12), ("1h", 3), ("1D", 1)):
        frame = queue.metrics(since=workload.start, until=until, every=every, roll=False)
        assert len(frame) == rows, every
        assert (frame[COUNTS].sum() == minutes[COUNTS].sum()).all(), every
    quiet = queue.metrics(since=_midnight(1), until=_midnight(1) + dt.timedelta(minutes=30))
    assert len(quiet) == 30 and quiet["done"].sum() == 0 and quiet["wait_p50"].isna().all()
    fig = minutes.mjq.plot_metrics()
    assert len(fig.axes) == 4  # three panels and the error rate's twin axis


def test_the_oldest_waiting_age(queue):
    assert metrics.oldest_waiting_age(queue) is None
    queue.pub({"later": 1}, delay=3600)  # not due: not waiting late
    assert metrics.oldest_waiting_age(queue) is None
    queue.pub({"first": 1})
    wait_for(lambda: metrics.oldest_waiting_age(queue) >= 0.3, 10, "the job to wait 0.3 s")
    queue.pub({"urgent": 1}, priority=5)  # newer, of another priority: the oldest still counts
    age = metrics.oldest_waiting_age(queue)
    assert age >= 0.3
    metrics.roll(queue)
    frame = queue.metrics(since="5min")
    assert frame["oldest_wait_s"].max() >= 0.3
    queue.done(queue.next())
    queue.done(queue.next())
    assert metrics.oldest_waiting_age(queue) is None


@pytest.mark.parametrize(
    ("tier", "ttl"),
    [(metrics, metrics.METRICS_DAYS * 86_400), (hours, metrics.METRICS_DAYS * 86_400 + 3600)],
    ids=["minutes", "hours"],
)
def test_the_rollups_are_a_companion(db, queue, tier, ttl):
    """Each tier's collection is not a queue, no queue takes its name, clear_queue drops it
    and the next roll puts its TTL index back (hours go an hour after their last minute)."""
    queue.pub({"x": 1})
    queue.done(queue.next())
    metrics.roll(queue)
    name = tier.collection(queue).name
    assert tier.collection(queue).count_documents({}) > 0
    assert [row["queue"] for row in queues(db)] == [queue.name]  # mjq queues: not name
    with pytest.raises(QueueNameError):
        JobQueue(db, name)
    queue.clear_queue()
    assert name not in db.list_collection_names()
    assert metrics.roll(queue) == 0  # nothing to roll; the TTL index is back
    indexes = [i for i in tier.collection(queue).list_indexes() if "expireAfterSeconds" in i]
    assert indexes[0]["expireAfterSeconds"] == ttl


def test_a_stale_roller_cannot_overwrite_a_later_one(queue):
    queue.pub({"x": 1})
    queue.done(queue.next())
    stale = metrics._Lease.take(queue._meta, wait=0)
    assert metrics._Lease.take(queue._meta, wait=0) is None  # one roller at a time
    queue._meta.update_one({"_id": metrics.STATE_ID}, {"$set": {"until": _midnight(1)}})
    assert metrics.roll(queue, wait=0) > 0  # the lease ran out: another takes it
    before = _plain(metrics.read(queue, _midnight(0), dt.datetime.now(UTC) + dt.timedelta(1)))
    metrics.collection(queue).update_many({}, {"$set": {"done": 7}})
    # the stale roller wakes up believing it still holds the lease: the fence stops it
    mine = {"holder": stale.me, "token": stale.token, "until": _midnight(-1)}
    queue._meta.update_one({"_id": metrics.STATE_ID}, {"$set": mine})
    with pytest.raises(metrics._Fenced):
        metrics._pass(queue, stale, None)
    assert all(d["done"] == 7 for d in metrics.collection(queue).find())
    assert before and before[0]["done"] == 1


def test_importing_the_package_imports_neither_pandas_nor_ipywidgets():
    code = "import sys, mjq_notebook; print(sorted({'pandas', 'ipywidgets'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_worker_rolls_up_unless_told_not_to(db):
    off, on = JobQueue(db, "off"), JobQueue(db, "on")
    for q in (off, on):
        q.pub({"mode": "ok"})
        q.done(q.next())  # finished before the worker starts: its first pass counts it
    assert Worker(off, _handler, metrics=False).start(drain=True).join(30)
    assert Worker(on, _handler).start(drain=True).join(30)
    wait_for(lambda: metrics.collection(on).count_documents({"done": 1}) == 1, 30, "a roll")
    assert metrics.collection(off).count_documents({}) == 0
