"""connect(): URIs, the embedded default, clear errors with masked passwords, light imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mjq_notebook import JobQueue, ServerUnavailable, connect
from mjq_notebook.server import IDLE_ENV, mask_uri, pid_alive, read_info, stop_server

from .support.jupyter import isolated_jupyter_env
from .support.servers import free_port

ROOT = Path(__file__).resolve().parent.parent


def _python(code: str, cwd, **env: str) -> subprocess.CompletedProcess:
    Path(cwd).mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in os.environ.items() if k not in ("MJQ_MONGODB_URI", "MONGODB_URI")}
    clean[IDLE_ENV] = "120"  # a safety net: the shared server it starts stops by itself
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def workdir(tmp_path):
    """A working folder; the shared server that connect() starts there is stopped after."""
    yield tmp_path
    stop_server(tmp_path / ".mjq-data")


def test_connect_uses_the_uri_argument_then_the_environment(server_uri, monkeypatch):
    assert connect(server_uri, db="alpha").name == "alpha"
    monkeypatch.setenv("MJQ_MONGODB_URI", server_uri)
    db = connect(db="beta")
    assert db.name == "beta" and db.command("ping")["ok"] == 1


def test_missing_server_names_the_uri_with_the_password_masked():
    uri = f"mongodb://alice:s3cr3t@127.0.0.1:{free_port()}/?authSource=admin"
    with pytest.raises(ServerUnavailable) as info:
        connect(uri, timeout=0.5)
    message = str(info.value)
    assert "s3cr3t" not in message
    assert "alice:***@127.0.0.1" in message and "within 0.5s" in message
    assert isinstance(info.value, ConnectionError)


def test_mask_uri_hides_only_passwords():
    assert mask_uri("mongodb://u:p@h:1,h2:2/db") == "mongodb://u:***@h:1,h2:2/db"
    assert mask_uri("mongodb+srv://u:p%40ss@c.example.net") == "mongodb+srv://u:***@c.example.net"
    assert mask_uri("mongodb://h:27017/") == "mongodb://h:27017/"


def test_embedded_default_keeps_data_in_the_users_data_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MJQ_DATA_DIR")  # the default: platformdirs' user data folder
    folder = tmp_path / "xdg-data" / "mjq-notebook"  # conftest set XDG_DATA_HOME
    code = "from mjq_notebook import connect, JobQueue; q = JobQueue(connect()); "
    try:
        first = _python(code + "q.pub({'a': 1}); print(q.queue_count())", tmp_path / "one")
        assert first.returncode == 0, first.stderr
        assert first.stdout.strip() == "1"
        assert folder.is_dir() and not (tmp_path / "one" / ".mjq-data").exists()
        # from another folder, the same server and the same jobs
        code += "print(q.queue_count(), q.db.client.options.retry_writes)"
        second = _python(code, tmp_path / "two")
        # retryable writes are off: SecantusDB slows down with every retryable write it records
        assert second.stdout.strip() == "1 False", second.stderr
        # both used one server, in a process of its own that outlived them
        assert (folder / "mjq-server.log").read_text().count(" serving ") == 1
        assert pid_alive(int((folder / "mjq-server.uri").read_text().split()[1]))
    finally:
        stop_server(folder)


@pytest.mark.timeout(300)
def test_a_kernel_in_notebooks_and_mjq_in_the_root_share_one_queue(tmp_path, monkeypatch):
    """JupyterLab starts a notebook's kernel in the notebook's folder; ``mjq`` runs where the
    terminal is. With no URI set, both reach the same server, the user's."""
    jupyter_client = pytest.importorskip("jupyter_client")
    monkeypatch.delenv("MJQ_DATA_DIR")
    folder = tmp_path / "xdg-data" / "mjq-notebook"
    env = isolated_jupyter_env(tmp_path / "jupyter")
    env[IDLE_ENV] = "120"
    manager = jupyter_client.KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(ROOT / "notebooks"), env=env)
    kernel = manager.blocking_client()
    kernel.start_channels()
    try:
        kernel.wait_for_ready(timeout=60)
        printed = []

        def run(code: str) -> str:
            printed.clear()
            hook = lambda m: printed.append(m["content"].get("text", ""))  # noqa: E731
            reply = kernel.execute_interactive(code, timeout=60, output_hook=hook)
            assert reply["content"]["status"] == "ok", reply["content"]
            return "".join(printed).strip()

        setup = (
            "import os; from mjq_notebook import connect, JobQueue; q = JobQueue(connect(), 'live')"
        )
        run(setup)
        assert run("print(os.getcwd())") == str(ROOT / "notebooks")
        run("q.pub({'from': 'the notebook'})")
        mjq = [sys.executable, "-m", "mjq_notebook.cli"]
        pub = subprocess.run(
            [*mjq, "pub", "--queue", "live", '{"from": "the terminal"}'],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert pub.returncode == 0, pub.stderr
        stats = subprocess.run(
            [*mjq, "stats", "--queue", "live"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        rows = [line.split() for line in stats.stdout.splitlines()]
        assert ["all", "2", "2"] in [row[:3] for row in rows], (
            stats.stdout + stats.stderr
        )  # total, waiting
        assert run("print(sorted(j.data['from'] for j in q.jobs()))") == str(
            ["the notebook", "the terminal"]
        )
        assert read_info(folder) is not None  # the user's folder, not notebooks/.mjq-data
    finally:
        kernel.stop_channels()
        manager.shutdown_kernel(now=True)
        stop_server(folder)


def test_without_the_local_extra_the_error_says_what_to_install(tmp_path):
    code = (
        "import sys; sys.modules['secantus'] = None\n"
        "from mjq_notebook import connect\n"
        "try:\n    connect()\nexcept Exception as e:\n    print(type(e).__name__, e)"
    )
    result = _python(code, tmp_path)
    assert "ServerUnavailable" in result.stdout
    assert "pip install 'mjq-notebook[local]'" in result.stdout
    assert "MJQ_MONGODB_URI" in result.stdout


def test_import_does_not_load_pandas_or_widgets(tmp_path):
    heavy = "('pandas', 'ipywidgets', 'IPython', 'secantus', 'matplotlib', 'pyarrow')"
    code = f"import sys, mjq_notebook\nprint(sorted(m for m in {heavy} if m in sys.modules))"
    assert _python(code, tmp_path).stdout.strip() == "[]"
    code = "import sys, mjq_notebook.analysis.history\nprint('matplotlib' in sys.modules)"
    assert _python(code, tmp_path).stdout.strip() == "False"  # plots import it when drawn


def test_reprs_carry_no_address_or_credentials(db):
    q = JobQueue(db)
    for text in (repr(q), q._repr_html_()):
        assert "mongodb://" not in text and "127.0.0.1" not in text


def test_a_stale_server_file_is_ignored(workdir):
    tmp_path = workdir
    data = tmp_path / ".mjq-data"
    data.mkdir()
    (data / "mjq-server.uri").write_text("mongodb://127.0.0.1:1/\n999999999\n")  # no such pid
    code = "from mjq_notebook import connect; print(connect().command('ping')['ok'])"
    result = _python(code, tmp_path)
    assert result.stdout.strip() == "1.0", result.stderr
