"""A real MongoDB wire server for every test: SecantusDB on a free port, or
``MJQ_TEST_MONGODB_URI`` (a real mongod). Each test gets a database of its own. Only
fixtures live here; the helpers the tests share are in tests/support/."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
import uuid

import pytest

from mjq_notebook import JobQueue, embedded_server
from mjq_notebook.server import client_for, stop_server

from .support.servers import TEST_URI, force_polling, stop_servers
from .support.waiting import wait_for


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the groups marked here
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """For ``-n N --dist loadgroup`` (the README's test command), groups and their order.

    The tests of a module that shares a module-scoped fixture (a JupyterLab, a kernel, a fault
    server) run on one worker, which sets it up once; the soak is a group of its own. Each
    worker has its own server (the session fixtures) and temp folders. pyproject's
    ``--no-loadscope-reorder`` makes xdist hand the groups out in this order: those holding a
    ``serial`` test and serial tests first, then the soak (which waits for every serial test:
    ``alone_if_serial``), those with a browser test, the other groups, the single tests; a
    group keeps its tests' order.
    """
    for item in items:
        if item.get_closest_marker("soak"):
            item.add_marker(pytest.mark.xdist_group("soak"))
        elif any(
            definition.scope == "module"
            for definitions in item._fixtureinfo.name2fixturedefs.values()
            for definition in definitions
        ):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))

    def unit(item: pytest.Item) -> str:  # what xdist hands out whole
        group = item.get_closest_marker("xdist_group")
        return group.args[0] if group else item.nodeid

    def rank(item: pytest.Item) -> int:
        return next(
            rank
            for rank, holds in enumerate((_serial, _is_soak, _is_browser, _grouped, _any))
            if holds(item)
        )

    first: dict[str, int] = {}
    for item in items:
        first[unit(item)] = min(first.get(unit(item), 9), rank(item))
    items.sort(key=lambda item: first[unit(item)])  # stable: a module's tests keep their order


def _is(item: pytest.Item, marker: str) -> bool:
    return item.get_closest_marker(marker) is not None


def _serial(item: pytest.Item) -> bool:
    """A serial test, or a group holding one (a module's JupyterLab, say), goes first: the
    soak waits for them, and should wait seconds, not idle a worker for minutes. Their bounds
    are measured against a baseline taken beside them, so a JupyterLab starting elsewhere
    meanwhile (before the turnstile: module fixtures come first) doesn't break them."""
    return _is(item, "serial")


def _is_soak(item: pytest.Item) -> bool:
    return _is(item, "soak")


def _is_browser(item: pytest.Item) -> bool:
    return _is(item, "browser")


def _grouped(item: pytest.Item) -> bool:
    return _is(item, "xdist_group")


def _any(item: pytest.Item) -> bool:
    return True


SOAK_WAITS_S = 300  # at most, for the serial tests to be done


@pytest.fixture(autouse=True)
def grouped_by_xdist(request):
    """Fail a grouped test that xdist did not group: pytest 9.2 ignores how xdist names it
    "<id>@<group>" (pytest-xdist#1386), and each worker would set up its module's JupyterLab."""
    node = request.node
    xdist_groups = "PYTEST_XDIST_WORKER" in os.environ and request.config.getvalue("loadgroup")
    if xdist_groups and _grouped(node) and "@" not in node.nodeid:
        pytest.fail(
            "--dist loadgroup does not group this test with this pytest and pytest-xdist "
            "(pytest-xdist#1386); pyproject's dev extra pins pytest",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def alone_if_serial(request, tmp_path_factory):
    """A test marked ``serial`` (a latency bound a busy CPU would break) runs with no test of
    another xdist worker beside it: it takes the run's lock exclusive, every other test takes
    it shared. Waiting for it, the others stop at a turnstile, so it can't starve. The soak
    (minutes of heavy load) first waits for the serial tests of the run to be done, so that
    none of them waits minutes for it with every worker stopped at the turnstile."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        yield
        return
    shared = tmp_path_factory.getbasetemp().parent  # the run's, above each worker's own
    done = shared / "serial.done"
    done.mkdir(exist_ok=True)
    node = request.node
    # a serial test that names its latency-bound part (``alone``) runs the rest as any other
    serial = _is(node, "serial") and "alone" not in request.fixturenames
    if _is(node, "soak"):  # (a serial test's run marks it done: pytest_runtest_protocol)
        pending = {_done_name(item) for item in node.session.items if _is(item, "serial")}
        deadline = time.monotonic() + SOAK_WAITS_S
        while pending - set(os.listdir(done)) and time.monotonic() < deadline:
            time.sleep(0.5)
    with (
        open(shared / "serial.turnstile", "a") as turnstile,
        open(shared / "serial.lock", "a") as lock,
    ):
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(lock, fcntl.LOCK_EX if serial else fcntl.LOCK_SH)
        if not serial:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        node.stash[_LOCKS] = (turnstile, lock)
        yield


_LOCKS = pytest.StashKey[tuple]()


@pytest.fixture
def alone(request):
    """For a ``serial`` test whose latency bound is a part of it: ``with alone(): ...`` runs
    that part with no test of another xdist worker beside it, the rest (starting servers and
    browsers, screenshots) beside the others, so the whole run waits seconds, not the test."""

    @contextlib.contextmanager
    def block():
        locks = request.node.stash.get(_LOCKS, None)
        if locks is None:  # not under xdist: nothing runs beside it anyway
            yield
            return
        turnstile, lock = locks
        fcntl.flock(lock, fcntl.LOCK_UN)  # (first: another worker's block may wait on it)
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_SH)
            fcntl.flock(turnstile, fcntl.LOCK_UN)

    assert _is(request.node, "serial"), "alone() is for tests marked serial (the soak waits)"
    return block


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """A serial test, once run (passed, failed or skipped, even in a fixture), is done for
    the soak waiting on it (``alone_if_serial``)."""
    try:
        return (yield)
    finally:
        if _is(item, "serial") and "PYTEST_XDIST_WORKER" in os.environ:
            shared = item.config._tmp_path_factory.getbasetemp().parent  # type: ignore[attr-defined]
            (shared / "serial.done").mkdir(exist_ok=True)
            (shared / "serial.done" / _done_name(item)).touch()


def _done_name(item: pytest.Item) -> str:
    return hashlib.sha1(item.nodeid.encode()).hexdigest()


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path, monkeypatch):
    """The embedded server a test starts (in its processes too) keeps its data in the test's
    own ``.mjq-data``, never in the user's data folder; tests of that default find it under
    ``$XDG_DATA_HOME``, also the test's own."""
    folder = tmp_path / ".mjq-data"
    monkeypatch.setenv("MJQ_DATA_DIR", str(folder))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("MJQ_SERVER_IDLE_TIMEOUT", "120")  # a server left behind goes soon
    yield
    with contextlib.suppress(Exception):  # and one left running now is stopped cleanly
        stop_server(folder, timeout=20)


@pytest.fixture(scope="session")
def server_uri():
    if TEST_URI:
        yield TEST_URI
        return
    with embedded_server(":memory:") as server:
        yield server.uri


@pytest.fixture(scope="session")
def client(server_uri):
    client = client_for(server_uri)
    yield client
    client.close()


@pytest.fixture
def db(client):
    name = f"mjq_test_{uuid.uuid4().hex[:10]}"
    yield client[name]
    client.drop_database(name)


@pytest.fixture
def quiet_db():
    """A database on an embedded server of the test's own (on ``MJQ_TEST_MONGODB_URI``'s
    when set), for a latency bound: on the shared server, other tests' open cursors and
    change streams (SecantusDB wakes every waiting getMore on any write) weigh on it too."""
    with contextlib.ExitStack() as stack:
        uri = TEST_URI or stack.enter_context(embedded_server(":memory:")).uri
        client = client_for(uri)
        name = f"mjq_test_{uuid.uuid4().hex[:10]}"
        yield client[name]
        client.drop_database(name)
        client.close()


def pytest_configure(config):
    config.addinivalue_line("markers", "both_feeds: run with change streams and with polling")


def pytest_generate_tests(metafunc):
    """A test marked ``both_feeds`` runs twice: its queue followed as the server allows
    (change streams here), and with polling forced."""
    if metafunc.definition.get_closest_marker("both_feeds") and "feed" in metafunc.fixturenames:
        metafunc.parametrize("feed", ["auto", "polling"], indirect=True)


@pytest.fixture
def feed(request) -> str:
    """How ``queue`` is followed: "auto" (as the server allows), or "polling" (forced)."""
    return getattr(request, "param", "auto")


@pytest.fixture
def queue(db, feed, monkeypatch):
    q = JobQueue(db, lease=30, backoff=0.05)
    if feed == "polling":
        force_polling(monkeypatch, q)
    return q


@pytest.fixture
def other(server_uri, queue):
    """The same queue through a second client: another kernel, as far as a view can tell."""
    second = client_for(server_uri)
    yield JobQueue(second[queue.db.name], name=queue.name, lease=30, backoff=0.05)
    second.close()


@pytest.fixture
def tail(queue):
    """A live tail of ``queue`` with 20 rows."""
    from mjq_notebook.notebook.widgets import Tail

    tail = Tail(queue, limit=20)
    wait_for(lambda: tail.table.state == "live", 10, "the tail to go live")
    yield tail
    tail.close()


@pytest.fixture
def data(tmp_path):
    """The test's data folder (``$MJQ_DATA_DIR``, see own_data_dir); every server of it is
    gone after the test, stopped or else killed by pid."""
    folder = tmp_path / ".mjq-data"
    yield folder
    stop_servers(folder)
