"""Ids as people copy them: every method taking a job takes its 24 hex digits as well as its
ObjectId or document, and a string that names no job is an error (JobIdError), never a silent
None or False."""

from __future__ import annotations

import json

import pytest
from bson import ObjectId

from mjq_notebook import JobIdError, JobQueueError
from mjq_notebook.core.job import job_id

from .support.processes import run_mjq as mjq


def _failed(q):
    q.pub({"task": "fails"}, max_attempts=1)
    job = q.next()
    q.fail(job, ValueError("boom"))
    return job.id


def _delayed(q):
    return q.pub({"task": "later"}, delay=3600)


def _working(q):
    q.pub({"task": "runs"})
    return q.next().id


# method -> (how to make a job it acts on, what the queue holds of it after the call)
SETUPS = {
    "get": (_failed, "failed"),
    "retry": (_failed, "waiting"),
    "cancel": (_delayed, "cancelled"),
    "promote": (_delayed, "waiting"),
    "reclaim": (_working, "waiting"),
}


@pytest.mark.parametrize("form", ["hex", "spaced", "repr", "ObjectId", "document"])
@pytest.mark.parametrize("method", sorted(SETUPS))
def test_every_method_taking_a_job_takes_its_hex_string(queue, method, form):
    make, after = SETUPS[method]
    oid = make(queue)
    given = {
        "hex": str(oid),
        "spaced": f"  {str(oid).upper()}\n",  # copied with the line around it
        "repr": f"ObjectId('{oid}')",
        "ObjectId": oid,
        "document": {"_id": oid, "data": "whatever"},
    }[form]
    if method == "reclaim" and form == "document":
        given = queue.get(oid)  # reclaim is conditional on the attempt the document holds
    answer = getattr(queue, method)(given)
    if method == "get":
        assert answer is not None and answer.id == oid and answer["status"] == "failed"
    else:
        assert answer is True
    assert queue.get(oid)["status"] == after
    if method == "promote":  # due now, not in an hour
        assert queue.next().id == oid


@pytest.mark.parametrize("bad", ["6b14zz", "6b14d006a2a7959d8b56406", "", "job 42", None, {}])
@pytest.mark.parametrize("method", sorted(SETUPS))
def test_a_value_that_names_no_job_is_an_error_not_a_silent_answer(queue, method, bad):
    oid = _delayed(queue)
    with pytest.raises(JobIdError) as raised:
        getattr(queue, method)(bad)
    assert isinstance(raised.value, (JobQueueError, ValueError))
    if isinstance(bad, str) and bad:
        assert str(raised.value) == f"{bad!r} is not a job id: 24 hex digits, as the displays show"
    assert queue.get(oid)["status"] == "waiting"  # nothing changed


def test_other_ids_are_used_as_they_are(queue):
    """Documents other programs wrote may have any _id: an int names that job as is, and a
    string _id through its document (a bare hex string always means an ObjectId)."""
    queue.collection.insert_one({"_id": 42, "status": "waiting", "data": {"by": "someone"}})
    queue.collection.insert_one({"_id": "abc", "status": "waiting", "data": {"by": "else"}})
    assert queue.get(42)["data"] == {"by": "someone"}
    assert queue.cancel(42) is True
    assert queue.get(42)["status"] == "cancelled"
    assert queue.get({"_id": "abc"})["data"] == {"by": "else"}
    with pytest.raises(JobIdError):
        queue.get("abc")


def test_job_id_reads_each_form_once():
    oid = ObjectId()
    assert job_id(oid) is oid
    assert job_id(str(oid)) == oid and isinstance(job_id(str(oid)), ObjectId)
    assert job_id(f'ObjectId("{oid}")') == oid
    assert job_id({"_id": oid, "status": "done"}) is oid
    assert job_id(7) == 7
    with pytest.raises(JobIdError, match="no _id"):
        job_id({"status": "done"})
    with pytest.raises(JobIdError, match=r"is not a job id"):
        job_id("\x1b[31m" + "a" * 60)  # escaped and cut in the message
    try:
        job_id("\x1b[31m" + "a" * 60)
    except JobIdError as exc:
        assert "\x1b" not in str(exc) and len(str(exc)) < 120


# -- mjq: the commands taking a job ------------------------------------------------------------

CLI_ACTIONS = {  # flag -> (how to make a job it acts on, what the queue holds of it after)
    "--retry": (_failed, "waiting"),
    "--cancel": (_delayed, "cancelled"),
    "--run-now": (_delayed, "waiting"),
    "--release": (_working, "waiting"),
}


@pytest.mark.parametrize("flag", sorted(CLI_ACTIONS))
def test_mjq_job_acts_on_a_job_given_by_its_hex(queue, server_uri, flag):
    from mjq_notebook.core.audit import read as read_audit

    make, after = CLI_ACTIONS[flag]
    oid = make(queue)
    result = mjq("job", str(oid), flag, "--db", queue.db.name, uri=server_uri)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"mjq: job {oid} ")
    assert queue.get(oid)["status"] == after
    if flag == "--run-now":
        assert queue.next().id == oid  # due now
    assert read_audit(queue, 1)[0]["jobs"] == [oid]  # recorded, as an ObjectId
    again = mjq("job", str(oid), flag, "--db", queue.db.name, uri=server_uri)
    if flag != "--release":  # released: it waits, and nothing holds it any more
        assert again.returncode == 1 and "nothing was done" in again.stderr


def test_mjq_job_shows_a_job_and_refuses_what_is_no_id(queue, server_uri):
    oid = _failed(queue)
    shown = mjq("job", str(oid), "--db", queue.db.name, uri=server_uri)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["_id"] == str(oid) and doc["status"] == "failed" and doc["data"] == {"task": "fails"}
    bad = mjq("job", "6b14zz", "--db", queue.db.name, uri=server_uri)
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        "mjq job: argument job: '6b14zz' is not a job id: 24 hex digits, as the displays show "
        "(see `mjq job --help`)"
    ]
    missing = mjq("job", str(ObjectId()), "--db", queue.db.name, uri=server_uri)
    assert missing.returncode == 1 and "no job" in missing.stderr
    assert queue.get(oid)["status"] == "failed"  # nothing changed
