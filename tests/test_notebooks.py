"""The notebooks under notebooks/ run top to bottom on a fresh kernel, as a reader would run
them: no cell errors, nothing printed to a cell's stderr (warnings included), no "nan" in the
prose they write from their numbers, and nothing of theirs left running at the end.

They run against the test server through ``MJQ_MONGODB_URI``, and the quickstart once more
with no URI at all, on the embedded server it starts for its folder. They are stored without
outputs; ``MJQ_SCREENSHOTS=1`` writes the figures marked in a cell's metadata
(``{"mjq": {"screenshot": NAME}}``) to docs/NAME for the README.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mjq_notebook.server import pid_alive, read_info, stop_server

from .support.jupyter import isolated_jupyter_env, require_modules

require_modules("nbformat", "nbclient", needed_by="the notebook tests")

if TYPE_CHECKING:
    import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
QUEUES = {  # notebook -> the queues it makes in the database connect() names (job_queue)
    "01-quickstart": ["quickstart"],
    "02-live-dashboard": ["live"],
    "03-latency-analysis": ["latency"],
}
CELL_TIMEOUT_S = 240

# Run first and last in the kernel: what runs at the end that was not running at the start,
# leaving out what belongs to the notebook's open MongoClient and to the shared server.
BEFORE = """
import threading as _t
_mjq_threads_before = {t.ident for t in _t.enumerate()}
"""
AFTER = """
import json as _json, threading as _t, time as _time
import psutil as _psutil


def _mjq_leftovers():
    threads = [t.name for t in _t.enumerate() if t.ident not in _mjq_threads_before
               and t.name != "mjq-server-reaper"  # waits on the shared server (embedded)
               and not t.name.startswith("pymongo_")]  # the open client's monitors
    children = [" ".join(p.cmdline()) for p in _psutil.Process().children(recursive=True)
                if "mjq_notebook.server" not in " ".join(p.cmdline())]
    return {"threads": threads, "children": children}


_deadline = _time.monotonic() + 5  # a closed widget's thread may take a moment to end
while any(_mjq_leftovers().values()) and _time.monotonic() < _deadline:
    _time.sleep(0.1)
print("MJQ-LEFTOVERS " + _json.dumps(_mjq_leftovers()))
"""


def run_notebook(source: Path, workdir: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    """Execute a copy of ``source`` in ``workdir`` with the checks around it; the executed
    notebook (the checks' cells removed) and what was left running."""
    import nbclient
    import nbformat

    notebook = nbformat.read(source, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(BEFORE))
    notebook.cells.append(nbformat.v4.new_code_cell(AFTER))
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute(env=env)  # raises CellExecutionError naming the cell on any error
    last = notebook.cells.pop()
    notebook.cells.pop(0)
    report = "".join(out.get("text", "") for out in last.outputs if out.output_type == "stream")
    leftovers = json.loads(report.split("MJQ-LEFTOVERS ", 1)[1])
    return notebook, leftovers


def check_outputs(notebook: nbformat.NotebookNode, name: str) -> None:
    """No stderr output in any cell, and no "nan" or durations rounded to zero ("0.00 s") in
    the prose and tables the notebook writes."""
    for index, cell in enumerate(notebook.cells):
        for out in cell.get("outputs", []):
            if out.output_type == "stream" and out.name == "stderr":
                pytest.fail(f"{name} cell {index} printed to stderr:\n{out.text}")
            markdown = out.get("data", {}).get("text/markdown", "")
            assert not re.search(r"\bnan\b", markdown, re.I), (
                f"{name} cell {index} wrote a NaN into its text:\n{markdown}"
            )
            # a duration rounded away ("waited under 0.00 s" for a 4 ms wait)
            assert not re.search(r"(?<![\d.])0(\.0+)? (ms|s|min|h)\b", markdown), (
                f"{name} cell {index} wrote a duration as zero:\n{markdown}"
            )
            html = out.get("data", {}).get("text/html", "")
            assert not re.search(r">0\.00<", html), f"{name} cell {index} shows 0.00:\n{html}"


def save_screenshots(notebook: nbformat.NotebookNode) -> None:
    for cell in notebook.cells:
        name = cell.metadata.get("mjq", {}).get("screenshot")
        images = [
            out.data["image/png"]
            for out in cell.get("outputs", [])
            if "data" in out and "image/png" in out.data
        ]
        if name and images:
            (ROOT / "docs" / name).write_bytes(base64.b64decode(images[0]))


@pytest.fixture
def drop_notebook_queues(client):
    """Drop the queues the notebook made (they live in connect()'s default database)."""
    made: list[str] = []
    yield made
    database = client["job_queue"]
    for name in database.list_collection_names():
        if any(name == q or name.startswith(f"{q}.") for q in made):
            database.drop_collection(name)


def tracked_notebooks() -> dict[str, str]:
    """The notebooks under notebooks/ as git would commit them (the index, after git's clean
    filter), by name; the files themselves outside a git checkout (an sdist)."""
    git = shutil.which("git")
    listed = (
        subprocess.run([git, "ls-files", "-z", "notebooks/*.ipynb"], cwd=ROOT, capture_output=True)
        if git
        else None
    )
    if listed is None or listed.returncode != 0:
        return {path.name: path.read_text(encoding="utf-8") for path in NOTEBOOKS}
    names = [name for name in listed.stdout.decode().split("\0") if name]
    return {
        Path(name).name: subprocess.run(
            [git, "show", f":{name}"], cwd=ROOT, capture_output=True, check=True
        ).stdout.decode("utf-8")
        for name in names
    }


def test_tracked_notebooks_are_stored_without_outputs():
    import nbformat

    """What is committed has no outputs and no execution counts, and is exactly what
    nbstripout (the clean filter in .gitattributes) would store: CI catches a notebook
    committed from a clone without the filter."""
    stored = tracked_notebooks()
    assert {Path(name).stem for name in stored} == set(QUEUES)
    for name, text in stored.items():
        notebook = nbformat.reads(text, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (
                    f"{name} is stored with outputs: run `nbstripout --install` (README) and "
                    f"`git add` it again, or `nbstripout notebooks/{name}`"
                )
        if importlib.util.find_spec("nbstripout"):
            stripped = subprocess.run(
                [sys.executable, "-m", "nbstripout"], input=text.encode(), capture_output=True,
                check=True,
            ).stdout.decode("utf-8")  # fmt: skip
            assert stripped == text, f"{name} is not stored as nbstripout would store it"


def test_git_strips_notebook_outputs_and_ignores_checkpoints(tmp_path):
    """.gitattributes sends notebooks through nbstripout on ``git add``, which drops what
    running a notebook in Lab writes; Lab's checkpoint copies are ignored."""
    import nbformat

    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    path = "notebooks/01-quickstart.ipynb"

    def git_out(*args: str) -> str:
        return subprocess.run([git, *args], cwd=ROOT, capture_output=True, text=True).stdout

    assert git_out("check-attr", "filter", "diff", "--", path).splitlines() == [
        f"{path}: filter: nbstripout", f"{path}: diff: ipynb"]  # fmt: skip
    checkpoint = "notebooks/.ipynb_checkpoints/01-quickstart-checkpoint.ipynb"
    assert git_out("check-ignore", "--no-index", checkpoint).strip() == checkpoint
    pytest.importorskip("nbstripout", reason="the output filter needs nbstripout (dev extra)")
    notebook = nbformat.read(ROOT / path, as_version=4)
    for count, cell in enumerate(notebook.cells, 1):  # as Lab saves it after a run
        if cell.cell_type == "code":
            cell.execution_count = count
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hi\n")]
    ran = nbformat.writes(notebook)
    stripped = subprocess.run(
        [sys.executable, "-m", "nbstripout"], input=ran.encode(), capture_output=True, check=True
    ).stdout.decode("utf-8")
    assert stripped == (ROOT / path).read_text(encoding="utf-8")


@pytest.mark.timeout(600)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_clean(path, server_uri, tmp_path, drop_notebook_queues):
    drop_notebook_queues.extend(QUEUES[path.stem])
    env = isolated_jupyter_env(tmp_path / "jupyter")
    env["MJQ_MONGODB_URI"] = server_uri
    notebook, leftovers = run_notebook(path, tmp_path, env)
    check_outputs(notebook, path.name)
    assert leftovers == {"threads": [], "children": []}, f"{path.name} left running: {leftovers}"
    if os.environ.get("MJQ_SCREENSHOTS"):
        save_screenshots(notebook)


@pytest.mark.timeout(600)
def test_quickstart_runs_on_the_embedded_server_without_a_uri(tmp_path):
    pytest.importorskip("secantus", reason="the embedded server needs the local extra")
    env = isolated_jupyter_env(tmp_path / "jupyter")  # it drops MJQ_MONGODB_URI/MONGODB_URI
    env["MJQ_SERVER_IDLE_TIMEOUT"] = "120"  # gone soon even if this test dies half-way
    workdir = tmp_path / "work"
    workdir.mkdir()
    source = ROOT / "notebooks" / "01-quickstart.ipynb"
    shutil.copy(source, workdir)
    data = Path(env["MJQ_DATA_DIR"])  # the test's own (conftest); a user's is per user
    try:
        notebook, leftovers = run_notebook(source, workdir, env)
        check_outputs(notebook, source.name)
        assert leftovers == {"threads": [], "children": []}
        info = read_info(data)  # the notebook started the shared server
        assert info is not None and pid_alive(info.pid)
    finally:
        info = read_info(data)
        stop_server(data)
    assert info is None or not pid_alive(info.pid)
