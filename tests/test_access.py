"""The embedded server's data folder and its jobs are its owner's alone, proven with real
processes: another local user (``nobody``) can open none of the folder's files and do nothing
on the server but ping it; an open folder of an earlier version is tightened once, keeping its
jobs; a folder of another user is refused without starting anything; the login's password
shows nowhere a user looks; and an unauthenticated folder of the previous version keeps its
jobs and gets the login."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from mjq_notebook import (
    DataFolderError,
    JobQueue,
    ServerUnavailable,
    connect,
    embedded_server,
)
from mjq_notebook.server import LOG_FILE, URI_FILE, ensure_server, read_info, stop_server

from .support.nobody import NOBODY, as_nobody
from .support.processes import embedded_mjq as mjq
from .support.servers import server_env, server_pids, stop_servers

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("MJQ_TEST_MONGODB_URI")), reason="needs the embedded server"
)

CREDENTIALS_FILE = "mjq-server.credentials"  # the login, in the data folder
SECRET = "tell-no-one-7f3c9a"  # in a job's data: must reach no other user
TIGHTENED = "readable by you only"  # the words of the one warning about an open folder


def _entries(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _assert_private(folder: Path) -> None:
    """The folder is 0700, its subfolders 0700 and its files 0600, all of this user."""
    assert _mode(folder) == 0o700 and folder.stat().st_uid == os.geteuid()
    for path in _entries(folder):
        info = path.lstat()
        assert info.st_uid == os.geteuid(), path
        if stat.S_ISDIR(info.st_mode):
            assert _mode(path) == 0o700, (path, oct(_mode(path)))
        elif not stat.S_ISLNK(info.st_mode):
            assert _mode(path) == 0o600, (path, oct(_mode(path)))


# -- 1. another user of the machine ------------------------------------------------------------

# Imports pymongo first, then drops for good to nobody (conftest.as_nobody) before it
# touches the folder or the server.
AS_NOBODY = r"""
import json, sys
from pymongo import MongoClient
from pymongo.errors import OperationFailure

paths, uri = json.loads(sys.argv[1])
drop_to_nobody()
report = {"uid": os.getresuid(), "gid": os.getresgid(), "groups": os.getgroups(), "files": {}}
for path in paths:
    try:
        with open(path, "rb") as file:
            file.read(1)
        report["files"][path] = "read"
    except OSError as exc:
        report["files"][path] = type(exc).__name__

client = MongoClient(uri, serverSelectionTimeoutMS=5000)
jobs = client.job_queue.jobqueue

def attempt(name, action):
    try:
        report[name] = ["ok", repr(action())[:300]]
    except OperationFailure as exc:
        report[name] = ["OperationFailure", exc.code]
    except Exception as exc:
        report[name] = [type(exc).__name__, str(exc)[:300]]

attempt("ping", lambda: client.admin.command("ping")["ok"])
attempt("list_databases", client.list_database_names)
attempt("list_collections", client.job_queue.list_collection_names)
attempt("find", lambda: list(jobs.find()))
attempt("count", lambda: jobs.count_documents({}))
attempt("watch", lambda: jobs.watch(max_await_time_ms=100).try_next())
attempt("insert", lambda: jobs.insert_one({"by": "nobody"}).inserted_id)
attempt("update", lambda: jobs.update_many({}, {"$set": {"by": "nobody"}}).modified_count)
attempt("delete", lambda: jobs.delete_many({}).deleted_count)
client.close()
print(json.dumps(report))
"""

REFUSED = ("list_databases", "list_collections", "find", "count", "watch")
REFUSED += ("insert", "update", "delete")


def _as_nobody(paths: list[Path], uri: str) -> tuple[dict, str]:
    child = as_nobody(AS_NOBODY, json.dumps([[str(p) for p in paths], uri]), env=server_env())
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout), child.stdout + child.stderr


@pytest.fixture
def reachable(tmp_path):
    """A data folder whose parent every user may enter (tmp_path's parents are root's
    0700), so that only the data folder's own modes keep another user out."""
    parent = Path(tempfile.mkdtemp(prefix="mjq-access-"))
    parent.chmod(0o711)
    folder = parent / "data"
    yield folder
    stop_servers(folder)
    shutil.rmtree(parent, ignore_errors=True)


def test_another_user_reads_no_file_and_no_job(reachable, monkeypatch):
    monkeypatch.setenv("MJQ_DATA_DIR", str(reachable))
    db = connect()
    JobQueue(db).pub({"secret": SECRET})
    db.client.close()
    server = read_info(reachable)
    assert server is not None and "@" not in server.uri  # the address, no login

    _assert_private(reachable)
    files = [path for path in _entries(reachable) if path.is_file()]
    names = {path.name for path in files}
    assert {CREDENTIALS_FILE, URI_FILE, LOG_FILE, "WiredTiger.wt"} <= names, names
    control = reachable.parent / "control.txt"  # world-readable, next to the folder
    control.write_text("anyone may read this")
    control.chmod(0o644)

    report, output = _as_nobody([*files, control], server.uri)
    ids = (NOBODY.pw_uid,) * 3, (NOBODY.pw_gid,) * 3
    assert (tuple(report["uid"]), tuple(report["gid"])) == ids
    assert set(report["groups"]) <= {NOBODY.pw_gid}
    assert report["files"].pop(str(control)) == "read"  # nobody can read what is open...
    assert report["files"] == {str(p): "PermissionError" for p in files}  # ...none of ours
    assert report["ping"] == ["ok", "1.0"]  # it reaches the server (the handshake works)...
    for action in REFUSED:  # ...but may do nothing there
        assert report[action] == ["OperationFailure", 13], (action, report[action])
    assert SECRET not in output

    # even where the folder itself lets nobody in, each file keeps nobody out (0600)
    reachable.chmod(0o711)
    try:
        report, output = _as_nobody(files, server.uri)
    finally:
        reachable.chmod(0o700)
    assert report["files"] == {str(p): "PermissionError" for p in files}
    assert SECRET not in output

    db = connect()  # and the job is untouched: nobody's insert/update/delete did nothing
    assert [job["data"] for job in db.jobqueue.find()] == [{"secret": SECRET}]
    db.client.close()


# -- 2. an open folder of an earlier version ---------------------------------------------------


def test_an_open_folder_is_made_private_once_keeping_its_jobs(data, caplog):
    db = connect()
    job_id = JobQueue(db).pub({"secret": SECRET})
    db.client.close()
    stop_server(data)
    # as an earlier version left it: everything readable by every user
    data.chmod(0o755)
    opened = _entries(data)
    for path in opened:
        path.chmod(0o755 if path.is_dir() else 0o644)
    assert opened and all(_mode(path) & 0o044 for path in [data, *opened])

    with caplog.at_level(logging.WARNING, logger="mjq_notebook.server"):
        db = connect()
        queue = JobQueue(db)
        assert [job["_id"] for job in queue.collection.find()] == [job_id]
        assert queue.next(timeout=0).data == {"secret": SECRET}
        db.client.close()
        connect().client.close()  # a second connect() finds nothing more to say
        warnings = [r for r in caplog.records if TIGHTENED in r.getMessage()]
        assert len(warnings) == 1, caplog.text
        assert warnings[0].levelno == logging.WARNING
        assert f"made {data} and {len(opened)} file(s) in it" in warnings[0].getMessage()
    _assert_private(data)
    assert TIGHTENED not in (data / LOG_FILE).read_text()  # not said again by the server


# -- 3. a folder of another user ---------------------------------------------------------------


def test_a_folder_of_another_user_is_refused_and_nothing_starts(data):
    data.mkdir(mode=0o755)
    (data / "WiredTiger").write_text("theirs")
    (data / "WiredTiger").chmod(0o644)
    for path in (data, data / "WiredTiger"):
        os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
    before = {path: path.lstat() for path in [data, *_entries(data)]}
    says = rf"belongs to nobody \(uid {NOBODY.pw_uid}\), not to you"

    with pytest.raises(DataFolderError, match=says):
        connect()
    with pytest.raises(DataFolderError, match=says):
        ensure_server(data)
    detach = mjq("serve", "--detach", cwd=data.parent)
    assert detach.returncode == 2 and "belongs to nobody" in detach.stderr, detach.stderr

    assert server_pids(data) == []
    with pytest.raises(DataFolderError, match=says):  # nor a URI file read from there
        read_info(data)
    after = {path: path.lstat() for path in [data, *_entries(data)]}
    assert after.keys() == before.keys()  # no lock, log, login or URI file made there
    for path, info in before.items():  # and nothing of theirs re-moded or re-owned
        assert (after[path].st_mode, after[path].st_uid) == (info.st_mode, info.st_uid)


# -- 4. the password never shows ---------------------------------------------------------------


def _no_password(password: str, **shown: str) -> None:
    leaks = [where for where, text in shown.items() if password in text]
    assert not leaks, f"the password shows in {leaks}"


def test_the_password_shows_nowhere(data, caplog):
    caplog.set_level(logging.DEBUG)
    cwd = data.parent
    detach = mjq("serve", "--detach", cwd=cwd)
    assert detach.returncode == 0, detach.stderr
    password = json.loads((data / CREDENTIALS_FILE).read_text())["password"]
    assert len(password) >= 20
    status = mjq("serve", "--status", cwd=cwd)
    assert status.returncode == 0 and "is running" in status.stdout, status.stderr

    cmdline = Path(f"/proc/{read_info(data).pid}/cmdline").read_bytes().replace(b"\0", b" ")
    assert b"mjq_notebook.server" in cmdline  # what `ps` shows every user of the server

    db = connect()
    queue = JobQueue(db)
    queue.pub({"n": 1})
    html = queue._repr_html_()
    assert "<" in html
    shown = dict(
        detach=detach.stdout + detach.stderr,
        status=status.stdout + status.stderr,
        ps=cmdline.decode(),
        uri_file=(data / URI_FILE).read_text(),
        repr_db=repr(db),
        repr_client=repr(db.client),
        repr_queue=repr(queue),
        html_queue=html,
    )
    db.client.close()
    stop = mjq("serve", "--stop", cwd=cwd)
    assert stop.returncode == 0 and "stopped the server" in stop.stdout, stop.stderr
    shown["stop"] = stop.stdout + stop.stderr

    serve = subprocess.Popen(
        [sys.executable, "-m", "mjq_notebook.cli", "serve"],
        cwd=cwd,
        env=server_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = serve.stdout.readline() + serve.stdout.readline()
        assert first.startswith(f"mjq: serving {data} at mongodb://"), first
    finally:
        serve.send_signal(signal.SIGINT)
        rest, err = serve.communicate(timeout=30)
    assert serve.returncode == 0, err
    assert password == json.loads((data / CREDENTIALS_FILE).read_text())["password"]

    with embedded_server(data) as folder_server:  # the folder's login, in this process
        assert folder_server.credentials.password == password
        shown["repr_embedded_folder"] = repr(folder_server)
        shown["str_embedded_folder"] = str(folder_server)
        through_uri = connect(folder_server.uri)  # the URI with the login, as documented
        shown["repr_db_by_uri"] = repr(through_uri) + repr(through_uri.client)
        through_uri.client.close()
    with embedded_server() as memory_server:  # an in-memory server: a login of its own
        other = memory_server.credentials.password
        assert other in memory_server.uri  # the secret we look for is real
        shown_memory = {"repr": repr(memory_server), "str": str(memory_server)}
    with pytest.raises(ServerUnavailable) as unreachable:  # that server has stopped
        connect(memory_server.uri, timeout=0.5)
    with pytest.raises(ServerUnavailable) as unreachable_folder:
        connect(folder_server.uri, timeout=0.5)
    for name, error in (("memory", unreachable.value), ("folder", unreachable_folder.value)):
        assert "no MongoDB server answered" in str(error)
        text = "".join(traceback.format_exception(error))
        errors = {f"{name}_error_str": str(error), f"{name}_error_repr": repr(error)}
        errors[f"{name}_error_traceback"] = text
        shown.update(errors)
        shown_memory.update(errors)

    shown.update(
        foreground=first + rest + err,
        log_file=(data / LOG_FILE).read_text(),
        this_process_log=caplog.text,
    )
    assert "serving" in shown["log_file"]  # the detached server did log there
    _no_password(password, **shown)
    _no_password(other, **shown_memory)


# -- 5. a folder of the previous version, without a login --------------------------------------


def test_an_unauthenticated_folder_keeps_its_jobs_and_gets_the_login(data):
    from secantus import SecantusDBServer

    previous_umask = os.umask(0o022)  # as the previous version ran it: files 0644
    try:
        data.mkdir(mode=0o755)
        old = SecantusDBServer(host="127.0.0.1", port=0, storage_path=str(data))
        old.start()
        try:
            client = MongoClient(old.uri, serverSelectionTimeoutMS=5000)
            job_id = JobQueue(client["job_queue"]).pub({"secret": SECRET})
            client.close()
        finally:
            old.stop()
    finally:
        os.umask(previous_umask)
    assert not (data / CREDENTIALS_FILE).exists()
    assert _mode(data / "WiredTiger.wt") == 0o644

    db = connect()  # MJQ_DATA_DIR is that folder
    jobs = list(JobQueue(db).collection.find())
    assert [(job["_id"], job["data"]) for job in jobs] == [(job_id, {"secret": SECRET})]
    db.client.close()
    _assert_private(data)

    server = read_info(data)
    stranger = MongoClient(server.uri, serverSelectionTimeoutMS=5000)
    wrong = MongoClient(server.uri, serverSelectionTimeoutMS=5000, username="mjq", password="guess")
    try:
        assert stranger.admin.command("ping")["ok"] == 1
        with pytest.raises(OperationFailure) as refused:
            stranger.job_queue.jobqueue.find_one()
        assert refused.value.code == 13
        with pytest.raises(OperationFailure) as failed:
            wrong.job_queue.jobqueue.find_one()
        assert failed.value.code == 18  # AuthenticationFailed
    finally:
        stranger.close()
        wrong.close()


def test_files_an_in_process_server_left_open_are_tightened_without_a_warning(data, caplog):
    """``embedded_server(folder)`` runs in the user's process, whose umask may make its
    files 0644; inside the 0700 folder no other user could reach them, so the next start
    tightens them quietly instead of blaming an earlier version."""
    previous = os.umask(0o022)
    try:
        with embedded_server(data) as server:
            JobQueue(MongoClient(server.uri)["job_queue"]).pub({"kept": True})
    finally:
        os.umask(previous)
    assert _mode(data) == 0o700
    assert any(_mode(path) == 0o644 for path in _entries(data))
    with caplog.at_level(logging.WARNING, logger="mjq_notebook.server"):
        db = connect()
    try:
        assert not [r for r in caplog.records if TIGHTENED in r.getMessage()]
        _assert_private(data)
        assert [job.data for job in JobQueue(db).jobs()] == [{"kept": True}]
    finally:
        db.client.close()
        stop_servers(data)
