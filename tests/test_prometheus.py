"""``mjq metrics``: every queue of a database as a Prometheus endpoint, run as a real process,
scraped over HTTP and parsed with prometheus_client's own parser; its credential asked before
any read, its Host header checked, its token shown nowhere."""

from __future__ import annotations

import datetime as dt
import http.client
import os
import re
import signal
import stat
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from bson import ObjectId
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from mjq_notebook import JobQueue, Worker
from mjq_notebook.cli.main import main
from mjq_notebook.core import metrics as rollups
from mjq_notebook.core.registry import workers_collection
from mjq_notebook.core.sketch import Sketch
from mjq_notebook.live.collector import BUCKETS

from .support.processes import run_mjq, start_mjq
from .support.servers import free_port
from .support.waiting import wait_for, within

FAMILIES = {
    "mjq_jobs": "gauge",
    "mjq_jobs_finished": "counter",
    "mjq_oldest_waiting_age_seconds": "gauge",
    "mjq_workers": "gauge",
    "mjq_paused": "gauge",
    "mjq_job_wait_seconds": "histogram",
    "mjq_job_run_seconds": "histogram",
}
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


class Metrics:
    """A running ``mjq metrics`` on ``db``, its token read from the file it names."""

    def __init__(self, server_uri, db, tmp_path, *extra, env=None):
        self.port = free_port()
        env = {"XDG_RUNTIME_DIR": str(tmp_path), "MJQ_METRICS_TOKEN": None, **(env or {})}
        self.process = start_mjq(
            "metrics", "--db", db.name, "--port", str(self.port), *extra, uri=server_uri, env=env
        )
        self.said = str(within(60, self.process.stdout.readline, "mjq metrics to start"))
        assert f"http://127.0.0.1:{self.port}/metrics" in self.said, self.said
        found = re.search(r"bearer token in (\S+),", self.said)
        self.token_file = Path(found.group(1)) if found else None
        self.token = self.token_file.read_text().strip() if self.token_file else None

    def get(self, token=None, host=None, path="/metrics", scheme="Bearer", accept=None):
        """(status, body) of a GET; ``token`` None sends no Authorization header."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {} if token is None else {"Authorization": f"{scheme} {token}"}
        headers.update({"Accept": accept} if accept else {})
        if host is not None:
            connection.putrequest("GET", path, skip_host=True)
            connection.putheader("Host", host)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders()
        else:
            connection.request("GET", path, headers=headers)
        try:
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def scrape(self, token=None, openmetrics=False):
        """The families of one scrape: {name: family}; in OpenMetrics, as Prometheus asks."""
        accept = OPENMETRICS if openmetrics else None
        status, body = self.get(token or self.token, accept=accept)
        assert status == 200, body
        parse = openmetrics_families if openmetrics else text_string_to_metric_families
        return {family.name: family for family in parse(body)}

    def stop(self, signum=signal.SIGTERM):
        """Send ``signum``; (exit code, seconds to exit, stdout, stderr)."""
        start = time.monotonic()
        self.process.send_signal(signum)
        out, err = self.process.communicate(timeout=20)
        return self.process.returncode, time.monotonic() - start, self.said + out, err

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=20)


@pytest.fixture
def metrics(server_uri, db, tmp_path):
    started = []

    def start(*extra, env=None):
        started.append(Metrics(server_uri, db, tmp_path, *extra, env=env))
        return started[-1]

    yield start
    for endpoint in started:
        endpoint.kill()


def values(families, name, **labels):
    """{labels-tuple: value} of the samples ``name`` (a family's sample name) matching
    ``labels``, keyed by the labels not given."""
    found = {}
    for family in families.values():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                rest = tuple(v for k, v in sorted(sample.labels.items()) if k not in labels)
                found[rest[0] if len(rest) == 1 else rest] = sample.value
    return found


def _lost_record(queue):
    """The registry record a worker killed an hour ago leaves: running, long silent."""
    an_hour_ago = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)
    workers_collection(queue).insert_one(
        {"_id": "gone:1:abcdef", "state": "running", "heartbeat": an_hour_ago,
         "started": an_hour_ago, "interval": 1.0, "queues": [queue.name]}
    )  # fmt: skip


def test_every_family_with_the_values_of_every_queue(db, metrics):
    emails, other = JobQueue(db, "emails", backoff=0.05), JobQueue(db, "other")
    emails.pub({"n": "fails"}, max_attempts=1)
    emails.fail(emails.next(), RuntimeError("boom"))
    emails.pub({"n": "done"})
    emails.done(emails.next())
    emails.cancel(emails.pub({"n": "cancelled"}))
    emails.pub_many([{"n": "runs"}, {"n": "waits"}])
    waits = emails.get(emails.jobs("waiting", 10, None)[0].id)
    assert Worker(other, lambda job: None, heartbeat=0.2).start(drain=True).join(10)  # stopped
    other.pause()
    _lost_record(emails)
    running, release = threading.Event(), threading.Event()

    def handler(job):
        running.set()
        release.wait(20)

    worker = Worker(emails, handler, heartbeat=0.5).start()
    try:
        assert running.wait(10)
        endpoint = metrics()
        before = dt.datetime.now(dt.timezone.utc)
        families = endpoint.scrape()
        after = dt.datetime.now(dt.timezone.utc)
        counts = {q.name: q.counts() for q in (emails, other)}
        states = {q.name: Counter(row["state"] for row in q.workers()) for q in (emails, other)}
    finally:
        release.set()
        worker.stop()
        worker.join(10)
    assert {name: family.type for name, family in families.items()} == FAMILIES
    openmetrics = endpoint.scrape(openmetrics=True)  # what Prometheus asks for first
    assert {name: family.type for name, family in openmetrics.items()} == FAMILIES
    for name in ("emails", "other"):
        assert values(families, "mjq_jobs", queue=name) == {
            status: float(n) for status, n in counts[name].items()
        }
        assert values(families, "mjq_workers", queue=name) == {
            state: float(states[name].get(state, 0))
            for state in ("running", "stopping", "stopped", "lost")
        }
    assert counts["emails"] == {"waiting": 1, "working": 1, "done": 1, "failed": 1,
                                "cancelled": 1, "lost": 0}  # fmt: skip
    assert values(families, "mjq_jobs_finished_total", queue="emails") == {
        "done": 1.0,
        "failed": 1.0,
        "cancelled": 1.0,
    }
    assert values(families, "mjq_jobs_finished_total", queue="other") == {
        "done": 0.0,
        "failed": 0.0,
        "cancelled": 0.0,
    }
    assert values(families, "mjq_workers", queue="emails")["lost"] == 1.0
    assert values(families, "mjq_workers", queue="emails")["running"] == 1.0
    assert values(families, "mjq_workers", queue="other")["stopped"] == 1.0
    assert values(families, "mjq_paused") == {"emails": 0.0, "other": 1.0}
    age = values(families, "mjq_oldest_waiting_age_seconds")
    created = waits["ts"]["created"]
    assert (before - created).total_seconds() - 0.01 <= age["emails"]
    assert age["emails"] <= (after - created).total_seconds() + 0.01
    assert age["other"] == 0.0


def totals(families, queue="emails"):
    return values(families, "mjq_jobs_finished_total", queue=queue)


def test_finished_totals_never_fall_when_jobs_are_retried_or_pruned(db, metrics):
    queue = JobQueue(db, "emails", backoff=0.05)
    ids = {}
    for outcome in ("done", "done", "failed", "failed"):
        ids[outcome] = queue.pub({"outcome": outcome}, max_attempts=1)
        job = queue.next()
        queue.done(job) if outcome == "done" else queue.fail(job, ValueError("no"))
    endpoint = metrics()
    assert totals(endpoint.scrape()) == {"done": 2.0, "failed": 2.0, "cancelled": 0.0}
    assert queue.retry(ids["failed"])  # out of history, waiting again: the total holds
    families = endpoint.scrape()
    assert values(families, "mjq_jobs", queue="emails")["failed"] == 1.0
    assert totals(families) == {"done": 2.0, "failed": 2.0, "cancelled": 0.0}
    queue.done(queue.next())  # the retried job, done this time
    assert totals(endpoint.scrape()) == {"done": 3.0, "failed": 2.0, "cancelled": 0.0}
    wait_for(lambda: queue.prune_history(0) == 0 and queue.counts()["done"] == 0, 10, "a prune")
    families = endpoint.scrape()
    assert values(families, "mjq_jobs", queue="emails")["done"] == 0.0  # gone from history
    assert totals(families) == {"done": 3.0, "failed": 2.0, "cancelled": 0.0}
    # a new endpoint knows only the database: the pruned jobs by outcome, counted as pruned
    assert totals(metrics().scrape()) == {"done": 3.0, "failed": 1.0, "cancelled": 0.0}


# (wait, run) seconds of jobs finished an hour or two ago: none within 1% of a bucket's bound
LATENCIES = [(0.02, 0.004), (0.3, 0.07), (4.0, 1.5), (40.0, 12.0), (700.0, 3000.0)]


def _finished_long_ago(queue, now):
    """History rows of LATENCIES, one a minute from two hours ago, as finishes write them."""
    rows = []
    for i, (wait, run) in enumerate(LATENCIES):
        done = now - dt.timedelta(hours=2) + dt.timedelta(minutes=i, seconds=30)
        started = done - dt.timedelta(seconds=run)
        created = started - dt.timedelta(seconds=wait)
        ts = {"created": created, "started": started, "done": done}
        rows.append({"_id": ObjectId(), "status": "done", "ts": ts, "data": {}, "attempts": 1})
    queue.history_collection.insert_many(rows)


def _histogram(families, kind, queue):
    name = f"mjq_job_{kind}_seconds"
    buckets = values(families, f"{name}_bucket", queue=queue)
    count = values(families, f"{name}_count", queue=queue)[()]
    total = values(families, f"{name}_sum", queue=queue)[()]
    return buckets, count, total


def _merged_rollups(queue, kind):
    now = dt.datetime.now(dt.timezone.utc)
    docs = rollups.read(queue, now - dt.timedelta(days=91), now + dt.timedelta(minutes=1))
    merged = Sketch()
    for doc in docs:
        merged.merge(Sketch.from_doc(doc.get(kind)))
    return merged


def test_the_histograms_are_the_rollups_merged_and_never_fall(db, metrics):
    queue = JobQueue(db, "emails")
    _finished_long_ago(queue, dt.datetime.now(dt.timezone.utc))
    assert queue.rebuild_metrics(since=dt.timedelta(hours=4)) > 0
    endpoint = metrics()
    families = endpoint.scrape()
    for kind, exact in (("wait", [w for w, _ in LATENCIES]), ("run", [r for _, r in LATENCIES])):
        buckets, count, total = _histogram(families, kind, "emails")
        merged = _merged_rollups(queue, kind)
        assert list(buckets) == [repr(b) for b in BUCKETS] + ["+Inf"]
        assert buckets == {
            **{repr(b): float(merged.count_at_most(b)) for b in BUCKETS},
            "+Inf": merged.count,
        }
        assert buckets == {  # and the exact values' (none near a bound)
            **{repr(b): float(sum(v <= b for v in exact)) for b in BUCKETS},
            "+Inf": len(exact),
        }
        assert count == len(exact) and total == pytest.approx(sum(exact))
    before = {kind: _histogram(families, kind, "emails") for kind in ("wait", "run")}
    # the rollups' TTL index removes minutes 90 days old: a counter must not fall for it
    assert rollups.collection(queue).delete_many({}).deleted_count > 0
    families = endpoint.scrape()
    assert {kind: _histogram(families, kind, "emails") for kind in ("wait", "run")} == before
    queue.pub({"n": "now"})  # a job finished now counts on top, once rolled
    queue.done(queue.next())
    rollups.roll(queue)  # as every worker does every 30 s
    families = endpoint.scrape()
    for kind in ("wait", "run"):
        buckets, count, total = _histogram(families, kind, "emails")
        fresh = _merged_rollups(queue, kind)
        assert fresh.count == 1 and count == len(LATENCIES) + 1
        assert total == pytest.approx(before[kind][2] + fresh.sum)
        assert buckets["+Inf"] == count
        for bound in BUCKETS:
            earlier = before[kind][0][repr(bound)]
            assert buckets[repr(bound)] == earlier + fresh.count_at_most(bound)


def _operations(client, db) -> int:
    """The server's count of operations on the collections of ``db`` so far (its ``top``
    command: per collection, whoever sent them): each scrape makes several."""
    top = client.admin.command("top")["totals"]
    prefix = f"{db.name}."
    return sum(row["total"]["count"] for name, row in top.items() if name.startswith(prefix))


def test_nothing_is_read_before_the_token_and_the_host_are_checked(db, client, metrics):
    """A command listener can't watch the endpoint's process from here, so the server's own
    count of operations on this test's database tells whether it read anything: none for any
    refused request, some for a scrape (so the count would show a read). Other tests' work,
    in other databases, doesn't count."""
    JobQueue(db, "emails").pub({"n": 1})
    endpoint = metrics()
    token = endpoint.token
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    before = _operations(client, db)
    refused = [
        endpoint.get(None),
        endpoint.get(wrong),
        endpoint.get(token + "x"),
        endpoint.get(token, scheme="Basic"),
        endpoint.get(token, scheme=""),
        endpoint.get(None, path="/"),
    ]
    assert [status for status, _ in refused] == [401] * 6
    foreign = [
        endpoint.get(token, host="attacker.example"),
        endpoint.get(token, host=f"attacker.example:{endpoint.port}"),
        endpoint.get(None, host="attacker.example"),
        endpoint.get(token, host=""),
    ]
    assert [status for status, _ in foreign] == [403] * 4
    assert all(token not in body for _, body in refused + foreign)
    assert _operations(client, db) == before, "a refused request read the database"
    assert endpoint.get(token, path="/")[0] == 404
    for host in (f"localhost:{endpoint.port}", f"127.0.0.1:{endpoint.port}", "localhost"):
        assert endpoint.get(token, host=host)[0] == 200
    assert _operations(client, db) > before  # the measure sees a scrape's reads


def test_the_token_is_in_a_file_of_the_users_own_and_nowhere_else(db, metrics):
    JobQueue(db, "emails")
    endpoint = metrics()
    token, path = endpoint.token, endpoint.token_file
    assert len(token) >= 32  # 192 bits, URL-safe base64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_uid == os.geteuid()
    argv = Path(f"/proc/{endpoint.process.pid}/cmdline").read_bytes()
    assert token.encode() not in argv
    assert endpoint.scrape()  # it is the token
    code, took, out, err = endpoint.stop()
    assert code == 0 and took < 5, (code, took, err)
    assert token not in out and token not in err
    assert str(path) in out
    assert not path.exists()  # gone with the endpoint


def test_a_given_token_from_the_environment_or_a_file(db, metrics, tmp_path):
    JobQueue(db, "emails")
    given = "a-token-of-the-owners-own-choosing-42"
    endpoint = metrics(env={"MJQ_METRICS_TOKEN": given})
    assert endpoint.token is None and "as given" in endpoint.said
    assert endpoint.scrape(given)
    assert given.encode() not in Path(f"/proc/{endpoint.process.pid}/cmdline").read_bytes()
    code, _, out, err = endpoint.stop(signal.SIGINT)  # Ctrl-C
    assert code == 0 and given not in out + err
    token_file = tmp_path / "token"
    token_file.write_text(given + "\n")
    endpoint = metrics("--token-file", str(token_file))
    assert endpoint.scrape(given)
    assert endpoint.get("not-" + given)[0] == 401


def test_a_token_is_refused_on_the_command_line_and_a_weak_one_anywhere(db, server_uri):
    JobQueue(db, "emails")
    secret = "a-secret-token-on-the-command-line"
    done = run_mjq("metrics", "--db", db.name, "--token", secret, uri=server_uri)
    assert done.returncode == 2 and "--token-file" in done.stderr
    assert secret not in done.stderr + done.stdout
    weak = run_mjq("metrics", "--db", db.name, uri=server_uri, env={"MJQ_METRICS_TOKEN": "short"})
    assert weak.returncode == 2 and "too short" in weak.stderr and "short\n" not in weak.stderr


def test_no_token_only_on_this_machines_loopback_and_said_loudly(db, server_uri, metrics):
    JobQueue(db, "emails")
    port = str(free_port())
    done = run_mjq("metrics", "--db", db.name, "--host", "0.0.0.0", "--port", port,
                   "--no-token", uri=server_uri)  # fmt: skip
    assert done.returncode == 2 and "--no-token: not with --host 0.0.0.0" in done.stderr
    endpoint = metrics("--no-token")
    assert endpoint.get(None)[0] == 200
    assert endpoint.get(None, host="attacker.example")[0] == 403  # the Host check stays
    code, _, _, err = endpoint.stop()
    assert code == 0 and "--no-token: anyone who can reach this port" in err


def test_without_prometheus_client_one_line_says_what_to_install(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "prometheus_client" else real(name, *a),
    )
    with pytest.raises(SystemExit) as stopped:
        main(["metrics"])
    assert str(stopped.value) == (
        "mjq metrics: needs prometheus_client, which is not installed: "
        "pip install 'mjq-notebook[metrics]'"
    )
