"""No other user can redirect the data folder or have us signal a process of theirs, proven
with real files, links and processes of uid ``nobody``: a symlinked folder, a folder under a
folder others may write to or own, and a URI file naming a foreign pid are each refused in
one line; nothing outside the user's own folder changes mode; no foreign process is
signalled. A sticky world-writable parent (as ``/tmp``) of a folder of the user's is fine."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mjq_notebook import DataFolderError, JobQueue, connect
from mjq_notebook.server import (
    URI_FILE,
    find_running,
    pid_alive,
    read_info,
    stop_server,
)
from mjq_notebook.server.access import private_folder

from .support.nobody import NOBODY, as_nobody
from .support.processes import embedded_mjq as mjq
from .support.waiting import wait_for

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("MJQ_TEST_MONGODB_URI")), reason="needs the embedded server"
)
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="acts as uid nobody (needs root)")

SECRET = "payroll-4411"


def snapshot(root: Path) -> dict[str, tuple]:
    """Mode, owner, size and mtime of ``root`` and everything under it (links not followed)."""
    found = {}
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        found[str(path)] = (info.st_mode, info.st_uid, info.st_size, info.st_mtime_ns)
    return found


def one_line(result: subprocess.CompletedProcess, *words: str) -> str:
    """The command failed with one line on stderr containing ``words``."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1, (result.returncode, result.stderr)
    assert all(word in lines[0] for word in words), lines[0]
    return lines[0]


@pytest.fixture
def shared():
    """A sticky folder every user may write to, as /tmp is."""
    folder = Path(tempfile.mkdtemp(prefix="mjq-shared-"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# nobody's trap: a folder of theirs with a file anyone may write, a URI file and a login
# of theirs, and a link to it planted where the owner's data folder is expected
PLANT = r"""
import json, sys
shared, uri = sys.argv[1:]
drop_to_nobody()
os.umask(0)
trap = os.path.join(shared, "trap")
os.mkdir(trap, 0o777)
with open(os.path.join(trap, "theirs.txt"), "w") as file:
    file.write("nobody's")
os.chmod(os.path.join(trap, "theirs.txt"), 0o666)
with open(os.path.join(trap, "mjq-server.uri"), "w") as file:
    file.write(uri + "\n1\n0\n")
with open(os.path.join(trap, "mjq-server.credentials"), "w") as file:
    json.dump({"user": "mjq", "password": "nobodys-own"}, file)
os.symlink(trap, os.path.join(shared, "data"))
os.symlink(trap, os.path.join(shared, "link"))
"""


@as_root
def test_a_link_planted_by_another_user_is_refused_and_its_target_untouched(shared, monkeypatch):
    planted = as_nobody(PLANT, str(shared), "mongodb://127.0.0.1:1/")
    assert planted.returncode == 0, planted.stderr
    trap = shared / "trap"
    assert (shared / "data").lstat().st_uid == NOBODY.pw_uid
    before = snapshot(trap)

    monkeypatch.setenv("MJQ_DATA_DIR", str(shared / "data"))
    says = f"the data folder {shared / 'data'} is a symbolic link (to {trap})"
    with pytest.raises(DataFolderError, match="is a symbolic link"):
        connect()
    one_line(mjq("queues"), says)
    one_line(mjq("pub", "--queue", "payroll", json.dumps({"secret": SECRET})), says)
    one_line(mjq("serve", "--status"), says)
    one_line(mjq("serve", "--stop"), says)
    one_line(mjq("serve", "--detach"), says)

    # a link higher up the path, planted by another user, is refused as well
    monkeypatch.setenv("MJQ_DATA_DIR", str(shared / "link" / "mine"))
    one_line(mjq("queues"), f"{shared / 'link'} is a symbolic link", "made by nobody")

    assert snapshot(trap) == before  # not a mode, a file or a byte of theirs changed
    assert stat.S_IMODE((trap / "theirs.txt").stat().st_mode) == 0o666


def test_a_link_of_the_user_as_the_data_folder_is_refused(tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "data").symlink_to(real)
    monkeypatch.setenv("MJQ_DATA_DIR", str(tmp_path / "data"))
    one_line(mjq("queues"), f"{tmp_path / 'data'} is a symbolic link (to {real})")
    assert list(real.iterdir()) == []  # no lock, log or login made through it

    # a link higher up, made by the user (or root), is followed: only its target is checked
    (tmp_path / "alias").symlink_to(tmp_path, target_is_directory=True)
    monkeypatch.setenv("MJQ_DATA_DIR", str(tmp_path / "alias" / "real"))
    db = connect()
    try:
        assert JobQueue(db).pub({"n": 1})
    finally:
        db.client.close()
    server = read_info(real)  # the same folder, however spelled: --stop finds its server
    assert server is not None and stop_server(real) == server and not pid_alive(server.pid)


def test_a_folder_in_a_world_writable_parent_is_refused(tmp_path, monkeypatch):
    open_parent = tmp_path / "open"
    open_parent.mkdir()
    open_parent.chmod(0o777)  # not sticky: anyone may rename or replace what is in it
    mine = open_parent / "mine"
    monkeypatch.setenv("MJQ_DATA_DIR", str(mine))
    says = f"the data folder {mine}: {open_parent} can be written by every user (mode 0777)"
    one_line(mjq("queues"), says)
    assert list(open_parent.iterdir()) == []  # nothing made there

    mine.mkdir(mode=0o700)  # a folder of the user's own does not make it safe
    one_line(mjq("pub", "--queue", "payroll", json.dumps({"secret": SECRET})), says)
    with pytest.raises(DataFolderError, match="can be written by every user"):
        connect()
    assert list(mine.iterdir()) == []

    # the data folder itself, sticky and open to all, is no private folder
    open_parent.chmod(0o755)
    mine.chmod(0o1777)
    one_line(mjq("queues"), f"the data folder {mine} can be written by every user (mode 1777)")
    assert list(mine.iterdir()) == []


@as_root
def test_a_folder_under_a_folder_of_another_user_is_refused(tmp_path, monkeypatch):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, NOBODY.pw_uid, NOBODY.pw_gid)  # who could swap what is inside
    mine = theirs / "mine"
    mine.mkdir(mode=0o700)
    before = snapshot(theirs)
    monkeypatch.setenv("MJQ_DATA_DIR", str(mine))
    one_line(mjq("queues"), f"{theirs} belongs to nobody (uid {NOBODY.pw_uid}), not to you")
    one_line(mjq("serve", "--stop"), f"{theirs} belongs to nobody")
    assert snapshot(theirs) == before


def test_a_folder_of_the_user_in_a_sticky_shared_folder_is_accepted(shared, monkeypatch):
    mine = shared / "mine"
    monkeypatch.setenv("MJQ_DATA_DIR", str(mine))
    db = connect()
    try:
        JobQueue(db, "payroll").pub({"secret": SECRET})
        assert [job.data for job in JobQueue(db, "payroll").jobs()] == [{"secret": SECRET}]
    finally:
        db.client.close()
    assert stat.S_IMODE(mine.stat().st_mode) == 0o700 and mine.stat().st_uid == os.geteuid()
    status = mjq("serve", "--status")
    assert status.returncode == 0 and "is running" in status.stdout, status.stdout
    server = read_info(mine)
    stop = mjq("serve", "--stop")
    assert stop.returncode == 0 and f"(pid {server.pid}" in stop.stdout, stop.stderr
    assert not pid_alive(server.pid) and not (mine / URI_FILE).exists()


def test_only_files_of_this_package_are_tightened(tmp_path, monkeypatch):
    """A folder of the user's that holds files of theirs keeps its mode and theirs, and in a
    folder an earlier version left open, a link with the name of one of our files is not
    followed: the file it points to keeps its mode."""
    outside = tmp_path / "outside.txt"
    outside.write_text("the user's, elsewhere")
    outside.chmod(0o666)
    plain = tmp_path / "plain"  # e.g. MJQ_DATA_DIR set to a folder of documents
    plain.mkdir(mode=0o755)
    (plain / "notes.txt").write_text("mine")
    (plain / "notes.txt").chmod(0o644)
    monkeypatch.setenv("MJQ_DATA_DIR", str(plain))
    try:
        connect().client.close()
        connect().client.close()  # and again, with our files there now
    finally:
        stop_server(plain)
    assert stat.S_IMODE(plain.stat().st_mode) == 0o755
    assert stat.S_IMODE((plain / "notes.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((plain / "WiredTiger.wt").stat().st_mode) == 0o600  # ours: private

    old = tmp_path / "old"  # as an earlier version left it: open to all
    old.mkdir(mode=0o755)
    (old / "WiredTiger").write_text("WiredTiger\n")
    (old / "WiredTiger").chmod(0o644)
    (old / "mjq-server.log").symlink_to(outside)
    with private_folder(old):  # what every start does first
        pass
    assert stat.S_IMODE(old.stat().st_mode) == 0o700
    assert stat.S_IMODE((old / "WiredTiger").stat().st_mode) == 0o600
    monkeypatch.setenv("MJQ_DATA_DIR", str(old))
    detach = mjq("serve", "--detach")  # the server's log is never written through it either
    one_line(detach, f"{old / 'mjq-server.log'} is a symbolic link")
    assert stat.S_IMODE(outside.stat().st_mode) == 0o666  # not through the link
    assert outside.read_text() == "the user's, elsewhere"  # nor written through it


# -- a URI file naming a process that is not our server ----------------------------------


SLEEP_AS_NOBODY = "drop_to_nobody()\nos.execvp('sleep', ['sleep', '300'])\n"


@pytest.fixture
def sleepers():
    """A ``sleep`` of this user and one of nobody, killed by pid at the end."""
    mine = subprocess.Popen(["sleep", "300"])
    theirs = as_nobody(SLEEP_AS_NOBODY, wait=False)
    wait_for(lambda: _uid(theirs.pid) == NOBODY.pw_uid, 10, "nobody's sleep")
    yield mine, theirs
    for process in (mine, theirs):
        process.kill()
        process.wait(10)


def _uid(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def _plant_uri(folder: Path, pid: int, port: int) -> None:
    (folder / URI_FILE).write_text(f"mongodb://127.0.0.1:{port}/\n{pid}\n0\n")


@as_root
def test_a_uri_file_naming_another_process_signals_nothing(sleepers, tmp_path, monkeypatch):
    mine, theirs = sleepers
    folder = tmp_path / "data"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("MJQ_DATA_DIR", str(folder))
    for process, why in (
        (mine, "does not hold the folder's lock"),
        (theirs, f"belongs to nobody (uid {NOBODY.pw_uid})"),
    ):
        _plant_uri(folder, process.pid, 1)
        stop = mjq("serve", "--stop")
        one_line(stop, f"process {process.pid}", why, "not signalled")
        status = mjq("serve", "--status")
        assert status.returncode == 1 and "is running" not in status.stdout
        assert f"names process {process.pid}, which {why}" in status.stdout, status.stdout
        assert find_running(folder) is None
        assert process.poll() is None and pid_alive(process.pid)  # still alive, unsignalled

    # a client of the folder starts a server of its own instead, and signals nothing
    db = connect()
    try:
        server = read_info(folder)
        assert server.pid not in (mine.pid, theirs.pid)
        assert JobQueue(db).pub({"n": 1})
    finally:
        db.client.close()
        stop_server(folder)
    assert mine.poll() is None and theirs.poll() is None


def test_a_server_inside_another_program_is_not_signalled(tmp_path, monkeypatch):
    """``embedded_server(folder)`` holds the folder in a user's own program (a notebook):
    ``--status`` reports it, ``--stop`` does not kill that program."""
    folder = tmp_path / "data"
    monkeypatch.setenv("MJQ_DATA_DIR", str(folder))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfrom mjq_notebook import embedded_server\n"
            f"with embedded_server({str(folder)!r}):\n"
            "    print('ready', flush=True)\n    sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        status = mjq("serve", "--status")
        assert status.returncode == 0 and f"pid:     {holder.pid}" in status.stdout
        one_line(mjq("serve", "--stop"), "is not an mjq server of the folder", "not signalled")
        assert holder.poll() is None
    finally:
        holder.stdin.close()
        assert holder.wait(30) == 0
