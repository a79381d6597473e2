"""A long pass of the rollups (the first, a rebuild) in windows (``minutes.windows``): the same
minute documents as one pass, counted from a generated history whose jobs and attempts cross
the windows' edges; one window's ids held at a time; a stopped pass resumes where it stopped;
finishes written to history long after their ``ts.done`` rolled again by the next pass."""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from dataclasses import dataclass, field

import pytest
from bson import ObjectId

from mjq_notebook.core import metrics, minutes
from mjq_notebook.core.job import IN_HISTORY, utcnow
from mjq_notebook.core.minutes import floor
from mjq_notebook.core.sketch import Sketch

from .support.workload import bson_ms, object_id

WIDTH = dt.timedelta(minutes=2)  # the windows here: a 25-minute workload spans a dozen
VOLATILE = ("rolled_at", "fence", "oldest_wait_s")
COUNTS = ("created", "started", "done", "failed", "cancelled", "retried")


@dataclass
class Generated:
    """``jobs`` jobs published over 25 minutes ending ``end`` as the queue stores them: history
    rows, attempt records, and the ring's jobs (waiting for a retry, working, finished but
    not yet swept, one of another program whose clock is 10 minutes ahead), waits and runs
    of minutes, so jobs and attempts cross the windows' edges; ``truth`` per minute."""

    end: dt.datetime
    jobs: int
    seed: int = 26
    history: list[dict] = field(default_factory=list)
    attempts: list[dict] = field(default_factory=list)
    ring: list[dict] = field(default_factory=list)
    crossing: int = 0  # jobs finished more than two windows after they were created

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        start = self.end - dt.timedelta(minutes=65)
        for _ in range(self.jobs):
            self._job(rng, bson_ms(start + dt.timedelta(seconds=rng.uniform(0, 25 * 60))))
        stray = start + dt.timedelta(minutes=3)  # pymjq, local time ahead: no record
        ts = {"created": stray + dt.timedelta(minutes=10), "started": None, "done": None}
        self.ring.append({"_id": object_id(stray), "status": "waiting", "ts": ts, "attempts": 0})

    def _job(self, rng: random.Random, created: dt.datetime) -> None:
        job_id, kind = object_id(created), rng.random()
        tries = 1 if kind < 0.6 else 2 if kind < 0.8 else 3
        ts = {"created": created, "started": None, "done": None}
        doc = {"_id": job_id, "status": "done", "ts": ts, "attempts": 0, "priority": 0}
        if kind > 0.93:  # cancelled while waiting
            ts["done"] = bson_ms(created + dt.timedelta(seconds=rng.uniform(1, 300)))
            doc["status"] = "cancelled"
            self.history.append(doc)
            return
        pymjq = kind < 0.05  # another program's: no attempt records, no attempts counted
        clock = created
        for attempt in range(1, tries + 1):
            began = bson_ms(clock + dt.timedelta(seconds=rng.uniform(0, 360)))
            ended = bson_ms(began + dt.timedelta(seconds=rng.uniform(0.1, 240)))
            ts.update(started=began, done=ended)
            doc["attempts"] = 0 if pymjq else attempt
            if attempt == tries and kind > 0.88:  # still in the ring
                ts["done"] = None
                if kind > 0.9:  # working on it since began: no record yet
                    doc["status"] = "working"
                else:  # waiting after this failure for its retry
                    doc["status"] = "waiting"
                    self._record(job_id, attempt, began, ended, "failed")
                self.ring.append(doc)
                return
            outcome = "done" if kind < 0.8 else "failed"
            if attempt < tries:
                outcome = "lost" if rng.random() < 0.3 else "failed"
            if not pymjq:
                self._record(job_id, attempt, began, ended, outcome)
            clock = ended + dt.timedelta(seconds=rng.uniform(0, 180))  # the back-off
        doc["status"] = "done" if kind < 0.8 else "failed"
        self.history.append(doc)
        self.crossing += ts["done"] - created > 2 * WIDTH
        if rng.random() < 0.1:  # finished, in history, not yet swept from the ring
            self.ring.append({**doc, IN_HISTORY: True})

    def _record(self, job_id, attempt, began, ended, outcome) -> None:
        self.attempts.append({
            "_id": {"job": job_id, "attempt": attempt}, "kind": "attempt", "job": job_id,
            "attempt": attempt, "started": began, "ended": ended, "outcome": outcome,
        })  # fmt: skip

    def load(self, queue) -> None:
        queue.history_collection.insert_many([dict(d) for d in self.history])
        queue.attempts_collection.insert_many([dict(d) for d in self.attempts])
        queue.collection.insert_many([dict(d) for d in self.ring])

    def truth(self) -> dict[dt.datetime, dict]:
        """Each minute's counts and sketches, as minutes.py defines them, recounted here."""
        created, started = defaultdict(set), defaultdict(set)
        out: dict[dt.datetime, dict] = defaultdict(lambda: dict.fromkeys(COUNTS, 0))
        final = {(d["_id"], d["attempts"]) for d in self.history if d["status"] == "failed"}
        waits, runs = defaultdict(Sketch), defaultdict(Sketch)
        for doc in self.history + self.ring:
            ts = doc["ts"]
            created[floor(ts["created"])].add(doc["_id"])
            if ts["started"] is not None:
                started[floor(ts["started"])].add((doc["_id"], ts["started"]))
        for doc in self.history:
            ts, minute = doc["ts"], floor(doc["ts"]["done"])
            out[minute][doc["status"]] += 1
            if doc["status"] != "cancelled":
                waits[minute].add((ts["started"] - ts["created"]).total_seconds())
                runs[minute].add((ts["done"] - ts["started"]).total_seconds())
        for rec in self.attempts:
            started[floor(rec["started"])].add((rec["job"], rec["started"]))
            if rec["outcome"] != "done" and (rec["job"], rec["attempt"]) not in final:
                out[floor(rec["ended"])]["retried"] += 1
        for minute, ids in created.items():
            out[minute]["created"] = len(ids)
        for minute, pairs in started.items():
            out[minute]["started"] = len(pairs)
        for minute in out:
            out[minute].update(wait=waits[minute].to_doc(), run=runs[minute].to_doc())
        return {minute: _rounded(counts) for minute, counts in out.items()}


def _stored(queue) -> list[dict]:
    return [
        {k: v for k, v in d.items() if k not in VOLATILE}
        for d in metrics.collection(queue).find().sort("_id", 1)
    ]


def _as_truth(docs) -> dict[dt.datetime, dict]:
    """The minutes with something in them, their sketches' sums rounded (a sum's last bits
    depend on the order of its terms, here the server's)."""
    keep = (*COUNTS, "wait", "run")
    return {d["_id"]: _rounded({k: d[k] for k in keep}) for d in docs if any(d[k] for k in COUNTS)}


def _rounded(minute: dict) -> dict:
    for sketch in ("wait", "run"):
        minute[sketch] = {**minute[sketch], "s": round(minute[sketch]["s"], 6)}
    return minute


def _forget(queue) -> None:
    """No rollups and no state: the next pass is a queue's first."""
    metrics.collection(queue).delete_many({})
    queue._meta.delete_one({"_id": metrics.STATE_ID})


@pytest.fixture
def generated(queue):
    work = Generated(end=floor(utcnow()), jobs=400)
    work.load(queue)
    return work


@pytest.fixture
def windows_seen(monkeypatch):
    """Two-minute windows, and each ``count`` call's window and the ids it held (its
    minutes' created and started: the sizes of its id sets)."""
    monkeypatch.setattr(minutes, "WINDOW", WIDTH)
    seen: list[tuple[dt.datetime, dt.datetime | None, int, int]] = []
    count = minutes.count

    def recording(*args, **kwargs):
        found = count(*args, **kwargs)
        held = sum(m.created + m.started for m in found.values())
        seen.append((args[3], args[4] if len(args) > 4 else None, held, len(found)))
        return found

    monkeypatch.setattr(minutes, "count", recording)
    return seen


def test_a_pass_in_windows_writes_what_one_pass_writes(queue, generated, windows_seen, monkeypatch):
    assert generated.crossing > 50  # created and finished windows apart: the edges matter
    assert metrics.roll(queue) > 0
    chunked = _stored(queue)
    # ~30 windows of 2 minutes, less the empty ones skipped
    assert len(windows_seen) > 20 and all(hi for _, hi, _, _ in windows_seen[:-1])
    assert _as_truth(chunked) == generated.truth()  # counts and sketches, minute by minute
    _forget(queue)
    monkeypatch.setattr(minutes, "WINDOW", dt.timedelta(days=1))
    windows_seen.clear()
    assert metrics.roll(queue) > 0
    assert len(windows_seen) == 1  # one pass, as before windows
    assert _stored(queue) == chunked  # document for document
    # a rebuild in windows writes them again
    monkeypatch.setattr(minutes, "WINDOW", WIDTH)
    queue.rebuild_metrics()
    assert _stored(queue) == chunked


def test_each_window_holds_its_own_ids_only(queue, generated, windows_seen):
    metrics.roll(queue)
    truth = generated.truth()
    ids = sum(m["created"] + m["started"] for m in truth.values())
    held = [h for _, _, h, _ in windows_seen]
    assert sum(held) == ids  # every id in one window, none in two
    assert max(held) <= ids / 6, held  # one pass held them all at once
    for lo, hi, n, _ in windows_seen:  # and those of its own minutes
        mine = [m for m in truth if m >= lo and (hi is None or m < hi)]
        assert n == sum(truth[m]["created"] + truth[m]["started"] for m in mine)


def test_a_stopped_first_pass_resumes_where_it_stopped(queue, generated, windows_seen, monkeypatch):
    count, calls = minutes.count, []

    def failing(*args, **kwargs):
        calls.append(args[3])
        if len(calls) == 8:
            raise ConnectionError("the server went away")
        return count(*args, **kwargs)

    monkeypatch.setattr(minutes, "count", failing)
    with pytest.raises(ConnectionError):
        metrics.roll(queue)
    state = queue._meta.find_one({"_id": metrics.STATE_ID})
    assert state["rolled_to"] == calls[-1]  # the seven windows before it are written
    assert state["holder"] is None  # the lease given back
    written = _stored(queue)
    assert written and all(d["_id"] < calls[-1] for d in written)
    monkeypatch.setattr(minutes, "count", count)
    windows_seen.clear()
    metrics.roll(queue)
    assert windows_seen[0][0] == calls[-1]  # resumed there, not from the oldest job
    assert _as_truth(_stored(queue)) == generated.truth()


def test_a_pass_skips_the_empty_windows_between_years(queue, windows_seen, monkeypatch):
    """A pymjq job finished in 2016 and jobs of today: the first pass reads the windows
    holding them, not the ~2.6 million windows of 2 minutes between (the minute documents
    are those of one pass)."""
    old = dt.datetime(2016, 1, 6, 12, 0)  # pymjq's naive local time
    queue.history_collection.insert_one(
        {"_id": ObjectId.from_datetime(old), "status": "done", "data": {"pymjq": 1},
         "ts": {"created": old, "started": old, "done": old + dt.timedelta(seconds=3)}}
    )  # fmt: skip
    queue.pub({"n": "today"})
    queue.done(queue.next(timeout=5))
    recording = minutes.count

    def bounded(*args, **kwargs):  # fails at once, where reading every window would hang
        assert len(windows_seen) < 10, [lo for lo, *_ in windows_seen]
        return recording(*args, **kwargs)

    monkeypatch.setattr(minutes, "count", bounded)
    assert metrics.roll(queue) > 0
    assert len(windows_seen) <= 4, [lo for lo, *_ in windows_seen]
    monkeypatch.setattr(minutes, "count", recording)
    chunked = _stored(queue)
    assert {d["_id"].year for d in chunked} == {2016, utcnow().year}
    assert sum(d["done"] for d in chunked) == 2
    _forget(queue)
    monkeypatch.setattr(minutes, "WINDOW", dt.timedelta(days=5000))  # one window: no skip
    windows_seen.clear()
    assert metrics.roll(queue) > 0
    assert len(windows_seen) == 1
    assert _stored(queue) == chunked


def _late_pymjq_finish(queue, minutes_ago: int) -> dict:
    """A job another program finished ``minutes_ago`` minutes ago, left in the ring (no
    history row yet), and a newer job after it (the sweep keeps the ring's newest)."""
    done = bson_ms(utcnow() - dt.timedelta(minutes=minutes_ago))
    ts = {
        "created": done - dt.timedelta(minutes=2),
        "started": done - dt.timedelta(minutes=1),
        "done": done,
    }
    doc = {"_id": object_id(ts["created"]), "status": "done", "ts": ts, "attempts": 0}
    queue.collection.insert_one(doc)
    queue.pub({"newer": 1})
    return doc


def test_a_finish_swept_into_history_late_is_rolled_again(queue):
    doc = _late_pymjq_finish(queue, 30)
    metrics.roll(queue)
    minute = floor(doc["ts"]["done"])
    assert metrics.collection(queue).find_one({"_id": minute}) is None  # not in history yet
    queue._sweeper.sweep()
    assert queue.history_collection.find_one({"_id": doc["_id"]}) is not None
    assert queue._meta.find_one({"_id": metrics.STATE_ID})["late_from"] == minute
    metrics.roll(queue)  # the trailing 10 minutes don't reach it: the note does
    assert metrics.collection(queue).find_one({"_id": minute})["done"] == 1
    assert "late_from" not in queue._meta.find_one({"_id": metrics.STATE_ID})
    rolled = _stored(queue)
    queue.rebuild_metrics()
    assert _stored(queue) == rolled  # what a rebuild counts


def test_a_finish_swept_in_time_is_not_noted(queue):
    doc = _late_pymjq_finish(queue, 2)
    metrics.roll(queue)
    queue._sweeper.sweep()
    assert queue.history_collection.find_one({"_id": doc["_id"]}) is not None
    assert "late_from" not in queue._meta.find_one({"_id": metrics.STATE_ID})


def test_a_failure_requeued_later_becomes_a_retry_in_its_minute(queue):
    queue.max_attempts = 1
    queue.pub({"x": 1})
    job = queue.next()
    queue.fail(job, "broken")
    # its finish, 20 minutes ago: history's row and the attempt's record moved back in time
    ago = dt.timedelta(minutes=20)
    row = queue.history_collection.find_one({"_id": job.id})
    ts = {k: v - ago for k, v in row["ts"].items()}
    queue.history_collection.update_one({"_id": job.id}, {"$set": {"ts": ts}})
    queue.attempts_collection.update_many(
        {"job": job.id}, {"$set": {"started": ts["started"], "ended": ts["done"]}}
    )
    metrics.rebuild(queue)
    minute = floor(ts["done"])
    before = metrics.collection(queue).find_one({"_id": minute})
    assert (before["failed"], before["retried"]) == (1, 0)
    assert queue.retry(job.id)
    metrics.roll(queue)
    after = metrics.collection(queue).find_one({"_id": minute})
    assert (after["failed"], after["retried"]) == (0, 1)
