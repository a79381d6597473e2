"""The mjq command, run as users run it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from mjq_notebook import Empty, JobQueue
from mjq_notebook.server import client_for, embedded_client

from .support.processes import HANDLERS_DIR, MjqTail
from .support.processes import run_mjq as mjq
from .support.servers import free_port
from .support.waiting import wait_for


def test_pub_json_and_jsonl_file(db, server_uri, tmp_path):
    one = mjq("pub", '{"message": "hi"}', "--db", db.name, "--priority", "3", uri=server_uri)
    assert one.returncode == 0, one.stderr
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"n": 1}\n\n{"n": 2}\n')
    many = mjq("pub", "--file", str(jobs), "--db", db.name, uri=server_uri)
    assert many.returncode == 0, many.stderr
    assert len(many.stdout.split()) == 2
    q = JobQueue(db)
    assert q.queue_count() == 3
    assert q.next(timeout=0).data == {"message": "hi"}  # priority 3 first


def test_pub_bad_json_publishes_nothing(db, server_uri, tmp_path):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"n": 1}\n{"n": \n')
    result = mjq("pub", "--file", str(jobs), "--db", db.name, uri=server_uri)
    assert result.returncode == 2 and "nothing was published" in result.stderr
    assert db.list_collection_names() == []


def _stats_tables(stdout: str) -> tuple[list[list[str]], list[list[str]]]:
    """``mjq stats``' two tables (headings first), each line split into its cells."""
    jobs, times = stdout.split("\n\n")
    return [line.split() for line in jobs.splitlines()[1:]], [
        line.split() for line in times.splitlines()[1:]
    ]


def test_stats_rows_add_up_and_say_each_thing_once(db, server_uri):
    q = JobQueue(db, backoff=0.01)
    kinds = ("email", "email", "email", "report", "report")
    q.pub_many([{"kind": kind} for kind in kinds], max_attempts=1)
    q.done(q.next())  # an email done
    q.fail(q.next(), "no")  # an email failed for good
    q.cancel(q.jobs(status="waiting", limit=5)[-1])  # the last email: cancelled, never ran
    q.next()  # a report working; the other waits
    result = mjq("stats", "--by", "data.kind", "--since", "1h", "--db", db.name, uri=server_uri)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("jobs by data.kind:\n")
    jobs, times = _stats_tables(result.stdout)
    heading, *rows = jobs
    assert heading == ["data.kind", "total", "waiting", "working", "done", "failed",
                       "cancelled", "failure_rate"]  # fmt: skip
    counts = {row[0]: dict(zip(heading[1:], row[1:], strict=True)) for row in rows}
    assert counts["email"] == {"total": "3", "waiting": "0", "working": "0", "done": "1",
                               "failed": "1", "cancelled": "1",
                               "failure_rate": "0.500"}  # fmt: skip
    assert counts["report"]["total"] == "2" and counts["report"]["failure_rate"] == "—"
    for row in counts.values():  # each row adds up to its total
        assert sum(int(row[s]) for s in heading[2:-1]) == int(row["total"])
    heading, *rows = times
    assert heading == ["data.kind", "stage", "count", "mean", "p50", "p90", "p99", "max"]
    timed = {(row[0], row[1]): int(row[2]) for row in rows}
    # the cancelled email never ran: in no time's count; the failed one ran
    assert timed[("email", "wait_s")] == timed[("email", "run_s")] == 2
    assert timed[("email", "total_s")] == 2
    assert timed[("report", "wait_s")] == 1 and timed[("report", "run_s")] == 0
    help_text = mjq("stats", "--help").stdout
    assert "failure_rate" in help_text and "add up to total" in " ".join(help_text.split())


def test_demo_publishes_works_and_summarises(db, server_uri):
    result = mjq("demo", "--jobs", "40", "--db", db.name, uri=server_uri, timeout=240)
    assert result.returncode == 0, result.stderr
    table = result.stdout.split("jobs by data.kind:\n")[1].split("\n\n")[0].splitlines()
    heading, *rows = [line.split() for line in table]
    assert heading[2:4] == ["waiting", "working"] and rows
    assert all(row[2:4] == ["0", "0"] for row in rows)  # every job finished
    counts = JobQueue(db, "demo").counts()
    assert counts["done"] + counts["failed"] == 40
    assert "p99" in result.stdout and "run_s" in result.stdout
    for kind in ("thumbnail", "email", "report"):  # the per-kind breakdown
        assert kind in result.stdout


def test_tail_shows_new_jobs_and_status_changes(db, server_uri):
    q = JobQueue(db)
    marker = q.pub({"before": "the tail"})  # its line says the tail has read the queue
    tail = MjqTail(server_uri, db, "--duration", "60")
    try:
        wait_for(lambda: tail.printed(str(marker), "waiting"), 60, "the tail to read the queue")
        job_id = q.pub({"greeting": "<hello>"})
        wait_for(lambda: tail.printed(str(job_id), "waiting", '"<hello>"'), 10, "the new job")
        q.done(q.next(timeout=0))  # the marker (older)
        q.done(q.next(timeout=0))
        wait_for(lambda: tail.printed(str(job_id), "-> done"), 10, "the job done")
    finally:
        code, errors = tail.stop()
    assert code == 130, errors


CONNECTION, ONE_QUEUE = {"--uri", "--db"}, {"--uri", "--db", "--queue"}
OPTIONS = {  # what each command's --help lists, of --uri, --db and --queue
    "serve": set(),
    "queues": CONNECTION,
    **dict.fromkeys(
        ["pub", "work", "workers", "pause", "resume", "prune", "tail", "stats", "demo"], ONE_QUEUE
    ),
}


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_each_command_lists_only_the_options_it_uses(command):
    result = subprocess.run(
        [sys.executable, "-m", "mjq_notebook.cli", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    listed = {option for option in ONE_QUEUE if f"{option} " in result.stdout}
    assert listed == OPTIONS[command]


def test_serve_runs_in_the_foreground_and_is_found_by_other_commands(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("MJQ_MONGODB_URI", "MONGODB_URI")}
    serve = subprocess.Popen(
        [sys.executable, "-m", "mjq_notebook.cli", "serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = serve.stdout.readline()
        address = first.split(" at ")[1].strip()
        assert client_for(address).admin.command("ping")["ok"] == 1
        client = embedded_client()  # finds that server and its login in the data folder
        assert client.address == client_for(address).address
        # no URI given: the other command finds the running server and logs in
        pub = subprocess.run(
            [sys.executable, "-m", "mjq_notebook.cli", "pub", json.dumps({})],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert pub.returncode == 0, pub.stderr
        assert JobQueue(client["job_queue"]).queue_count() == 1
    finally:
        serve.send_signal(signal.SIGINT)
        serve.wait(30)
    assert serve.returncode == 0
    assert not (tmp_path / ".mjq-data" / "mjq-server.uri").exists()


def test_workers_prints_the_registry(db, server_uri):
    from mjq_notebook import Worker

    q = JobQueue(db)
    result = mjq("workers", "--db", db.name, uri=server_uri)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no workers"
    started, proceed = threading.Event(), threading.Event()

    def handler(job):
        started.set()
        proceed.wait(30)

    job_id = q.pub({})
    worker = Worker(q, handler, heartbeat=0.5, name="reports\x1b[31m").start()
    try:
        assert started.wait(10)
        wait_for(lambda: q.workers()[0]["running"], 5, "the running job registered")
        result = mjq("workers", "--db", db.name, uri=server_uri)
    finally:
        proceed.set()
        worker.stop()
        assert worker.join(timeout=30)
    assert result.returncode == 0, result.stderr
    header, line = result.stdout.splitlines()
    assert header.split() == [
        "state", "worker", "host:pid", "job", "done", "failed", "busy", "heartbeat",
    ]  # fmt: skip
    assert line.startswith("running ") and " reports?[31m " in line  # no escape codes
    assert f":{os.getpid()} " in line and str(job_id) in line and "ago" in line
    result = mjq("workers", "--db", db.name, uri=server_uri)
    stopped = result.stdout.splitlines()[1]
    assert stopped.startswith("stopped ") and f" last ran {job_id} " in stopped


def test_work_takes_from_several_queues_in_order(db, server_uri, tmp_path):
    urgent, bulk = JobQueue(db, "urgent"), JobQueue(db, "bulk")
    ids = {"bulk": bulk.pub_many([{"n": n} for n in range(3)])}  # older, yet second in line
    ids["urgent"] = urgent.pub_many([{"n": n} for n in range(3)])
    log = tmp_path / "ran.log"
    env = {**os.environ, "MJQ_MONGODB_URI": server_uri, "MJQ_TEST_LOG": str(log)}
    args = ["work", "handlers:record", "--db", db.name, "--queue", "urgent", "--queue", "bulk"]
    result = subprocess.run(
        [sys.executable, "-m", "mjq_notebook.cli", *args, "--drain"],
        cwd=HANDLERS_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"working {db.name}.urgent, {db.name}.bulk as " in result.stdout
    ran = [line.split()[0] for line in log.read_text().splitlines()]
    assert ran == [str(i) for i in ids["urgent"] + ids["bulk"]]
    for queue in (urgent, bulk):  # one worker, in each queue's registry
        [row] = queue.workers()
        assert row["queues"] == ["urgent", "bulk"] and row["state"] == "stopped"
        assert row["done"] == 3


def test_pause_resume_and_prune_from_the_terminal(db, server_uri):
    q = JobQueue(db)
    q.pub({"n": 1})
    paused = mjq("pause", "--db", db.name, uri=server_uri)
    assert paused.returncode == 0 and "paused" in paused.stdout, paused.stderr
    assert q.paused
    with pytest.raises(Empty, match="paused"):
        q.next()
    resumed = mjq("resume", "--db", db.name, uri=server_uri)
    assert resumed.returncode == 0 and "resumed" in resumed.stdout, resumed.stderr
    q.done(q.next(timeout=5))
    kept = mjq("prune", "--older-than", "30d", "--db", db.name, uri=server_uri)
    assert kept.returncode == 0 and "pruned 0 job(s)" in kept.stdout, kept.stderr
    gone = mjq("prune", "--older-than", "0", "--db", db.name, uri=server_uri)
    assert "pruned 1 job(s)" in gone.stdout, gone.stderr
    bad = mjq("prune", "--older-than", "soon", "--db", db.name, uri=server_uri)
    assert bad.returncode == 2 and "not an age: 'soon'" in bad.stderr
    assert q.counts()["lost"] == 0


# -- a finished tool: nothing created by reading, one-line errors, quiet pipes --------------


def test_reading_commands_create_nothing_and_name_the_queues(db, server_uri):
    JobQueue(db, "emails").pub({"to": "ada"})
    JobQueue(db, "reports")
    db.users.insert_one({"name": "ada"})
    before = sorted(db.list_collection_names())
    listed = mjq("queues", "--db", db.name, uri=server_uri)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:3] == ["queue", "waiting", "working"]
    assert [row.split()[:2] for row in rows] == [["emails", "1"], ["reports", "0"]]
    for command in (
        ["stats"], ["tail", "--duration", "1"], ["workers"], ["pause"], ["resume"],
        ["prune", "--older-than", "1d"],
    ):  # fmt: skip
        result = mjq(*command, "--queue", "nosuch", "--db", db.name, uri=server_uri)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        assert result.stderr.splitlines() == [
            f"mjq: no queue 'nosuch' in database {db.name}; its queues: emails, reports"
        ], command
    result = mjq("stats", "--queue", "users", "--db", db.name, uri=server_uri)
    assert result.returncode == 1 and "not a capped job queue" in result.stderr
    assert sorted(db.list_collection_names()) == before  # nothing was created


def test_a_handler_that_cannot_be_imported_is_one_line(db, server_uri, tmp_path):
    result = mjq("work", "nosuchmodule:fn", "--db", db.name, uri=server_uri, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "mjq: can't import handler nosuchmodule:fn: No module named 'nosuchmodule' "
        "(is it on PYTHONPATH? run mjq from its folder)"
    ]
    (tmp_path / "needs.py").write_text("import nosuchdependency\n\ndef handle(job): pass\n")
    result = mjq("work", "needs:handle", "--db", db.name, uri=server_uri, cwd=tmp_path)
    assert result.stderr.splitlines() == [
        "mjq: can't import handler needs:handle: No module named 'nosuchdependency' "
        "(needs imports it: install it where mjq runs)"
    ]
    result = mjq("work", "needs", "--db", db.name, uri=server_uri, cwd=tmp_path)
    assert result.stderr.splitlines() == [
        "mjq: a handler is module:function (e.g. tasks:handle), not 'needs'"
    ]
    assert db.list_collection_names() == []


def test_user_mistakes_end_in_one_line_saying_what_to_do(db, client, server_uri):
    port = free_port()  # a port where nothing listens
    host, server_port = client.address
    wrong_login = f"mongodb://nobody:s3cret-guess@{host}:{server_port}/?authSource=admin"
    cases = [
        (["queues", "--uri", wrong_login], "check the user and password in --uri"),
        (["pub", '{"n": ', "--db", db.name], "invalid JSON"),
        (["queues", "--uri", f"mongodb://127.0.0.1:{port}/"], "is it running? check --uri"),
        (["queues", "--uri", "localhost:27017"], "--uri takes a MongoDB URI"),
        (["stats", "--since", "someday", "--db", db.name], "--since takes a time"),
        (["work", "os:no_such_function", "--db", db.name], "module os has no"),
    ]
    JobQueue(db)
    for args, advice in cases:
        result = mjq(*args, uri=server_uri)
        assert result.returncode in (1, 2), (args, result.stderr)
        assert len(result.stderr.splitlines()) == 1, (args, result.stderr)
        assert advice in result.stderr and "Traceback" not in result.stderr, args
        assert "s3cret-guess" not in result.stderr


def test_a_mistyped_command_line_is_one_line_naming_the_command(db, server_uri):
    """argparse's own mistakes too: one line blaming the command, with where help is, and no
    usage block above it; nothing is written."""
    cases = [
        (["tail", "--bogus", "--db", db.name], "mjq tail: unrecognized arguments: --bogus"),
        (["work", "tasks:run", "--concurrency", "0", "--db", db.name], "mjq work: argument"),
        (["prune", "--db", db.name], "mjq prune: the following arguments are required"),
        (["nonsense"], "mjq: argument COMMAND: invalid choice"),
    ]
    for args, start in cases:
        result = mjq(*args, uri=server_uri)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.splitlines() == [result.stderr.strip()], (args, result.stderr)
        assert result.stderr.startswith(start), (args, result.stderr)
        command = start.split(":")[0]
        assert result.stderr.rstrip().endswith(f"(see `{command} --help`)"), result.stderr
    assert db.list_collection_names() == []


def test_output_piped_into_head_ends_quietly(db, server_uri):
    q = JobQueue(db)
    q.pub_many([{"n": n} for n in range(20)])
    JobQueue(db, "other")
    env = {**os.environ, "MJQ_MONGODB_URI": server_uri}
    mjq_command = f"{sys.executable} -m mjq_notebook.cli"

    def shell(line: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            line, shell=True, env=env, capture_output=True, text=True, timeout=120
        )

    first = shell(f"{mjq_command} queues --db {db.name} | head -1")
    assert first.stdout.split()[:2] == ["queue", "waiting"]
    assert first.stderr == ""
    gone = shell(f"{mjq_command} queues --db {db.name} | head -n 0")  # leaves before mjq writes
    assert gone.stdout == "" and gone.stderr == ""
    live = shell(f"{mjq_command} tail --db {db.name} --duration 5 | head -3")  # line by line
    assert len(live.stdout.splitlines()) == 3
    assert "BrokenPipe" not in live.stderr and "Traceback" not in live.stderr
    assert live.stderr.startswith("mjq: the newest 50 jobs")


def test_tail_starts_with_a_header_and_the_recent_rows_in_time_order(db, server_uri):
    q = JobQueue(db)
    first, second, third = q.pub_many([{"n": 1}, {"n": 2}, {"n": 3}])
    time.sleep(0.02)
    held = q.next()  # the first: working since now
    time.sleep(0.02)
    q.done(q.next())  # the second: done after that; the third waits since its publish
    assert held.id == first
    result = mjq("tail", "--db", db.name, "--duration", "1", uri=server_uri)
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "time", "(UTC)", "job", "change", "worker", "attempt", "progress", "data", "/", "error"
    ]  # fmt: skip
    assert [row.split()[2:4] for row in rows] == [
        [str(third), "waiting"],
        [str(first), "working"],
        [str(second), "done"],
    ]
    stamps = [row[:23] for row in rows]  # 2026-12-06 02:30:00.123
    assert stamps == sorted(stamps)


def test_mjq_queue_chooses_the_queue_and_queue_beats_it(db, server_uri):
    emails = {"MJQ_QUEUE": "emails"}
    result = mjq("pub", '{"to": "ada"}', "--db", db.name, uri=server_uri, env=emails)
    assert result.returncode == 0, result.stderr
    assert JobQueue.open(db, "emails").get(result.stdout.strip())["data"] == {"to": "ada"}
    assert "jobqueue" not in db.list_collection_names()
    mjq("pub", "{}", "--queue", "jobqueue", "--db", db.name, uri=server_uri, env=emails)
    assert JobQueue.open(db, "jobqueue").counts()["waiting"] == 1  # --queue beats it
    stats = mjq("stats", "--db", db.name, uri=server_uri, env=emails)
    jobs, _ = _stats_tables(stats.stdout)
    assert jobs[1][:3] == ["all", "1", "1"]  # the one email, waiting
    other = mjq("stats", "--db", db.name, uri=server_uri, env={"MJQ_QUEUE": "nosuch"})
    assert "no queue 'nosuch'" in other.stderr
    for command in ("pub", "stats", "tail", "work", "workers"):
        text = " ".join(mjq(command, "--help").stdout.split())
        assert "$MJQ_QUEUE, else jobqueue; --queue beats $MJQ_QUEUE" in text, command
