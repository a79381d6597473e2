"""The history explorer: controls -> summary table and latency plot, on a queue or a frame."""

from __future__ import annotations

import html

import pytest

from mjq_notebook.notebook.widgets.explore import Explorer

from .support.xss import XSS, assert_escaped

PNG = b"\x89PNG\r\n\x1a\n"


def _run(queue, kinds: list[str], fail: set[str] = frozenset()) -> None:
    """Publish one job per kind and finish each: failed when its kind is in ``fail``."""
    queue.pub_many([{"kind": kind, "n": i} for i, kind in enumerate(kinds)], max_attempts=1)
    for _ in kinds:
        job = queue.next(timeout=2)
        if job.data["kind"] in fail:
            queue.fail(job, RuntimeError("boom"))
        else:
            queue.done(job)


@pytest.fixture
def no_pyplot_figures():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close("all")
    yield
    assert plt.get_fignums() == []


@pytest.fixture
def history(queue):
    _run(queue, ["email", "email", "resize", "resize", "resize"], fail={"resize"})
    queue.pub({"kind": "later"})  # still waiting
    return queue


def test_loads_at_construction_and_groups_by_a_data_column(history, no_pyplot_figures):
    explorer = Explorer(history)
    try:
        assert "6 jobs" in explorer.message.value
        assert "data.kind" in explorer.by.options
        assert bytes(explorer.plot.value).startswith(PNG)
        explorer.by.value = "data.kind"
        explorer.refresh_button.click()
        table = explorer.table.value
        for kind in ("email", "resize", "later"):
            assert kind in table
        assert "wait" in table and "run" in table
    finally:
        explorer.close()


def test_status_filter_narrows(history, no_pyplot_figures):
    explorer = Explorer(history)
    try:
        explorer.by.value = "data.kind"
        explorer.status.value = ("failed",)
        explorer.refresh_button.click()
        assert len(explorer.frame) == 3
        assert set(explorer.frame["status"].astype(str)) == {"failed"}
        assert "resize" in explorer.table.value
        assert "email" not in explorer.table.value
        assert explorer.by.value == "data.kind"  # the choice survives a refresh
        explorer.status.value = ("done", "waiting")
        explorer.refresh_button.click()
        assert len(explorer.frame) == 3
        assert "resize" not in explorer.table.value
    finally:
        explorer.close()


def test_time_range_choices(history, no_pyplot_figures):
    explorer = Explorer(history)
    try:
        assert list(explorer.since.options) == ["last 15 min", "last hour", "last day", "all"]
        for since in explorer.since.options:
            explorer.since.value = since
            explorer.refresh_button.click()
            assert len(explorer.frame) == 6, since
    finally:
        explorer.close()


def test_works_on_a_frame_without_a_queue(history, no_pyplot_figures):
    frame = history.history()
    explorer = Explorer(frame=frame)
    try:
        assert explorer.queue is None
        assert explorer.since.value == "all"
        assert len(explorer.frame) == 6
        explorer.status.value = ("done",)
        explorer.by.value = "data.kind"
        explorer.refresh_button.click()
        assert list(explorer.frame["data.kind"]) == ["email", "email"]
        assert "email" in explorer.table.value and "resize" not in explorer.table.value
        assert bytes(explorer.plot.value).startswith(PNG)
        old = frame.assign(created=frame["created"] - __import__("pandas").Timedelta("2D"))
        explorer.close()
        explorer = Explorer(frame=old, since="last day")
        assert len(explorer.frame) == 0
        assert bytes(explorer.plot.value).startswith(PNG)  # "no jobs yet" panels, not an error
    finally:
        explorer.close()


def test_needs_exactly_one_source(queue):
    with pytest.raises(TypeError):
        Explorer()
    with pytest.raises(TypeError):
        Explorer(queue, frame=queue.history())


def test_empty_queue_shows_an_empty_summary(queue, no_pyplot_figures):
    explorer = Explorer(queue)
    try:
        assert "0 jobs" in explorer.message.value
        assert "wait" in explorer.table.value
        assert bytes(explorer.plot.value).startswith(PNG)
    finally:
        explorer.close()


def test_errors_show_inline(no_pyplot_figures):
    import pandas as pd

    explorer = Explorer(frame=pd.DataFrame({"x": [1]}))  # not a history frame
    try:
        message = html.unescape(explorer.message.value)
        assert "couldn't load the history" in message and "not a job history frame" in message
        assert explorer.table.value == ""
    finally:
        explorer.close()


def test_payloads_in_group_values_are_escaped(queue, no_pyplot_figures):
    queue.pub_many([{"kind": payload, payload: 1} for payload in XSS])
    explorer = Explorer(queue)
    try:
        explorer.by.value = "data.kind"
        explorer.refresh_button.click()
        assert "&lt;script&gt;" in explorer.table.value
        assert_escaped(explorer)
        for option in explorer.by.options:  # a payload key as a column name is offered as text
            explorer.by.value = option
            assert_escaped(explorer)
    finally:
        explorer.close()


def test_one_liners_on_the_queue_and_the_frame(history, no_pyplot_figures):
    from mjq_notebook.notebook.widgets import Dashboard, Publisher, Tail

    explorer = history.history().mjq.explore()
    try:
        assert isinstance(explorer, Explorer) and explorer.queue is None
        assert len(explorer.frame) == 6
    finally:
        explorer.close()
    made = [history.explore(), history.publisher(), history.tail(limit=5), history.dashboard()]
    try:
        assert [type(w) for w in made] == [Explorer, Publisher, Tail, Dashboard]
        assert made[0].queue is history and made[2].limit == 5
    finally:
        for widget in made:
            widget.close()
