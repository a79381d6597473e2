"""``mjq tail`` as a log people can read, run as users run it: one line a change of ANY job
(an old one retried included), in the order the changes happened and at their own times,
with worker, attempt, progress and the error's first line; and the same log followed by
polling where the server has no change streams."""

from __future__ import annotations

import datetime as dt
import json
import signal

import pytest
from pymongo.errors import OperationFailure

from mjq_notebook import JobQueue
from mjq_notebook.cli.tail import COLUMNS, progress_text
from mjq_notebook.live.joblog import JobLog

from .support.feed import SyntheticStream, change_events, feed_queue
from .support.processes import MjqTail, read_log, start_worker
from .support.processes import run_mjq as mjq
from .support.waiting import wait_for


def cells(line: str) -> dict[str, str]:
    """A table line cut into its columns by their widths (the last takes the rest)."""
    out, at = {}, 0
    for name, width in COLUMNS:
        out[name] = (line[at : at + width] if width else line[at:]).strip()
        at += width + 2
    return out


def has_change_streams(db) -> bool:
    try:
        db["probe"].watch().close()
    except OperationFailure:
        return False
    return True


def stamp(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=dt.timezone.utc)


def lines_of(tail: MjqTail, job_id) -> list[dict[str, str]]:
    return [cells(line) for line in list(tail.lines)[1:] if cells(line)["job"] == str(job_id)]


def near(line: dict[str, str], when: dt.datetime, slack: float = 0.5) -> bool:
    return abs((stamp(line["time (UTC)"]) - when).total_seconds()) <= slack


def test_a_retried_old_job_shows_each_change_at_its_own_time(db, server_uri, tmp_path, monkeypatch):
    if not has_change_streams(db):  # a standalone mongod: the polled log is tested below
        pytest.skip("the server has no change streams")
    q = JobQueue(db, lease=30, backoff=0.05)
    old = q.pub({"n": "old", "progress": True}, max_attempts=1)
    q.fail(q.next(), "gave up")  # failed, long before the tail starts: a day ago, say
    day_ago = {"$set": {"ts.created": dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)}}
    for collection in (q.collection, q.history_collection):
        collection.update_one({"_id": old}, day_ago)
    for n in range(5):  # newer jobs, all done: the old one is out of the tail's first window
        q.pub({"n": n})
        q.done(q.next())
    tail = MjqTail(server_uri, db, "--limit", "3", "--duration", "120")
    release, log = tmp_path / "release", tmp_path / "log"
    monkeypatch.setenv("MJQ_TEST_RELEASE", str(release))  # the worker's handler waits for it
    worker = None
    try:
        marker = q.pub({"marker": True})  # once its line shows, the tail follows the queue
        wait_for(lambda: tail.printed(str(marker), "waiting"), 60, "the tail to follow")
        assert not lines_of(tail, old)  # not among the newest three
        before = dt.datetime.now(dt.timezone.utc)
        assert q.retry(str(old)) is True  # by its hex, as copied from a display
        q.cancel(marker)
        worker = start_worker(server_uri, db, "progress", log, "--max-jobs", "1")
        wait_for(lambda: any(ln["progress"] for ln in lines_of(tail, old)), 30, "its progress")
        release.touch()
        wait_for(lambda: tail.printed(str(old), "working -> done"), 30, "the old job done")
        after = dt.datetime.now(dt.timezone.utc)
        failing = q.pub({"n": "fails"}, max_attempts=1)
        q.fail(q.next(), ValueError("no such user\nsecond line of the message"))
        wait_for(lambda: tail.printed(str(failing), "-> failed"), 30, "the failure")
    finally:
        code, errors = tail.stop()
        if worker is not None:
            worker.send_signal(signal.SIGINT)
            worker.wait(30)
    assert code == 130 and "Traceback" not in errors, errors
    assert "times are the server's" in errors
    doc = q.get(old)
    ours = lines_of(tail, old)
    assert [line["change"] for line in ours] == [
        "waiting",  # requeued: the first the tail knows of it
        "waiting -> working",
        "working",  # its progress
        "working -> done",
    ]
    requeued, claimed, progressed, done = ours
    # each at the time it happened, not at the job's creation
    assert before - dt.timedelta(seconds=0.5) <= stamp(requeued["time (UTC)"]) <= after
    assert near(claimed, doc["ts"]["started"]) and near(done, doc["ts"]["done"])
    # the worker that claimed it and the attempt it is on
    worker_id = doc["worker"]
    assert worker_id.split(":")[1] == read_log(log)[0][1]  # that worker process's pid
    for line in (claimed, progressed, done):
        assert worker_id.endswith(line["worker"].lstrip("…"))
        assert line["attempt"] == f"2/{doc['max_attempts']}"
    assert requeued["worker"] == "—" and requeued["attempt"] == f"1/{doc['max_attempts']}"
    assert progressed["progress"] == "4/10 resizing"
    assert json.loads(claimed["data / error"]) == {"n": "old", "progress": True}
    failure = lines_of(tail, failing)[-1]
    assert failure["change"] == "working -> failed"
    assert failure["data / error"] == "error: ValueError: no such user"
    # never back in time, over every line
    stamps = [stamp(cells(line)["time (UTC)"]) for line in tail.lines[1:]]
    assert stamps == sorted(stamps)


def test_json_lines_and_mjq_queue_choose_the_queue(db, server_uri):
    emails = JobQueue(db, "emails")
    job_id = emails.pub({"to": "ada\x1b[31m"})
    JobQueue(db).pub({"elsewhere": True})
    result = mjq(
        "tail", "--db", db.name, "--duration", "1", "--format", "json",
        uri=server_uri, env={"MJQ_QUEUE": "emails"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(row["job"], row["status"], row["data"]) for row in rows] == [
        (str(job_id), "waiting", {"to": "ada\x1b[31m"})
    ]
    result = mjq("tail", "--db", db.name, "--duration", "1", "--queue", "jobqueue",
                 uri=server_uri, env={"MJQ_QUEUE": "emails"})  # fmt: skip
    assert "elsewhere" in result.stdout and "ada" not in result.stdout  # --queue beats it


def test_table_lines_stay_aligned_and_escaped(db, server_uri):
    q = JobQueue(db)
    q.pub({"text": "\x1b[2J\rnew\nline" * 20})
    q.pub({"short": 1})
    result = mjq("tail", "--db", db.name, "--duration", "1", uri=server_uri)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert len(rows) == 2 and "\x1b" not in result.stdout and "\r" not in result.stdout
    starts = [header.index(name) for name, _ in COLUMNS]
    for row in rows:  # every column starts where its heading does
        assert all(row[start - 2 : start] == "  " for start in starts[1:])


def test_progress_is_said_once():
    assert progress_text({"done": 5, "total": 10, "message": "step 5 of 10"}) == "step 5 of 10"
    assert progress_text({"done": 4, "total": 10, "message": "resizing"}) == "4/10 resizing"
    assert progress_text({"done": 2.5, "total": None, "message": None}) == "2.5"
    assert progress_text(None) == ""


@pytest.mark.parametrize("feed", ["polling"], indirect=True)
def test_polling_follows_any_job_that_runs(queue, other):
    """No change streams: an old job retried shows from its claim on, stamped when seen."""
    old = other.pub({"n": "old"}, max_attempts=1)
    other.fail(other.next(), "gave up")
    other.pub_many([{"n": n} for n in range(4)])
    log = JobLog(queue, limit=2)
    changes = log.changes(duration=30)
    head = [next(changes), next(changes)]
    assert old not in {change.job["_id"] for change in head}
    other.retry(old)
    job = other.next()  # the oldest due: the old one
    assert job.id == old

    def next_of_old():
        return next(change for change in changes if change.job["_id"] == old)

    working = next_of_old()
    other.done(job)
    done = next_of_old()
    changes.close()
    assert log.mode == "polling"
    assert (working.previous, working.job["status"]) == (None, "working")
    assert (done.previous, done.job["status"]) == ("working", "done")
    assert working.job["worker"] == other.worker_id and working.job["attempts"] == 2
    assert working.at <= done.at


def test_the_log_keeps_up_with_a_fast_feed_without_reading_the_queue(queue, monkeypatch):
    """At a real MongoDB's rate (a synthetic change stream of 5,000 events a second), the log
    makes a line of each event it reads and reads the queue not once: each event carries what
    its line needs. (How fast it reads is a machine's figure, not asserted here.)"""
    feed_queue(queue, rate=5000, monkeypatch=monkeypatch)
    log, reads = JobLog(queue, limit=5), []
    changes = log.changes(duration=2.0, on_follow=lambda mode: reads.clear())  # after the head
    for collection in (queue.collection, queue.history_collection):
        real = collection.find
        monkeypatch.setattr(
            collection, "find", lambda *a, _real=real, **k: (reads.append(a), _real(*a, **k))[1]
        )
    lines = sum(1 for _ in changes)
    assert log.mode == "change stream"
    assert SyntheticStream.offered > 5000 and SyntheticStream.read > 1000
    assert lines >= SyntheticStream.read * 0.9  # each event a line (its job changed)
    assert reads == []


def test_the_log_goes_on_after_the_server_went_away(queue, monkeypatch, caplog):
    """A stream that fails (the server away) is a warning, then a stream again from where the
    last one stopped (its resume token): the changes after it still come."""
    from pymongo.errors import AutoReconnect

    from mjq_notebook.live import joblog

    events, opened = change_events(queue.db.name, queue.name, jobs=50), []

    class Failing(SyntheticStream):
        resume_token = {"_data": "82ab"}

        def try_next(self):
            if self._served >= 30:  # ten jobs in, the server goes away
                raise AutoReconnect("connection reset")
            return super().try_next()

    def watch(*args, **kwargs):
        opened.append(kwargs.get("resume_after"))
        kind = Failing if len(opened) == 1 else SyntheticStream
        return kind(events, rate=2000, await_s=0.1)

    monkeypatch.setattr(queue.collection, "watch", watch)
    monkeypatch.setattr(joblog, "RETRY_S", 0.05)
    seen = set()
    for change in JobLog(queue, limit=5).changes(duration=1.5):
        seen.add(change.job["_id"])
    assert opened == [None, {"_data": "82ab"}]  # opened again where it stopped
    assert len(seen) > 10  # changes after the outage came too
    assert "connection reset; following again" in caplog.text


def test_a_job_published_just_after_the_head_is_read_is_not_missed(queue, monkeypatch):
    """The log follows the queue from before it reads the newest jobs: a job published between
    that read and the following has its line (it had none when the stream opened after)."""
    queue.pub({"n": "before"})
    log = JobLog(queue, limit=5)
    head, published = log._head, []

    def head_then_publish():
        yield from head()
        published.append(queue.pub({"n": "just after the head"}))

    monkeypatch.setattr(log, "_head", head_then_publish)
    seen = []
    for change in log.changes(duration=3.0):
        seen.append(change.job.get("_id"))
        if published and published[0] in seen:
            break
    if log.mode != "change stream":
        pytest.skip("the server has no change streams: the log polls (tested above)")
    assert published and published[0] in seen


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_end_the_tail_even_started_in_the_background(db, server_uri, signum):
    """A shell starts ``mjq tail ... &`` with SIGINT ignored, and Python then raises no
    KeyboardInterrupt: the tail's own handler stops it all the same, between two reads."""
    q = JobQueue(db)
    marker = q.pub({"before": "the tail"})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited, as from `&`
    try:
        tail = MjqTail(server_uri, db, "--duration", "60")
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        wait_for(lambda: tail.printed(str(marker), "waiting"), 60, "the tail to follow")
    finally:
        code, errors = tail.stop(signum, timeout=10)  # TimeoutExpired: it went on
    assert code == 130 and "Traceback" not in errors, errors
