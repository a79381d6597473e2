"""A publish never silently evicts unfinished work: refused with the numbers and nothing
written, unless eviction is asked for; the form's limit is the ring's; resizing the ring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import pytest
from pymongo import monitoring

from mjq_notebook import DataLossWarning, JobQueue, JobQueueError, PublishError
from mjq_notebook.core.parts import room
from mjq_notebook.notebook.widgets.publisher import Publisher
from mjq_notebook.server import client_for

KIB = 1024
RING = {"size_bytes": 64 * KIB, "max_jobs": 1_000}  # small, so big payloads fill it fast


def _state(q: JobQueue) -> tuple[dict[str, int], int]:
    """What a refused publish must leave as it was: the counts and the ring's documents."""
    return q.counts(warn=False), q.collection.count_documents({})


def _mjq(*args: str, uri: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mjq_notebook.cli", *args],
        env={**os.environ, "MJQ_MONGODB_URI": uri},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_publish_too_big_for_the_room_left_is_refused_with_nothing_written(db):
    q = JobQueue(db, "room", **RING)
    q.pub_many([{"blob": "x" * (4 * KIB)} for _ in range(10)])  # ~40 KiB of 64 waiting
    before = _state(q)
    with pytest.raises(PublishError) as refused:
        q.pub({"blob": "x" * (30 * KIB)})
    message = str(refused.value)
    assert "would evict unfinished jobs" in message and "nothing was written" in message
    assert "at most 64 KiB and 1,000 jobs" in message  # the ring's limits
    assert "10 unfinished (41.9 KiB)" in message  # what it holds unfinished (BSON)
    assert "publishing 1 job (30." in message  # what the publish adds
    assert "evict=True" in message and "resize" in message  # and what to do
    assert _state(q) == before
    with pytest.raises(PublishError, match="publishing 3 jobs"):
        q.pub_many([{"blob": "x" * (8 * KIB)}] * 3)  # 24 KiB more: refused as a whole
    assert _state(q) == before
    q.pub_many([{"blob": "x" * (8 * KIB)}] * 2)  # 16 KiB more fits
    counts = q.counts()
    assert counts["waiting"] == 12 and counts["lost"] == 0


def test_a_publish_over_the_most_jobs_the_ring_holds_is_refused(db):
    q = JobQueue(db, "room", size_bytes=64 * KIB, max_jobs=5)
    q.pub_many([{"n": n} for n in range(4)])
    before = _state(q)
    with pytest.raises(PublishError) as refused:
        q.pub_many([{"n": 4}, {"n": 5}])
    assert "4 unfinished" in str(refused.value) and "6 jobs are over its 5" in str(refused.value)
    assert _state(q) == before
    q.pub({"n": 4})  # the fifth fits
    with pytest.raises(PublishError, match="6 jobs are over its 5"):
        q.pub({"n": 5})
    assert _state(q)[0] == {**before[0], "waiting": 5}
    assert [q.next().data["n"] for _ in range(5)] == [0, 1, 2, 3, 4]


def test_a_publish_larger_than_the_whole_ring_is_refused_on_an_empty_ring(db):
    q = JobQueue(db, "room", size_bytes=64 * KIB, max_jobs=3)
    with pytest.raises(PublishError, match="4 jobs are over its 3"):
        q.pub_many([{"n": n} for n in range(4)])  # they would evict each other
    with pytest.raises(PublishError, match=r"over its 64 KiB"):
        q.pub({"blob": "x" * (70 * KIB)})
    assert q.collection.count_documents({}) == 0


def test_finished_jobs_make_room_and_are_not_lost(db):
    q = JobQueue(db, "room", size_bytes=64 * KIB, max_jobs=5)
    q.pub_many([{"n": n} for n in range(5)])
    for _ in range(5):
        q.done(q.next())  # finished but maybe not swept yet: they go, to history
    q.pub_many([{"n": n} for n in range(5, 10)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DataLossWarning
        counts = q.counts()
    assert counts["waiting"] == 5 and counts["done"] == 5 and counts["lost"] == 0


def test_a_newer_finished_job_does_not_shield_the_oldest_waiting_one(db):
    """Eviction takes the oldest documents first: with 4 waiting jobs and a newer finished one
    in a 5-job ring, one more job would evict a waiting job, though 4 + 1 fit in 5."""
    q = JobQueue(db, "room", size_bytes=64 * KIB, max_jobs=5)
    q.pub_many([{"n": n} for n in range(4)])
    q.pub({"n": "newest"}, priority=1)
    q.done(q.next())  # the newest, finished: the ring keeps it for the wake-up cursors
    before = _state(q)
    with pytest.raises(PublishError, match="4 unfinished"):
        q.pub({"n": 4})
    assert _state(q) == before


def test_old_finished_documents_written_by_others_are_evicted_first(db):
    """Finished documents older than every unfinished one (pymjq's, which the sweep leaves)
    may go: the publish is allowed and no unfinished job is lost."""
    q = JobQueue(db, "room", size_bytes=64 * KIB, max_jobs=5)
    old = {"status": "done", "ts": {"created": None, "started": None, "done": None}}
    q.collection.insert_many([{**old, "data": {"pymjq": n}} for n in range(3)])
    q.pub_many([{"n": n} for n in range(2)])
    q.pub_many([{"n": n} for n in range(2, 5)])  # 8 documents in 5: the 3 old ones go
    assert q.collection.count_documents({"status": "waiting"}) == 5
    assert q.counts()["lost"] == 0


@pytest.mark.parametrize("many", [False, True], ids=["pub", "pub_many"])
def test_evict_true_publishes_and_lost_says_so(db, many):
    q = JobQueue(db, "room", size_bytes=64 * KIB, max_jobs=5)
    q.pub_many([{"n": n} for n in range(5)])
    with pytest.raises(PublishError):
        q.pub_many([{"n": 5}, {"n": 6}]) if many else q.pub({"n": 5})
    ids = q.pub_many([{"n": 5}, {"n": 6}], evict=True) if many else [q.pub({"n": 5}, evict=True)]
    assert len(ids) == (2 if many else 1)
    with pytest.warns(DataLossWarning):
        counts = q.counts()
    assert counts["lost"] == len(ids) and counts["waiting"] == 5
    assert q.next().data == {"n": len(ids)}  # the oldest went


def test_other_publishers_jobs_are_seen(db, monkeypatch):
    """Another queue object's jobs count: once the cached read is over (here at once)."""
    monkeypatch.setattr(room, "CHECK_EVERY_S", 0.0)
    q = JobQueue(db, "room", size_bytes=64 * KIB, max_jobs=10)
    q.pub({"n": 0})
    JobQueue(db, "room").pub_many([{"n": n} for n in range(1, 10)])  # fills the ring
    with pytest.raises(PublishError, match="10 unfinished"):
        q.pub({"n": 10})


def test_mjq_pub_refused_exits_2_with_one_line_and_evict_publishes(db, server_uri, tmp_path):
    q = JobQueue(db, "small", size_bytes=64 * KIB, max_jobs=1_000)
    q.pub_many([{"n": n} for n in range(100)])
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"blob": "x" * (15 * KIB)}) + "\n" for _ in range(5)))
    args = ("pub", "--file", str(jobs), "--db", db.name, "--queue", "small")
    refused = _mjq(*args, uri=server_uri)
    assert refused.returncode == 2 and refused.stdout == ""
    assert len(refused.stderr.strip().splitlines()) == 1
    assert refused.stderr.startswith("mjq pub: publishing 5 jobs")
    assert "100 unfinished" in refused.stderr and "nothing was written" in refused.stderr
    counts = q.counts(warn=False)
    assert counts["waiting"] == 100 and counts["lost"] == 0
    assert q.collection.count_documents({}) == 100
    evicted = _mjq(*args, "--evict", uri=server_uri)
    assert evicted.returncode == 0, evicted.stderr
    assert len(evicted.stdout.split()) == 5
    with pytest.warns(DataLossWarning):
        assert q.counts()["lost"] > 0


def test_the_forms_limit_is_the_rings_size(db):
    q = JobQueue(db, "room", size_bytes=64 * KIB, max_jobs=20)
    form = Publisher(q)
    try:
        form.editor.value = json.dumps({"blob": "x" * (30 * KIB)})
        assert form.publish(3) == []  # 90 KiB: over the ring, far under 64 MiB
        assert "at most 64 KiB and 20 jobs" in form.message.value
        assert "nothing was published" in form.message.value
        form.editor.value = json.dumps({"n": 1})
        assert form.publish(21) == []  # small, but more than it holds
        assert "21 jobs of this data" in form.message.value
        assert q.collection.count_documents({}) == 0
        assert len(form.publish(19)) == 19
        assert form.publish(2) == []  # the backlog of 19 would lose 1: refused by pub_many
        assert "would evict unfinished jobs" in form.message.value
        assert q.counts(warn=False)["waiting"] == 19
    finally:
        form.close()


def test_resize_grows_the_ring_or_says_the_server_did_not(db):
    q = JobQueue(db, "room", size_bytes=64 * KIB, max_jobs=5)
    q.pub_many([{"n": n} for n in range(5)])
    with pytest.raises(PublishError):
        q.pub({"n": 5})
    before = q.limits()
    try:
        after = q.resize(size_bytes=128 * KIB, max_jobs=10)
    except JobQueueError as exc:  # a server that can't (SecantusDB answers ok, does nothing)
        assert "did not apply it" in str(exc) or "refused" in str(exc)
        assert "create a queue" in str(exc)
        assert q.limits() == before
        q.pub({"n": 5}, evict=True)  # the old limit is the real one: a job is evicted
        with pytest.warns(DataLossWarning):
            assert q.counts()["lost"] == 1
    else:  # a server that can (MongoDB 6.0+): the refused publish now fits
        assert after == q.limits() and after.max_jobs == 10 and after.size_bytes >= 128 * KIB
        q.pub({"n": 5})
        counts = q.counts()
        assert counts["waiting"] == 6 and counts["lost"] == 0


def test_resize_refuses_to_shrink_below_what_the_ring_holds(db):
    q = JobQueue(db, "room", size_bytes=64 * KIB, max_jobs=5)
    q.pub_many([{"n": n} for n in range(4)])
    before = q.limits()
    with pytest.raises(JobQueueError, match="holds 4 jobs"):
        q.resize(max_jobs=3)
    with pytest.raises(JobQueueError, match="can't shrink below"):
        q.resize(size_bytes=100)
    with pytest.raises(ValueError):
        q.resize()
    assert q.limits() == before and q.queue_count() == 4


def test_mjq_resize(db, server_uri):
    q = JobQueue(db, "room", size_bytes=64 * KIB, max_jobs=5)
    none = _mjq("resize", "--db", db.name, "--queue", "room", uri=server_uri)
    assert none.returncode == 2 and "--size-bytes, --max-jobs or both" in none.stderr
    args = ("resize", "--db", db.name, "--queue", "room", "--size-bytes", "1MiB")
    result = _mjq(*args, "--max-jobs", "10", uri=server_uri)
    if result.returncode == 0:  # the server resized it
        assert "resized" in result.stdout and "1 MiB and 10 jobs" in result.stdout
        assert q.limits() == room.Limits(2**20, 10)
    else:  # it did not, and says so in one line
        assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
        assert result.stderr.startswith("mjq: ") and "create a queue" in result.stderr
        assert q.limits() == room.Limits(64 * KIB, 5)
    missing = _mjq("resize", "--db", db.name, "--queue", "nope", "--max-jobs", "9", uri=server_uri)
    assert missing.returncode != 0 and "no queue 'nope'" in missing.stderr


class _Reads(monitoring.CommandListener):
    """How many times a client read a ring's use (``collStats``)."""

    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.count += event.command_name == "collStats"

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_the_rings_use_is_read_once_while_there_is_room_and_on_every_publish_near_full(
    db, server_uri, monkeypatch
):
    monkeypatch.setattr(room, "CHECK_EVERY_S", 60.0)  # however slow the machine: one window
    reads = _Reads()
    client = client_for(server_uri, event_listeners=[reads])
    try:
        roomy = JobQueue(client[db.name], "roomy")
        for n in range(20):
            roomy.pub({"n": n})
        assert reads.count == 1  # 20 jobs in a ring of 100,000: one read
        small = JobQueue(client[db.name], "small", size_bytes=64 * KIB, max_jobs=10)
        for n in range(9):
            small.pub({"n": n})
        before = reads.count
        small.pub({"n": 9})  # the last place: read, not guessed
        assert reads.count == before + 1 and small.counts()["waiting"] == 10
    finally:
        client.close()
