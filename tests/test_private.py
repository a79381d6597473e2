"""The embedded server is its owner's alone: another local user can read none of its files
and change no queue, an open folder of an earlier version is tightened, a folder of another
user is refused, and the login never shows. Real server processes, a real second user."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from mjq_notebook import DataFolderError, JobQueue, ServerUnavailable, connect, embedded_server
from mjq_notebook.server import (
    LOG_FILE,
    URI_FILE,
    client_for,
    embedded_client,
    ensure_server,
    read_info,
    stop_server,
)
from mjq_notebook.server.access import CREDENTIALS_FILE

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("MJQ_TEST_MONGODB_URI")), reason="needs the embedded server"
)
SECRET = "tea-at-five"


@pytest.fixture
def open_base():
    """A folder every user may enter (unlike pytest's tmp_path), so that only the data
    folder's own modes keep another user out of it."""
    base = Path(tempfile.mkdtemp(prefix="mjq-private-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    with contextlib.suppress(Exception):
        stop_server(base / "data", timeout=20)
    shutil.rmtree(base, ignore_errors=True)


def _as_nobody(probe, *args):
    """Run ``probe(*args)`` in a forked child that has become the user ``nobody``; returns
    what it returned (JSON). Forked, not exec'd: this Python may live where nobody can't read,
    so everything the probe needs is imported before the fork."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to become another user")
    nobody = pwd.getpwnam("nobody")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            os.write(write, json.dumps(probe(*args)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        output = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the probe failed as nobody"
    return json.loads(output)


def _probe(paths: list[str], address: str) -> dict:
    """What user nobody can do: read which of ``paths``, and what with the server."""
    report: dict = {"uid": os.getuid(), "readable": [], "refused": {}}
    for path in paths:
        try:
            with open(path, "rb") as file:
                file.read(1)
            report["readable"].append(path)
        except PermissionError:
            pass
    client = MongoClient(address, serverSelectionTimeoutMS=5000)
    try:
        report["ping"] = client.admin.command("ping")["ok"]
        jobs = client["job_queue"]["jobqueue"]
        attempts = {
            "list databases": client.list_database_names,
            "read": lambda: jobs.find_one(),
            "insert": lambda: jobs.insert_one({"data": "from nobody"}),
            "delete": lambda: jobs.delete_many({}),
        }
        for name, attempt in attempts.items():
            try:
                attempt()
            except OperationFailure as exc:
                report["refused"][name] = exc.code
    finally:
        client.close()
    return report


def test_another_user_can_read_no_file_and_change_no_queue(open_base):
    folder = open_base / "data"
    client = embedded_client(folder)
    try:
        q = JobQueue(client["job_queue"])
        q.pub({"secret": SECRET})
        # what the owner sees: a folder and files for the owner only
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert len(files) > 10 and any(p.name.startswith("WiredTiger") for p in files)
        opened = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
        assert all(mode == "0o600" for mode in opened.values()), opened
        assert {p.stat().st_uid for p in files} == {os.geteuid()}

        report = _as_nobody(_probe, [str(p) for p in files], read_info(folder).uri)
        assert report["uid"] == pwd.getpwnam("nobody").pw_uid
        assert report["readable"] == []
        assert report["ping"] == 1.0  # it reaches the server...
        unauthorized = dict.fromkeys(("list databases", "read", "insert", "delete"), 13)
        assert report["refused"] == unauthorized  # ...which lets it do nothing
        assert [job.data for job in q.jobs()] == [{"secret": SECRET}]  # nothing changed
    finally:
        client.close()


def test_a_folder_an_earlier_version_left_open_is_tightened_once(open_base, caplog):
    folder = open_base / "data"
    with embedded_server(folder) as server:
        JobQueue(client_for(server.uri)["job_queue"]).pub({"kept": True})
    for path in (folder, *folder.rglob("*")):  # as versions before 0.2 left it
        path.chmod(0o755 if path.is_dir() else 0o644)
    with caplog.at_level(logging.WARNING, logger="mjq_notebook.server"):
        client = embedded_client(folder)
        embedded_client(folder).close()  # a second client: nothing left to say
    try:
        said = [r.getMessage() for r in caplog.records if "readable by you only" in r.message]
        assert len(said) == 1 and str(folder) in said[0], said
        modes = {oct(stat.S_IMODE(p.stat().st_mode)) for p in folder.rglob("*") if p.is_file()}
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and modes == {"0o600"}
        assert [job.data for job in JobQueue(client["job_queue"]).jobs()] == [{"kept": True}]
    finally:
        client.close()


def test_a_folder_of_another_user_is_refused(open_base):
    folder = open_base / "data"
    folder.mkdir(mode=0o700)
    nobody = pwd.getpwnam("nobody")
    os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(DataFolderError) as refused:
        ensure_server(folder)
    message = str(refused.value)
    assert "belongs to nobody" in message and "not to you" in message
    assert list(folder.iterdir()) == []  # nothing started, nothing written


def test_an_unauthenticated_folder_of_an_earlier_version_keeps_its_jobs(open_base):
    from secantus import SecantusDBServer

    folder = open_base / "data"
    old = SecantusDBServer(host="127.0.0.1", port=0, storage_path=str(folder))  # no login
    old.start()
    try:
        with MongoClient(old.uri, retryWrites=False) as plain:
            JobQueue(plain["job_queue"]).pub({"from": "before the upgrade"})
    finally:
        old.stop()
    client = embedded_client(folder)
    try:
        jobs = JobQueue(client["job_queue"]).jobs()
        assert [job.data for job in jobs] == [{"from": "before the upgrade"}]
        plain = MongoClient(read_info(folder).uri, serverSelectionTimeoutMS=5000)
        with plain, pytest.raises(OperationFailure) as refused:
            plain["job_queue"]["jobqueue"].find_one()
        assert refused.value.code == 13
    finally:
        client.close()


def _mjq(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mjq_notebook.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_password_shows_nowhere(open_base, monkeypatch):
    folder = open_base / "data"
    monkeypatch.setenv("MJQ_DATA_DIR", str(folder))
    seen = [_mjq("serve", "--detach").stdout, _mjq("serve", "--status").stdout]
    password = json.loads((folder / CREDENTIALS_FILE).read_text())["password"]
    assert len(password) >= 24
    db = connect()
    q = JobQueue(db)
    q.pub({"n": 1})
    seen += [repr(db), repr(db.client), repr(q), q._repr_html_(), str(read_info(folder))]
    seen += [(folder / LOG_FILE).read_text(), (folder / URI_FILE).read_text()]
    with embedded_server() as server:  # an in-process one: its uri carries its own login
        assert server.credentials.password in server.uri
        seen += [repr(server), server.address]
        assert server.credentials.password not in repr(server)
    # the foreground server, on a folder of its own
    foreground = subprocess.Popen(
        [sys.executable, "-m", "mjq_notebook.cli", "serve", "--path", str(open_base / "fg")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        seen += [foreground.stdout.readline(), foreground.stdout.readline()]
    finally:
        foreground.send_signal(signal.SIGINT)
        seen.append(foreground.communicate(timeout=30)[0])
    fg_password = json.loads((open_base / "fg" / CREDENTIALS_FILE).read_text())["password"]
    # an error that names the server, with the login in the URI
    db.client.close()
    stop_server(folder)
    assert read_info(folder) is None
    with pytest.raises(ServerUnavailable) as away:
        login = f"mjq:{password}@"
        client_for(f"mongodb://{login}127.0.0.1:{_free_port()}/", timeout=0.3)
    seen.append(str(away.value))
    text = "\n".join(seen)
    assert "serving" in text and "uri:" in text  # what was looked at is there
    assert password not in text and fg_password not in text


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
