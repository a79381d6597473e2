"""The search box (notebook/widgets/search.py) in the tail: a query narrows the rows, live; a
mistake shows its message and keeps the last good rows; completion offers fields, statuses
and the data paths of recent jobs; the answer shows within 0.5 s of typing."""

from __future__ import annotations

import threading
import time

import pytest

from .support.waiting import mjq_threads, wait_for

EVENTUALLY = 5.0


def _customers(tail):
    return [row["id"] for row in tail.table.rows]


def test_a_query_narrows_the_rows_and_a_mistake_keeps_them(tail, queue):
    ids = queue.pub_many([{"customer": n, "plan": "pro" if n % 2 else "free"} for n in range(5)])
    wait_for(lambda: len(tail.table.rows) == 5, EVENTUALLY, "five rows")
    tail.search.value = "data.customer:>2"
    want = [str(ids[4]), str(ids[3])]
    wait_for(lambda: _customers(tail) == want, EVENTUALLY, "customers 4 and 3")
    assert tail.query_box.error.layout.display == "none"
    tail.search.value = "stauts:waiting data.plan:pro"
    wait_for(lambda: "did you mean" in tail.query_box.error.value, EVENTUALLY, "the message")
    assert "unknown field `stauts` at 1; did you mean `status`?" in tail.query_box.error.value
    assert tail.query_box.error.layout.display is None
    late = queue.pub({"customer": 9})  # the last good query still runs, live
    wait_for(lambda: _customers(tail) == [str(late), *want], EVENTUALLY, "the late one")
    tail.search.value = "-data.plan:free"  # negated: plan pro or no plan
    wait_for(
        lambda: _customers(tail) == [str(late), str(ids[3]), str(ids[1])], EVENTUALLY, "not free"
    )
    assert tail.query_box.error.value == "" and tail.query_box.error.layout.display == "none"


def test_completion_offers_fields_statuses_and_recent_data_paths(tail, queue):
    queue.pub_many([{"customer": {"id": 1, "plan": "pro"}, "kind": "x"}] * 3)
    box = tail.query_box
    tail.search.value = "sta"
    assert "status:" in box.text.options
    tail.search.value = "-status:failed,wa"
    assert list(box.text.options) == ["-status:failed,waiting"]
    tail.search.value = "error:x data.cus"

    def offered():
        tail.search.value = (
            "error:x data.cu" if tail.search.value.endswith("s") else "error:x data.cus"
        )
        return "error:x data.customer.plan:" in box.text.options

    wait_for(offered, EVENTUALLY, "the data paths of recent jobs")
    assert "error:x data.customer.id:" in box.text.options
    assert "error:x data.kind:" not in box.text.options  # does not start with what was typed


@pytest.mark.serial
def test_the_answer_shows_within_half_a_second_of_typing(tail, queue):
    ids = queue.pub_many([{"customer": n} for n in range(40)])
    wait_for(lambda: len(tail.table.rows) == 20, EVENTUALLY, "the rows")
    took = []
    for n in (7, 31, 12):
        start = time.monotonic()
        tail.search.value = f"data.customer:{n}"
        wait_for(lambda n=n: _customers(tail) == [str(ids[n])], EVENTUALLY, f"customer {n}")
        took.append(time.monotonic() - start)
    print("search answers in", [f"{t * 1000:.0f} ms" for t in took])
    assert max(took) < 0.5, took


def test_recent_paths_are_read_once_in_a_burst_of_typing(tail, monkeypatch):
    from mjq_notebook.notebook.widgets.search import QueryBox

    reads = []
    read = QueryBox._read_paths
    monkeypatch.setattr(QueryBox, "_read_paths", lambda box: (reads.append(1), read(box)))
    for n in range(30):  # thirty keystrokes within a second or two
        tail.search.value = "data.c" + "u" * n
    assert len(reads) == 1


def test_closing_waits_for_a_read_of_the_recent_paths_under_way(queue, monkeypatch):
    """A box closed while its thread reads the recent jobs' paths leaves no thread behind."""
    from mjq_notebook.notebook.widgets.search import QueryBox

    reading = threading.Event()
    jobs = queue.jobs

    def slow_jobs(**kwargs):
        reading.set()
        time.sleep(0.5)
        return jobs(**kwargs)

    monkeypatch.setattr(queue, "jobs", slow_jobs)
    box = QueryBox(queue)
    box.value = "data."
    assert reading.wait(5)
    box.close()
    assert "mjq-query-paths" not in mjq_threads()
