"""The publish form: live validation, nothing written on bad input, N copies, load()."""

from __future__ import annotations

import datetime as dt
import html
import json

import ipywidgets as widgets
import pytest
from bson import ObjectId

from mjq_notebook import JobQueue
from mjq_notebook.notebook.widgets.publisher import Publisher

from .support.xss import XSS, assert_escaped


def _written(queue: JobQueue) -> int:
    return queue.collection.count_documents({})


def _message(form: Publisher) -> str:
    return html.unescape(form.message.value)


@pytest.fixture
def form(queue):
    publisher = Publisher(queue)
    yield publisher
    publisher.close()


def test_default_example_is_valid_and_publishes_one_job(form, queue):
    assert json.loads(form.editor.value) == {"message": "hello world!"}
    assert not form.publish_button.disabled
    assert form.publish_button.description == "Publish"
    form.publish_button.click()
    [job] = queue.jobs()
    assert job.data == {"message": "hello world!"}
    assert str(job.id) in form.message.value
    assert "published 1 job" in _message(form)


def test_every_control_says_what_it_does(form):
    controls = [form.editor, form.priority, form.delay, form.max_attempts, form.copies]
    for control in [*controls, form.publish_button]:
        assert control.tooltip, control
        assert control.description, control


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"message": "hi",}', "line 1, column 18"),
        ('{\n  "a": 1\n  "b": 2\n}', "line 3, column 3"),
        ("", "empty"),
        ("{'single': 'quotes'}", "invalid JSON"),
    ],
)
def test_bad_json_is_reported_inline_and_writes_nothing(form, queue, text, expected):
    form.editor.value = text
    assert expected in _message(form)
    assert form.publish_button.disabled
    form.publish_button.click()
    form.copies.value = 3
    form.publish_button.click()
    assert form.publish(3) == []
    assert _written(queue) == 0


def test_fixing_the_json_clears_the_error_and_enables_publishing(form, queue):
    form.editor.value = '{"a": '
    assert form.publish_button.disabled
    form.editor.value = '{"a": 1}'
    assert form.message.value == ""
    assert not form.publish_button.disabled
    form.publish_button.click()
    assert queue.jobs()[0].data == {"a": 1}


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"n": 123456789012345678901234567890}', "can't be stored"),
        ('{"a\\u0000b": 1}', "can't be stored"),
        (json.dumps({"blob": "x" * (17 * 2**20)}), "16 MiB"),
    ],
)
def test_unstorable_data_is_reported_inline_and_writes_nothing(form, queue, text, expected):
    form.editor.value = text
    assert expected in _message(form)
    assert form.publish_button.disabled
    form.publish_button.click()
    form.copies.value = 3
    form.publish_button.click()
    assert _written(queue) == 0


def test_negative_delay_disables_publishing(form, queue):
    form.delay.value = -1.0
    assert "delay" in _message(form)
    assert form.publish_button.disabled
    form.publish_button.click()
    assert _written(queue) == 0
    form.delay.value = 0.0
    assert not form.publish_button.disabled


def test_n_copies_publish_identical_jobs_with_the_options(form, queue):
    form.editor.value = '["a", {"b": 2}]'  # any JSON is job data, a list included
    form.priority.value = 7
    form.delay.value = 30.0
    form.max_attempts.value = 2
    form.copies.value = 5
    assert form.publish_button.description == "Publish 5 copies"
    form.publish_button.click()
    jobs = queue.jobs(limit=10)
    assert len(jobs) == 5
    for job in jobs:
        assert job.data == ["a", {"b": 2}]
        assert job["priority"] == 7
        assert job["max_attempts"] == 2
        waits = (job["available_at"] - job["ts"]["created"]).total_seconds()
        assert waits == pytest.approx(30, abs=0.01)
    text = _message(form)
    assert "published 5 jobs" in text and "and 2 more" in text
    shown = {str(job.id) for job in jobs}
    assert sum(job_id in text for job_id in shown) == 3


def test_copies_are_bounded(form):
    form.copies.value = 50_000
    assert form.copies.value == 10_000
    form.copies.value = 1
    assert form.publish_button.description == "Publish"


def test_a_queue_that_cant_take_jobs_is_reported_inline(db):
    db["plain"].insert_one({"not": "a queue"})
    queue = JobQueue(db, name="plain")
    form = Publisher(queue)
    try:
        form.publish_button.click()  # must not raise into the notebook
        assert "not capped" in _message(form)
        assert db["plain"].count_documents({}) == 1
    finally:
        form.close()


def test_load_fills_the_editor(form):
    form.load({"kind": "email", "to": ["a@example.com"], "n": 3})
    assert json.loads(form.editor.value) == {"kind": "email", "to": ["a@example.com"], "n": 3}
    assert "\n  " in form.editor.value  # indented for reading
    assert not form.publish_button.disabled


def test_load_turns_non_json_values_into_text_and_says_so(form):
    when = dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)
    form.load({"id": ObjectId("0123456789ab0123456789ab"), "when": when})
    assert json.loads(form.editor.value) == {
        "id": "0123456789ab0123456789ab",
        "when": "2024-01-02 00:00:00+00:00",
    }
    assert "turned into text" in _message(form)


def test_on_publish_hears_the_new_ids(form, queue):
    heard = []
    form.on_publish(heard.append)
    form.copies.value = 2
    form.publish_button.click()
    assert heard == [[job.id for job in reversed(queue.jobs())]]


@pytest.mark.parametrize("payload", XSS)
def test_payloads_in_data_and_errors_are_escaped(form, queue, payload):
    form.editor.value = json.dumps({payload: payload})[:-1]  # invalid: shown in the error
    assert form.publish_button.disabled
    assert_escaped(form)
    form.load({payload: payload, "x": [payload]})
    form.publish_button.click()
    assert queue.jobs()[0].data == {payload: payload, "x": [payload]}
    assert_escaped(form)
    form.editor.value = payload  # the payload as the whole (bad) JSON text
    assert_escaped(form)
    assert html.escape(payload) in form.message.value


def test_repr_is_short_text(form):
    assert repr(form).startswith("<Publisher mjq_test_")
    form.editor.value = "{"
    assert "invalid" in repr(form)


def test_copies_too_big_for_one_publish_write_nothing(form, queue):
    form.editor.value = json.dumps({"blob": "x" * (7 * 2**20)})
    form.copies.value = 10
    form.publish_button.click()
    assert "nothing was published" in _message(form)
    assert _written(queue) == 0


def buttons(widget: widgets.Widget) -> list[widgets.Button]:
    """The buttons in ``widget``'s tree that a browser shows (display not "none")."""
    found = []
    if widget.layout.display != "none":
        if isinstance(widget, widgets.Button):
            found.append(widget)
        for child in getattr(widget, "children", ()):
            found.extend(buttons(child))
    return found


@pytest.mark.parametrize("copies, label", [(1, "Publish"), (3, "Publish 3 copies")])
def test_one_publish_button_says_how_many_and_publishes_that_many(form, queue, copies, label):
    form.copies.value = copies
    shown = [button.description for button in buttons(form)]
    assert shown == [label]  # no "Publish" beside a "Publish 3 copies"
    assert str(copies) in form.publish_button.tooltip or copies == 1
    form.publish_button.click()
    assert _written(queue) == copies
    assert f"published {copies} job" in _message(form)


def test_the_old_name_of_the_copies_button_is_the_publish_button(form, queue):
    form.copies.value = 2
    form.publish_copies_button.click()  # notebooks written before the one button still run
    assert _written(queue) == 2
