"""The search box's ``group:`` terms (notebook/widgets/search.py): their read of the failures
stored without a fingerprint happens on the box's own thread, never on the kernel's, the
newest text wins, the group is read again while its query is in force (a new failure of it
shows in the tail), and ``close()`` leaves no thread behind."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from bson import ObjectId
from pymongo.errors import OperationFailure

from mjq_notebook.core import error_groups
from mjq_notebook.core.error_groups import key_fingerprint
from mjq_notebook.notebook.widgets import search
from mjq_notebook.notebook.widgets.search import QueryBox

from .support.waiting import mjq_threads, wait_for, within

EVENTUALLY = 10.0
THREAD = "mjq-query-groups"
MISSING = "user 7 not found in shard 0x0007"  # one group whatever the user and shard
FULL = "disk full on /dev/sda"


def group_of(message: str) -> str:
    """The group of a plain-string failure (as ``q.errors()`` and ``group:`` compute it)."""
    return key_fingerprint({"t": "Error", "m": message, "s": True}, "")["group"]


def as_pymjq(queue, message: str) -> ObjectId:
    """A failed job as pymjq writes it: its error a plain string, no fingerprint."""
    now = dt.datetime.now()
    doc = {"_id": ObjectId(), "status": "failed", "data": {"by": "pymjq"}, "error": message,
           "ts": {"created": now, "started": now, "done": now}}  # fmt: skip
    queue.collection.insert_one(doc)
    return doc["_id"]


def found(queue, match) -> set[ObjectId]:
    return {job.id for job in queue.find(match)}


class HeldRead:
    """``error_groups.pairs`` held until ``release()``: who read, and how often."""

    def __init__(self, monkeypatch) -> None:
        self.started, self.released = threading.Event(), threading.Event()
        self.threads: list[str] = []
        real = error_groups.pairs

        def pairs(queue):
            self.threads.append(threading.current_thread().name)
            self.started.set()
            assert self.released.wait(EVENTUALLY), "the read was never released"
            return real(queue)

        monkeypatch.setattr(error_groups, "pairs", pairs)

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def box(queue):
    box = QueryBox(queue)
    yield box
    box.close()


def test_typing_a_group_query_returns_before_the_read(queue, box, monkeypatch):
    missing, full = as_pymjq(queue, MISSING), as_pymjq(queue, FULL)
    read = HeldRead(monkeypatch)
    heard: list[dict] = []
    box.on_change(lambda: heard.append(box.filter))
    within(2, lambda: setattr(box, "value", f"group:{group_of(MISSING)[:6]}"), "typing")
    assert read.started.wait(5)  # the read began, on the box's thread, and is held
    assert read.threads == [THREAD]
    assert box.filter == {} and heard == []  # nothing yet: the read is under way
    read.release()
    wait_for(lambda: heard, EVENTUALLY, "the group's filter")
    assert found(queue, box.filter) == {missing} and full not in found(queue, box.filter)
    assert box.error.layout.display == "none"


def test_the_newest_text_wins_over_a_read_under_way(queue, box, monkeypatch):
    missing, full = as_pymjq(queue, MISSING), as_pymjq(queue, FULL)
    read = HeldRead(monkeypatch)
    heard: list[set] = []
    box.on_change(lambda: heard.append(found(queue, box.filter)))
    box.value = f"group:{group_of(MISSING)}"
    assert read.started.wait(5)
    box.value = f"group:{group_of(FULL)}"  # typed on while the first read is held
    read.release()
    wait_for(lambda: heard, EVENTUALLY, "a filter")
    assert heard == [{full}]  # the first text's result was dropped, never shown
    box.value = f"group:{group_of(MISSING)}"  # held again? no: one read serves a while
    wait_for(lambda: len(heard) == 2, EVENTUALLY, "the next filter")
    box.value = "status:done"  # no group: compiled at once, and the thread ends
    assert found(queue, box.filter) == set() and len(heard) == 3
    wait_for(lambda: THREAD not in mjq_threads(), EVENTUALLY, "the group thread to end")
    assert heard[1:] == [{missing}, set()] and found(queue, box.filter) == set()
    assert read.threads == [THREAD]


def test_a_query_typed_during_the_read_is_not_overwritten_by_it(queue, box, monkeypatch):
    as_pymjq(queue, MISSING)
    read = HeldRead(monkeypatch)
    box.value = f"group:{group_of(MISSING)}"
    assert read.started.wait(5)
    box.value = "status:waiting"
    read.release()
    wait_for(lambda: THREAD not in mjq_threads(), EVENTUALLY, "the read to end")
    assert box.filter == {"status": {"$in": ["waiting"]}}


def test_a_mistake_in_a_group_query_shows_at_once_without_a_read(queue, box, monkeypatch):
    read = HeldRead(monkeypatch)
    within(2, lambda: setattr(box, "value", "group:3fa9 stauts:failed"), "typing")
    assert "unknown field `stauts` at 12" in box.error.value  # at once, before any read
    assert box.error.layout.display is None
    assert not read.started.is_set() and THREAD not in mjq_threads()


def test_a_failed_read_shows_as_the_mistake_and_keeps_the_last_filter(queue, box, monkeypatch):
    box.value = "status:failed"
    good = box.filter

    def broken(queue):
        raise OperationFailure("no reading today")

    monkeypatch.setattr(error_groups, "pairs", broken)
    box.value = "group:3fa9"
    wait_for(lambda: "OperationFailure" in box.error.value, EVENTUALLY, "the failed read")
    assert box.filter == good


def test_a_new_failure_of_the_group_shows_in_the_tail_while_its_query_is_on(queue, monkeypatch):
    from mjq_notebook.notebook.widgets import Tail

    monkeypatch.setattr(search, "GROUPS_EVERY", 0.5)
    first = as_pymjq(queue, MISSING)
    tail = Tail(queue, limit=20)
    try:
        wait_for(lambda: tail.table.state == "live", EVENTUALLY, "the tail to go live")
        tail.search.value = f"group:{group_of(MISSING)}"
        wait_for(lambda: ids(tail) == [str(first)], EVENTUALLY, "the group's failure")
        # another user and shard: the same group, a message the filter does not name yet
        late = as_pymjq(queue, "user 812 not found in shard 0x0aa7")
        wait_for(lambda: ids(tail) == [str(late), str(first)], EVENTUALLY, "the new failure")
        tail.search.value = "status:done"  # no group: term: no more reads, the thread ends
        wait_for(lambda: THREAD not in mjq_threads(), EVENTUALLY, "the group thread to end")
        wait_for(lambda: ids(tail) == [], EVENTUALLY, "the rows of status:done (none)")
        tail.search.value = f"group:{group_of(MISSING)}"
        wait_for(lambda: len(ids(tail)) == 2, EVENTUALLY, "the group's failures again")
        assert THREAD in mjq_threads()
    finally:
        tail.close()
    assert THREAD not in mjq_threads()  # closed with its query on: no thread behind


def test_closing_leaves_no_group_thread_behind(queue, box):
    as_pymjq(queue, MISSING)
    box.value = f"group:{group_of(MISSING)}"
    wait_for(lambda: box.filter, EVENTUALLY, "the group's filter")
    assert THREAD in mjq_threads()  # kept current while its query is on
    box.close()
    assert THREAD not in mjq_threads()


def ids(tail) -> list[str]:
    return [row["id"] for row in tail.table.rows]


def test_a_mistake_typed_after_a_group_query_keeps_its_filter_current(queue, monkeypatch):
    monkeypatch.setattr(search, "GROUPS_EVERY", 0.3)
    first = as_pymjq(queue, MISSING)
    box = QueryBox(queue)
    try:
        box.value = f"group:{group_of(MISSING)}"
        wait_for(lambda: box.filter, EVENTUALLY, "the group's filter")
        assert found(queue, box.filter) == {first}
        box.value = f"group:{group_of(MISSING)} stauts:x"  # typing on: the group's filter stays
        late = as_pymjq(queue, "user 812 not found in shard 0x0aa7")
        wait_for(lambda: late in found(queue, box.filter), EVENTUALLY, "the new failure")
        assert "unknown field `stauts`" in box.error.value  # the text's mistake still shows
    finally:
        box.close()
    assert THREAD not in mjq_threads()
