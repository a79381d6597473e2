"""No server answering: every public call raises ServerUnavailable (never a raw pymongo error),
quickly, naming the server without a password and saying what to do; displays say
"unavailable" within ~2 s. Outages ridden out by workers are in test_concurrency.py."""

from __future__ import annotations

import time

import pymongo
import pytest
from pymongo import MongoClient
from pymongo.errors import PyMongoError

import mjq_notebook.analysis.history
import mjq_notebook.analysis.stats
from mjq_notebook import JobQueue, ServerUnavailable, embedded_server
from mjq_notebook.core.outage import DISPLAY_TIMEOUT_S, server_unavailable
from mjq_notebook.errors import JobQueueError
from mjq_notebook.server import client_for

from .support.servers import TEST_URI, free_port

pytestmark = pytest.mark.skipif(
    bool(TEST_URI), reason="stops the embedded server; can't stop yours"
)

CLIENT_TIMEOUT_S = 1.0  # serverSelectionTimeoutMS of the test clients
# A call may select a server twice (a retryable read whose pooled connection died), and
# the CI machines are shared: allow half a second more than that.
CALL_BOUND_S = 2 * CLIENT_TIMEOUT_S + 0.5
DISPLAY_BOUND_S = DISPLAY_TIMEOUT_S + 0.5
ADVICE = ("mjq serve", "MJQ_MONGODB_URI")

# Every public JobQueue method that talks to the server, called as a user would.
CALLS = {
    "pub": lambda q, job: q.pub({"n": 1}),
    "pub_many": lambda q, job: q.pub_many([{"n": 1}, {"n": 2}]),
    "next": lambda q, job: q.next(),
    "next(timeout=1)": lambda q, job: q.next(timeout=1),
    "claim": lambda q, job: q.claim().__enter__(),
    "done": lambda q, job: q.done(job, "result"),
    "fail": lambda q, job: q.fail(job, "boom"),
    "release": lambda q, job: q.release(job),
    "touch": lambda q, job: q.touch(job),
    "retry": lambda q, job: q.retry(job.id),
    "retry_failed": lambda q, job: q.retry_failed({"data.n": 1}),
    "retry_all": lambda q, job: q.retry_all("data.n:1"),
    "cancel_all": lambda q, job: q.cancel_all({"data.n": 1}),
    "promote_all": lambda q, job: q.promote_all("data.n:1"),
    "count_matches": lambda q, job: q.count_matches("data.n:1", "cancel"),
    "queue_count": lambda q, job: q.queue_count(),
    "counts": lambda q, job: q.counts(),
    "jobs": lambda q, job: q.jobs(status="waiting", limit=5),
    "get": lambda q, job: q.get(job.id),
    "clear_queue": lambda q, job: q.clear_queue(),
    "valid": lambda q, job: q.valid(),
    "limits": lambda q, job: q.limits(),
    "resize": lambda q, job: q.resize(max_jobs=200_000),
    "history": lambda q, job: q.history(since="1h"),
    "stats": lambda q, job: q.stats(by="status"),
    "audit": lambda q, job: q.audit(),
    # the functions behind them (imported up front: pandas' import time is not the server's)
    "history.load": lambda q, job: mjq_notebook.analysis.history.load(q),
    "server_stats.stats": lambda q, job: mjq_notebook.analysis.stats.stats(q),
}


def _close(client: MongoClient) -> None:
    """Close without waiting the client's server selection time-out to end its sessions."""
    with pymongo.timeout(0.2):
        client.close()


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """A queue and a claimed job of it, then the server stopped: (queue, job, "host:port").
    Nothing can change while no server runs, so the tests share it."""
    port = free_port()
    data = tmp_path_factory.mktemp("stopped") / "data"
    with embedded_server(str(data), port=port) as server:
        client = client_for(server.uri, timeout=CLIENT_TIMEOUT_S)
        q = JobQueue(client["unavailable"], lease=30)
        q.pub_many([{"n": 1}, {"n": 2}])
        job = q.next()
        repr(q), q._repr_html_()  # the displays work while it runs
    yield q, job, f"127.0.0.1:{port}"
    _close(client)


def _assert_unavailable(call, where: str) -> ServerUnavailable:
    start = time.monotonic()
    with pytest.raises(ServerUnavailable) as info:
        call()
    elapsed = time.monotonic() - start
    assert elapsed < CALL_BOUND_S, f"took {elapsed:.1f}s"
    error = info.value
    assert not isinstance(error, PyMongoError)
    assert isinstance(error, JobQueueError) and isinstance(error, ConnectionError)
    message = str(error)
    assert where in message, message
    assert all(hint in message for hint in ADVICE), message
    assert len(message) < 300, message
    return error


@pytest.mark.parametrize("name", list(CALLS))
def test_every_public_method_raises_server_unavailable_quickly(stopped, name):
    q, job, where = stopped
    _assert_unavailable(lambda: CALLS[name](q, job), where)


def test_the_traceback_is_short_and_the_cause_kept(stopped):
    q, _, where = stopped
    error = _assert_unavailable(q.counts, where)
    assert error.__suppress_context__ and error.__cause__ is None
    assert isinstance(error.__context__, PyMongoError)  # for whoever debugs it
    frames = 0
    tb = error.__traceback__
    while tb is not None:
        frames, tb = frames + 1, tb.tb_next
    assert frames <= 3, frames  # this test's call, the decorator: not pymongo's internals


def test_constructing_a_queue_names_the_server_but_not_the_password():
    port = free_port()  # nothing listens here
    uri = f"mongodb://bob:secret@127.0.0.1:{port}/?retryWrites=false"
    client = MongoClient(uri, serverSelectionTimeoutMS=int(CLIENT_TIMEOUT_S * 1000))
    try:
        error = _assert_unavailable(lambda: JobQueue(client["db"]), f"127.0.0.1:{port}")
        assert "secret" not in str(error) and "bob" not in str(error)
    finally:
        client.close()


def test_displays_say_unavailable_quickly(tmp_path):
    # connect()'s clients wait 5 s for a server; the displays must not.
    with embedded_server(str(tmp_path / "data")) as server:
        client = client_for(server.uri, timeout=5)
        q = JobQueue(client["displays"])
        q.pub({"n": 1})
        port = server.port
    try:
        start = time.monotonic()
        text = repr(q)
        assert time.monotonic() - start < DISPLAY_BOUND_S
        assert "unavailable" in text and "ServerUnavailable" in text, text

        start = time.monotonic()
        page = q._repr_html_()
        assert time.monotonic() - start < DISPLAY_BOUND_S
        assert "unavailable (ServerUnavailable)" in page, page
        assert "mjq serve" in page and "Connection refused" in page
        assert str(port) not in page  # a saved notebook travels: no address in a display
        assert "Topology" not in page  # pymongo's long message stays out
    finally:
        _close(client)


def test_messages_built_for_a_client_with_a_password_leave_it_out():
    port = free_port()  # nothing listens here
    uri = f"mongodb://bob:s3cret@127.0.0.1:{port},localhost:{port}/?replicaSet=rs"
    client = MongoClient(uri, serverSelectionTimeoutMS=200)
    try:
        with pytest.raises(PyMongoError) as info:
            client.db.command("ping")
        for owner in (client, client.db, client.db.jobs):
            message = str(server_unavailable(info.value, owner))
            assert "s3cret" not in message and "bob" not in message, message
            assert f" at 127.0.0.1:{port},localhost:{port} (" in message, message
            assert "://" not in message, message
        # not knowing the server is no reason to fail
        assert "MJQ_MONGODB_URI" in str(server_unavailable(info.value, object()))
    finally:
        client.close()


def test_a_server_that_comes_back_is_used_again(tmp_path):
    port, data = free_port(), tmp_path / "data"
    with embedded_server(str(data), port=port) as server:
        client = client_for(server.uri, timeout=CLIENT_TIMEOUT_S)
        q = JobQueue(client["back"])
        first = q.pub({"n": 1})
    with pytest.raises(ServerUnavailable):
        q.pub({"n": 2})
    with embedded_server(str(data), port=port):
        second = q.pub({"n": 3})
        assert [q.next().id, q.next().id] == [first, second]
        client.close()
