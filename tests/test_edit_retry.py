"""Edit and retry (issue 25, item 4): ``q.retry(job, data=...)`` runs a failed job again with
new data as a new attempt, checked as a publish is; the old data stays in the job's story;
jobs that are not failed are left alone. And the tail's "Edit and retry" editor."""

from __future__ import annotations

from unittest import mock

import pytest

from mjq_notebook import PublishError
from mjq_notebook.core.audit import Actor, Steering
from mjq_notebook.core.job import MAX_JOB_SIZE
from mjq_notebook.core.parts import requeue
from mjq_notebook.notebook.widgets import Tail

from .support.waiting import wait_for
from .support.xss import assert_inert

SOON = 5.0
VIEWER_PAGE = {"HTTP_X_MJQ_ROLE": "viewer", "HTTP_X_MJQ_CLIENT": "10.9.8.7:4444"}


def _failed(queue, data, message="boom"):
    job_id = queue.pub(data, max_attempts=1)
    job = queue.next()
    assert job.id == job_id
    queue.fail(job, RuntimeError(message))
    assert queue.get(job_id)["status"] == "failed"
    return job_id


def _edits(queue, job_id):
    return list(queue.attempts_collection.find({"job": job_id, "kind": "edited"}))


def test_edit_and_retry_runs_the_new_data_and_keeps_the_old_in_the_timeline(queue):
    job_id = _failed(queue, {"to": "typo@exampel.com"}, "no such domain")
    assert queue.retry(job_id, data={"to": "someone@example.com"}) is True
    assert queue.get(job_id)["status"] == "waiting"
    job = queue.next()
    assert job.id == job_id and job.data == {"to": "someone@example.com"}
    assert job.attempts == 2
    queue.done(job)
    frame = queue.timeline(job_id)
    assert list(frame["outcome"]) == ["failed", "edited", "done"]
    assert list(frame["attempt"]) == [1, 1, 2]
    assert frame["data"][1] == {"to": "typo@exampel.com"}
    assert frame["error_message"][0] == "no such domain"
    assert queue.history_collection.find_one({"_id": job_id})["data"] == {
        "to": "someone@example.com"
    }


def test_edit_and_retry_of_a_job_evicted_from_the_ring_brings_it_back_with_the_new_data(queue):
    job_id = _failed(queue, [1, 2])
    queue.collection.delete_one({"_id": job_id})  # as if the ring evicted it: history has it
    assert queue.retry(job_id, data=[3]) is True
    assert queue.collection.find_one({"_id": job_id})["data"] == [3]
    assert [e["data"] for e in _edits(queue, job_id)] == [[1, 2]]


def test_data_that_cant_be_stored_raises_publish_error_and_changes_nothing(queue):
    job_id = _failed(queue, {"n": 1})
    before = queue.get(job_id)
    with pytest.raises(PublishError, match="nothing was written"):
        queue.retry(job_id, data={"n": {1, 2}})  # a set: not BSON
    with pytest.raises(PublishError, match="nothing was written"):
        queue.retry(job_id, data="x" * MAX_JOB_SIZE)
    after = queue.get(job_id)
    assert after["status"] == "failed" and after["data"] == before["data"]
    assert _edits(queue, job_id) == []


def test_jobs_that_are_not_failed_are_left_alone_and_no_edit_is_recorded(queue, other):
    done = queue.pub({"d": 1})
    queue.done(queue.next())
    assert queue.retry(done, data={"d": 2}) is False
    failed = _failed(queue, {"f": 1})
    seen = queue.get(failed)  # read as failed here...
    assert other.retry(failed) is True  # ...requeued by someone else...
    assert other.next().id == failed  # ...and claimed meanwhile
    assert queue.retry(failed, data={"f": 2}) is False
    with mock.patch.object(requeue, "failed_jobs", lambda *args: [dict(seen)]):
        assert queue.retry(failed, data={"f": 2}) is False  # the edit made, then taken back
    waiting = queue.pub({"w": 1})
    assert queue.retry(waiting, data={"w": 2}) is False
    for job_id, data in ((waiting, {"w": 1}), (done, {"d": 1}), (failed, {"f": 1})):
        assert queue.get(job_id)["data"] == data
        assert _edits(queue, job_id) == []


def test_an_edit_through_steering_says_who_in_the_audit_and_the_story(queue):
    job_id = _failed(queue, {"n": 1})
    steering = Steering(queue, Actor.here("notebook"))
    assert steering.retry_with(queue.get(job_id), {"n": 2}) is True
    [entry] = _edits(queue, job_id)
    assert entry["by"]["via"] == "notebook" and entry["by"]["user"]
    assert [e["action"] for e in queue.audit()] == ["edit and retry"]
    html = queue.get(job_id)._repr_html_()
    text = assert_inert(html)
    assert "Attempts" in text and "data was" in text and '{"n": 1}' in text


def test_the_tails_editor_validates_and_retries(queue):
    job_id = _failed(queue, {"to": "a"})
    tail = Tail(queue, limit=20)
    try:
        wait_for(lambda: tail.table.state == "live", 10, "the tail to go live")
        tail.select(job_id)
        edit = tail.actions.edit
        wait_for(lambda: edit.button.layout.display is None, SOON, "Edit and retry offered")
        assert "Attempts" in tail.detail.value
        edit.button.click()
        assert edit.box.layout.display is None
        assert '"to": "a"' in edit.editor.value  # the job's data, as the form shows JSON
        edit.editor.value = '{"to": '
        assert "invalid JSON" in edit.problem.value and edit.retry_button.disabled
        edit.retry()  # a click anyway: nothing written
        assert queue.get(job_id)["status"] == "failed" and _edits(queue, job_id) == []
        edit.editor.value = '{"to": "b"}'
        assert edit.problem.value == "" and not edit.retry_button.disabled
        edit.retry_button.click()
        assert queue.get(job_id)["data"] == {"to": "b"}
        assert queue.get(job_id)["status"] == "waiting"
        assert "waiting again with the new data" in tail.message.value
        wait_for(lambda: edit.box.layout.display == "none", SOON, "the editor closed")
        wait_for(lambda: edit.button.layout.display == "none", SOON, "the button gone")
        wait_for(lambda: "data was" in tail.detail.value, SOON, "the edit in the detail")
    finally:
        tail.close()


def test_a_viewer_gets_no_edit_and_retry(queue):
    tail = Tail(queue, actor=Actor.page(VIEWER_PAGE))
    try:
        edit = tail.actions.edit
        assert edit.button is None and edit.box is None and edit.editor is None
        job_id = _failed(queue, {"n": 1})
        with pytest.raises(Exception, match="read-only"):
            tail.steering.retry_with(job_id, {"n": 2})
        assert _edits(queue, job_id) == []
    finally:
        tail.close()
