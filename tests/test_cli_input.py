"""A user's mistake on the command line is one line naming it, exit status 2, no traceback,
nothing written; and what other programs wrote is shown, never a crash. The checks `mjq pub`
relies on are the library's, so they are tried on JobQueue too."""

from __future__ import annotations

import math
import os

import pytest

from mjq_notebook import JobQueue, PublishError
from mjq_notebook.core.job import MAX_DELAY_S

from .support.processes import MjqTail, run_mjq
from .support.waiting import wait_for


def assert_one_line_mistake(result, *words: str) -> None:
    """Exit status 2, and stderr one line that names the problem, without a traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


def _written(db) -> dict[str, int]:
    """Every collection of ``db`` and how many documents it holds."""
    return {name: db[name].count_documents({}) for name in db.list_collection_names()}


@pytest.mark.parametrize("queue_exists", [False, True])
def test_pub_refusals_write_nothing(db, server_uri, tmp_path, queue_exists):
    deep = tmp_path / "deep.jsonl"
    deep.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    unstorable = tmp_path / "big.jsonl"
    unstorable.write_text('{"n": 1}\n{"big": 1180591620717411303424}\n')  # 2**70: no BSON int
    cases = [
        (["--file", str(deep)], ["line 1", "nested too deeply"]),
        (["--file", str(unstorable)], ["job 1", "can't be stored as BSON"]),
        (["{}", "--delay", "nan"], ["delay", "not nan"]),
        (["{}", "--delay", "inf"], ["delay", "not inf"]),
        (["{}", "--delay", "1e300"], ["delay", "not 1e+300"]),
        (["{}", "--delay", "-5"], ["delay", "from 0"]),
        (["{}", "--priority", "1000000000000000000000000"], ["priority", "64-bit"]),
        ([""], ["job data is empty"]),
        (["   "], ["job data is empty"]),
        (["{}", "--queue", "jobqueue.history"], ["'jobqueue.history'", "companion"]),
    ]
    if queue_exists:
        JobQueue(db).pub({"already": "there"})
    before = _written(db)
    for args, words in cases:
        result = run_mjq("pub", *args, "--db", db.name, uri=server_uri)
        assert_one_line_mistake(result, *words)
        assert "the data" not in result.stderr or "stored" in result.stderr  # blamed right
        assert result.stdout == ""  # no id printed
        assert _written(db) == before, args  # no queue made, no job, no counter


def test_data_folder_that_is_a_file(db, tmp_path):
    """MJQ_DATA_DIR naming a file: a DataFolderError saying so, the file left as it was."""
    afile = tmp_path / "not-a-folder"
    afile.write_text("mine\n")
    before = sorted(os.listdir(tmp_path))
    env = {"MJQ_DATA_DIR": str(afile), "MJQ_MONGODB_URI": None, "MONGODB_URI": None}
    for command in (["queues"], ["pub", "{}"], ["serve", "--detach"]):
        result = run_mjq(*command, env=env, cwd=tmp_path)
        assert_one_line_mistake(result, str(afile), "is a file, not a folder", "MJQ_DATA_DIR")
    result = run_mjq("queues", env={**env, "MJQ_DATA_DIR": str(afile / "sub")}, cwd=tmp_path)
    assert_one_line_mistake(result, "can't be made")
    assert afile.read_text() == "mine\n"
    assert sorted(os.listdir(tmp_path)) == before


def test_tail_shows_jobs_other_programs_wrote_malformed(db, server_uri):
    """Jobs whose ``ts`` is a string or null, or whose ts.created is a string, or that have
    no status: listed (time "?"), and their changes too; the tail never crashes."""
    q = JobQueue(db)
    good = q.pub({"ok": True})
    malformed = [
        {"status": "waiting", "ts": "yesterday", "data": "ts a string"},
        {"status": "waiting", "ts": None, "data": "ts null"},
        {"status": "waiting", "ts": {"created": "noon", "started": 5}, "data": "created a string"},
        {"ts": {}, "data": "no status"},
    ]
    ids = q.collection.insert_many(malformed).inserted_ids
    tail = MjqTail(server_uri, db, "--duration", "60")
    try:
        wait_for(lambda: tail.printed(str(good), "waiting"), 60, "the tail to read the queue")
        for job_id, doc in zip(ids, malformed, strict=True):
            assert tail.printed(str(job_id), doc["data"]), (job_id, tail.lines)
        assert tail.printed(str(ids[0]), "?")  # no time to show
        q.collection.update_one({"_id": ids[0]}, {"$set": {"status": "done"}})
        wait_for(lambda: tail.printed(str(ids[0]), "waiting -> done"), 20, "the change")
        assert tail.process.poll() is None  # still following
    finally:
        code, errors = tail.stop()
    assert code == 130 and "Traceback" not in errors, errors


# -- the library's checks behind `mjq pub` ---------------------------------------------------


@pytest.mark.parametrize("priority", [2**63, -(2**63) - 1, 10**24, "high", None])
def test_priority_must_fit_a_signed_64_bit_integer(queue, priority):
    before = _written(queue.db)
    with pytest.raises(PublishError, match="priority must be a whole number") as info:
        queue.pub({"n": 1}, priority=priority)
    assert "nothing was written" in str(info.value)
    with pytest.raises(PublishError, match="priority"):
        queue.pub_many([{"n": 1}, {"n": 2}], priority=priority)
    assert _written(queue.db) == before


def test_priority_limits_are_stored_and_ordered(queue):
    low, high = queue.pub("low", priority=-(2**63)), queue.pub("high", priority=2**63 - 1)
    assert queue.next(timeout=0).id == high
    assert queue.next(timeout=0).id == low


@pytest.mark.parametrize("delay", [math.nan, math.inf, -math.inf, 1e300, -1, MAX_DELAY_S + 1])
def test_delay_must_be_finite_and_sane(queue, delay):
    before = _written(queue.db)
    with pytest.raises(PublishError, match="delay must be a number of seconds") as info:
        queue.pub({"n": 1}, delay=delay)
    assert "ten years" in str(info.value) and isinstance(info.value, ValueError)
    with pytest.raises(PublishError, match="delay"):
        queue.pub_many([{"n": 1}], delay=delay)
    assert _written(queue.db) == before


def test_the_longest_delay_is_accepted(queue):
    job_id = queue.pub({"n": 1}, delay=MAX_DELAY_S)
    job = queue.get(job_id)
    assert (job["available_at"] - job["ts"]["created"]).days == int(MAX_DELAY_S // 86_400)
