"""Claims checked by what reaches the server: each test counts or orders the commands a
client sends (a pymongo command listener on a client made for the test), not calls to a
private method, so it fails whatever way the feature breaks."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from pymongo import monitoring

from mjq_notebook import JobQueue
from mjq_notebook.server import client_for

from .support.servers import force_polling
from .support.waiting import wait_for


class _Commands(monitoring.CommandListener):
    """Every command a client sends: (monotonic time, name, command), in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[float, str, dict]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append((time.monotonic(), event.command_name, event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def written(self) -> list[str]:
        """The collections written, one entry per write in the order sent (a client
        bulkWrite's operations each name theirs)."""
        names = []
        for _, name, command in list(self.sent):
            if name in ("insert", "update", "delete", "findAndModify"):
                names.append(command[name])
            elif name == "bulkWrite":
                spaces = [info["ns"].split(".", 1)[1] for info in command["nsInfo"]]
                for op in command["ops"]:
                    kind = next(k for k in ("insert", "update", "delete") if k in op)
                    names.append(spaces[op[kind]])
        return names


@pytest.fixture
def commands(server_uri, db):
    """A listener, and the test's database through a client that reports to it."""
    listener = _Commands()
    client = client_for(server_uri, event_listeners=[listener])
    yield listener, client[db.name]
    client.close()


def test_a_thousand_progress_calls_in_a_second_send_a_handful_of_updates(commands):
    from mjq_notebook.core.parts.progress import EVERY_S

    listener, db = commands
    q = JobQueue(db)
    q.pub({"n": 1})
    job = q.next()
    listener.sent.clear()
    start = time.monotonic()
    for n in range(1, 1001):
        job.progress(n, 1000)
        time.sleep(0.001)
    took = time.monotonic() - start
    wait_for(lambda: (q.get(job.id).get("progress") or {}).get("done") == 1000, 3, "the last")
    updates = [c for _, name, c in listener.sent if name != "find" and "progress" in str(c)]
    # one at once, then one each time a second is up (the newest value held)
    assert 1 <= len(updates) <= 2 + took / EVERY_S, f"{len(updates)} writes in {took:.1f} s"
    q.done(job)


@pytest.mark.parametrize("together", [False, True], ids=["one by one", "one bulkWrite"])
@pytest.mark.parametrize("outcome", ["done", "failed"])
def test_a_finish_writes_history_before_the_ring(commands, together, outcome):
    """So a crash between the two leaves the job findable (in history), never in neither."""
    listener, db = commands
    q = JobQueue(db, max_attempts=1)
    if together and not q._fuse:
        pytest.skip("the server predates MongoDB 8.0's client bulkWrite")
    q._fuse = together
    q._sweeper.next_at = float("inf")  # no sweep: only the finish's own writes
    q.pub({"n": 1})
    job = q.next()
    listener.sent.clear()
    if outcome == "done":
        q.done(job)
    else:
        q.fail(job, RuntimeError("no"))
    written = [name for name in listener.written() if name in (q.name, f"{q.name}.history")]
    assert written == [f"{q.name}.history", q.name], written
    assert q.get(job.id)["status"] == outcome


@pytest.mark.parametrize("polling", [False, True], ids=["change stream", "polling"])
def test_the_newest_jobs_are_read_at_most_4_times_a_second_however_many_change(
    commands, db, monkeypatch, polling
):
    """The watcher re-reads the newest jobs (a find on history, newest first, no filter) at
    most every REFRESH_S, counted at the server over 6 s of 50 publishes a second. The
    interval is stretched to 1 s while counting, so a refresh that waited for nothing fails
    by a wide margin even on a slow server; the constant itself is 0.25 (4 a second)."""
    from mjq_notebook.live import watch
    from mjq_notebook.notebook.widgets import Tail

    assert watch.REFRESH_S == 0.25  # the README's "at most 4 times a second"
    listener, watched = commands
    q = JobQueue(watched)
    if polling:
        force_polling(monkeypatch, q)
    publisher = JobQueue(db)  # through the test's other client: not counted
    stretched = 1.0
    monkeypatch.setattr(watch, "REFRESH_S", stretched)
    monkeypatch.setitem(watch._EVERY, "jobs", stretched)
    tail = Tail(q, limit=20)
    stop = threading.Event()

    def publish() -> None:
        while not stop.wait(0.02):
            publisher.pub({"n": 1})

    thread = threading.Thread(target=publish)
    try:
        wait_for(lambda: tail.table.state == "live", 10, "the tail to go live")
        thread.start()
        start = time.monotonic()
        time.sleep(6)
        window = time.monotonic() - start
        stop.set()
        thread.join(5)
    finally:
        stop.set()
        tail.close()
    history = f"{q.name}.history"
    reads = [
        at
        for at, name, command in listener.sent
        if name == "find" and command["find"] == history and not command.get("filter")
        and start <= at <= start + window
    ]  # fmt: skip
    gaps = [b - a for a, b in itertools.pairwise(reads)]
    assert 3 <= len(reads) <= window / stretched + 2, f"{len(reads)} reads in {window:.1f} s"
    assert min(gaps) >= 0.7 * stretched, gaps  # reads come a refresh apart
