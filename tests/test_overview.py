"""``mjq_notebook.overview(db)``: every queue of a database live, a click opens its dashboard."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import pytest

import mjq_notebook
from mjq_notebook import JobQueue, embedded_server
from mjq_notebook.notebook.widgets.overview import FinishedRate, Overview, row_html, spark_svg
from mjq_notebook.server import client_for

from .support.servers import TEST_URI, free_port
from .support.waiting import mjq_threads, wait_for
from .support.xss import assert_escaped


@pytest.fixture
def overview(db):
    view = mjq_notebook.overview(db)
    yield view
    view.close()


def test_a_queue_created_after_the_overview_opened_shows_within_2s(db, overview):
    JobQueue(db, "first").pub({"n": 1})
    wait_for(lambda: "first" in overview.rows, 5, "the first queue")
    assert any(t.startswith("mjq-overview-") for t in mjq_threads())
    start = time.monotonic()
    JobQueue(db, "second").pub_many([{"n": i} for i in range(3)])
    wait_for(lambda: "second" in overview.rows, 2, "the queue created after it opened")
    assert time.monotonic() - start < 2.0
    wait_for(lambda: "waiting 3" in overview.rows["second"].counters.value, 2, "its counts")
    names = [row.children[0].description for row in overview.table.children]
    assert names == ["first", "second"]  # by name, one row each


def test_selecting_a_row_opens_that_queues_dashboard_and_switching_closes_the_old(db, overview):
    JobQueue(db, "alpha").pub({"kind": "a"})
    JobQueue(db, "beta").pub({"kind": "b"})
    wait_for(lambda: {"alpha", "beta"} <= set(overview.rows), 5, "both rows")
    overview.rows["beta"].button.click()  # what a click in the page does
    first = overview.dashboard
    assert first is not None and first.queue.name == "beta" and overview.selected == "beta"
    assert overview.detail.children == (first,)
    assert overview.rows["beta"].button.button_style == "info"
    assert "beta" in overview.detail_title.value
    overview.rows["alpha"].button.click()
    assert overview.dashboard.queue.name == "alpha"
    assert first._closed and overview.detail.children == (overview.dashboard,)
    assert overview.rows["beta"].button.button_style == ""
    overview.close_button.click()
    assert overview.dashboard is None and overview.detail.children == ()
    wait_for(lambda: not any(t.startswith("mjq-dashboard") for t in mjq_threads()), 5, "charts")


def test_opening_a_queue_at_once_and_closing_ends_every_thread(db):
    JobQueue(db, "jobs").pub({"n": 1})
    view = mjq_notebook.overview(db, queue="jobs")
    try:
        assert view.dashboard is not None and view.dashboard.queue.name == "jobs"
        wait_for(lambda: "jobs" in view.rows, 5, "the row")
        assert any(t.startswith("mjq-overview-") for t in mjq_threads())
    finally:
        view.close()
    wait_for(lambda: mjq_threads() == [], 5, "every mjq- thread to end")
    assert view.dashboard is None


def test_a_missing_queue_says_so_and_creates_nothing(db, overview):
    overview.select("nosuch")
    assert overview.dashboard is None and "open nosuch" in overview.detail_title.value
    assert "nosuch" not in db.list_collection_names()


def test_no_queues_says_how_to_make_one(overview):
    wait_for(lambda: "no queues yet" in overview.state.value, 5, "the empty state")
    assert "Overview" in repr(overview)


@pytest.mark.skipif(bool(TEST_URI), reason="restarts the embedded server; can't restart yours")
def test_reconnecting_while_the_server_is_away(tmp_path):
    """A real outage: the server stops, the rows stay (dimmed) under "reconnecting…", and
    when it is back on the same port the overview goes live again with no call of ours."""
    port, data = free_port(), tmp_path / "data"
    with embedded_server(data, port=port) as server:
        client = client_for(server.uri, timeout=1)
        JobQueue(client["outage"], "jobs").pub({"n": 1})
        view = Overview(client["outage"])
        wait_for(lambda: "jobs" in view.rows, 5, "the row")
    try:
        wait_for(lambda: "reconnecting…" in view.state.value, 20, "reconnecting")
        assert "://" not in view.state.value
        assert view.table.layout.opacity == "0.45" and "jobs" in view.rows  # kept, dimmed
        with embedded_server(data, port=port):
            wait_for(lambda: "reconnecting" not in view.state.value, 30, "live again")
            assert view.table.layout.opacity is None
            JobQueue(client_for(server.uri)["outage"], "later").pub({"n": 2})
            wait_for(lambda: "later" in view.rows, 5, "a queue made after the outage")
            view.close()
    finally:
        view.close()
        client.close()
    assert not any(t.startswith("mjq-overview") for t in mjq_threads())


def test_hostile_queue_names_are_escaped(db, overview):
    name = "<img src=x onerror=alert(1)>"
    JobQueue(db, name).pub({"n": 1})
    wait_for(lambda: name in overview.rows, 5, "the row")
    overview.select(name)
    assert_escaped(overview)
    assert overview.rows[name].button.description == name  # a button's label is text


def test_finished_rate_counts_the_difference_per_step():
    rate = FinishedRate(step=10, steps=6)
    rate.add({"done": 5}, now=100.0)  # the first read only sets the baseline
    assert list(rate.counts) == [0] * 6
    rate.add({"done": 7, "failed": 1}, now=103.0)
    rate.add({"done": 8, "failed": 1, "cancelled": 1}, now=125.0)
    assert list(rate.counts) == [0, 0, 0, 3, 0, 2]
    rate.add({"done": 1}, now=500.0)  # pruned counters, and a long gap: nothing negative
    assert list(rate.counts) == [0] * 6


def test_spark_and_row_html_are_well_formed():
    root = ET.fromstring(spark_svg([0, 1, 5, 2]))
    line = root.find("{http://www.w3.org/2000/svg}polyline")
    assert len(line.get("points").split()) == 4 and "peak 5" in ET.tostring(root, "unicode")
    html = row_html({"queue": "q", "waiting": 2, "done": 9, "paused": True, "workers": 1})
    assert "waiting 2" in html and "paused" in html and "workers: 1 running" in html
