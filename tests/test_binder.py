"""The Binder setup: binder/environment.yml installs what the notebooks import, and
binder/start points them at a mongod that answers, or leaves them on the embedded server."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mjq_notebook.server import pid_alive

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
START = BINDER / "start"
NOTEBOOKS = ROOT / "notebooks"
EXPECTED_NOTEBOOKS = ("01-quickstart", "02-live-dashboard", "03-latency-analysis")
TIMEOUT = 60


# -- environment.yml --------------------------------------------------------------------------


def _environment() -> dict:
    return yaml.safe_load((BINDER / "environment.yml").read_text())


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _conda_deps(env: dict) -> list[str]:
    return [dep for dep in env["dependencies"] if isinstance(dep, str)]


def _pip_deps(env: dict) -> list[str]:
    return [line for dep in env["dependencies"] if isinstance(dep, dict) for line in dep["pip"]]


def _local_pip_line(line: str) -> tuple[Path, set[str]] | None:
    """(the folder, the extras) of a pip line that installs a local folder, else None."""
    line = re.sub(r"^(-e|--editable)[ =]", "", line.strip())
    if not line.startswith((".", "/")):
        return None
    match = re.fullmatch(r"([^\[\]]+?)(?:\[([^\]]*)\])?", line)
    assert match, f"can't read the pip line {line!r}"
    extras = {canonicalize_name(e) for e in (match.group(2) or "").split(",") if e.strip()}
    # conda and mamba run pip in the environment file's folder
    return (BINDER / match.group(1)).resolve(), extras


def _conda_name(spec: str) -> str:
    return canonicalize_name(re.match(r"[A-Za-z0-9_.\-]+", spec).group(0))


def test_environment_yml():
    env = _environment()
    assert "conda-forge" in env["channels"]
    conda = {_conda_name(spec) for spec in _conda_deps(env)}
    assert "mongodb" in conda  # conda-forge's MongoDB server: binder/start runs its mongod
    assert "pip" in conda
    local = [found for line in _pip_deps(env) if (found := _local_pip_line(line))]
    assert [folder for folder, _ in local] == [ROOT], "the pip section must install this repo"
    extras = local[0][1]
    assert extras, "the repo is installed without the extras the notebooks need"
    known = {canonicalize_name(e) for e in _pyproject()["optional-dependencies"]}
    assert extras <= known, f"unknown extras {extras - known}"
    assert "local" in extras  # the embedded server the notebooks fall back to


def _installed_by_environment() -> set[str]:
    """Every distribution binder/environment.yml installs: what it names, the project with its
    requested extras, and their dependencies, recursively (as installed here)."""
    env = _environment()
    project = _pyproject()
    wanted: list[tuple[str, set[str]]] = [(_conda_name(spec), set()) for spec in _conda_deps(env)]
    provided: set[str] = set()
    for line in _pip_deps(env):
        local = _local_pip_line(line)
        if local is None:
            req = Requirement(line)
            wanted.append((canonicalize_name(req.name), set(req.extras)))
            continue
        folder, extras = local
        assert folder == ROOT, f"pip installs another local folder: {folder}"
        provided.add(canonicalize_name(project["name"]))
        lines = list(project["dependencies"])
        for extra, deps in project.get("optional-dependencies", {}).items():
            if canonicalize_name(extra) in extras:
                lines += deps
        for req in map(Requirement, lines):
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                wanted.append((canonicalize_name(req.name), set(req.extras)))
    seen: set[tuple[str, frozenset[str]]] = set()
    while wanted:
        name, extras = wanted.pop()
        if (name, frozenset(extras)) in seen:
            continue
        seen.add((name, frozenset(extras)))
        provided.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # a conda-only package (python, mongodb), or not installed here
        active = ["", *sorted(canonicalize_name(e) for e in extras)]
        for req in map(Requirement, requires):
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in active):
                wanted.append((canonicalize_name(req.name), set(req.extras)))
    return provided


def _notebooks() -> list[Path]:
    if not NOTEBOOKS.is_dir():
        return []
    return sorted(p for p in NOTEBOOKS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def _imports(notebook: Path) -> set[str]:
    """The top-level modules a notebook's code cells import."""
    modules = set()
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = cell["source"]
        source = "".join(source) if isinstance(source, list) else source
        # IPython magics and shell escapes are not Python
        code = "\n".join(
            "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
        )
        for node in ast.walk(ast.parse(code, filename=str(notebook))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                modules.add(node.module.split(".")[0])
    return modules


def test_notebooks_exist():
    missing = [n for n in EXPECTED_NOTEBOOKS if not (NOTEBOOKS / f"{n}.ipynb").is_file()]
    assert not missing, f"missing notebooks under notebooks/: {missing}"


@pytest.mark.parametrize(
    "notebook",
    [pytest.param(p, id=p.name) for p in _notebooks()]
    or [pytest.param(None, marks=pytest.mark.skip(reason="no notebooks under notebooks/ yet"))],
)
def test_environment_names_what_the_notebooks_import(notebook):
    provided = _installed_by_environment()
    by_module = metadata.packages_distributions()
    rel = notebook.relative_to(ROOT)
    problems = []
    for module in sorted(_imports(notebook) - set(sys.stdlib_module_names) - {"mjq_notebook"}):
        dists = {canonicalize_name(d) for d in by_module.get(module, [])}
        if not dists:
            problems.append(f"{module} (not installed here: which distribution provides it?)")
        elif not dists & provided:
            problems.append(f"{module} (from {', '.join(sorted(dists))})")
    assert not problems, (
        f"{rel} imports modules that binder/environment.yml does not install: "
        + "; ".join(problems)
    )


# -- start ------------------------------------------------------------------------------------


def test_start_script_shape():
    assert subprocess.run(["bash", "-n", str(START)], timeout=TIMEOUT).returncode == 0
    assert START.stat().st_mode & stat.S_IXUSR, "binder/start must be executable"
    lines = START.read_text().splitlines()
    assert lines[0] == "#!/bin/bash"
    assert [line for line in lines if line.strip()][-1] == 'exec "$@"'


def _write_script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def _bin_dir(tmp_path: Path) -> Path:
    """A PATH folder with just what binder/start needs (so no real mongod is found): the shell
    tools, and a `python` that is this one (with pymongo)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "sh", "mkdir", "nohup", "sleep"):
        found = shutil.which(tool)
        assert found, f"{tool} is not on PATH"
        (bin_dir / tool).symlink_to(found)
    # a wrapper, not a symlink: a venv's python must be started by its own path
    _write_script(bin_dir / "python", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    return bin_dir


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run_start(tmp_path: Path, bin_dir: Path, command: str, port: int | None = None):
    env = {k: v for k, v in os.environ.items() if k not in ("MJQ_MONGODB_URI", "MONGODB_URI")}
    env.update(PATH=str(bin_dir), HOME=str(tmp_path / "home"))
    if port is not None:
        env["MJQ_BINDER_MONGOD_PORT"] = str(port)
    (tmp_path / "home").mkdir()
    return subprocess.run(
        ["bash", str(START), sys.executable, "-c", command],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


PRINT_URI = "import os; print(os.environ.get('MJQ_MONGODB_URI'))"


def test_start_without_mongod(tmp_path):
    bin_dir = _bin_dir(tmp_path)
    assert shutil.which("mongod", path=str(bin_dir)) is None
    done = _run_start(tmp_path, bin_dir, PRINT_URI)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"
    assert "embedded server" in done.stderr


def _stop(pid_file: Path) -> None:
    """Stop the fake mongod whose pid the shim recorded, and wait until it is gone."""
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    if not pid_alive(pid):
        return
    os.kill(pid, signal.SIGTERM)  # the embedded server flushes and exits
    deadline = time.monotonic() + 30
    while pid_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)


def test_start_with_mongod(tmp_path):
    pytest.importorskip("secantus")
    bin_dir = _bin_dir(tmp_path)
    pid_file = tmp_path / "mongod.pid"
    # a stand-in for mongod: the embedded server, on the port and data folder it is given
    _write_script(
        bin_dir / "mongod",
        f"""#!/bin/sh
while [ $# -gt 0 ]; do
    case "$1" in
        --port) port="$2"; shift ;;
        --dbpath) dbpath="$2"; shift ;;
    esac
    shift
done
echo $$ > "{pid_file}"
exec "{sys.executable}" -m mjq_notebook.server --path "$dbpath" --port "$port" \\
    --idle-timeout 60
""",
    )
    port = _free_port()
    ping = (
        "import os, pymongo; uri = os.environ['MJQ_MONGODB_URI']; "
        "print(pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000).admin.command('ping')"
        "['ok']); print(uri)"
    )
    try:
        done = _run_start(tmp_path, bin_dir, ping, port)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == ["1.0", f"mongodb://127.0.0.1:{port}/"], done.stderr
        assert f"mongod answers at mongodb://127.0.0.1:{port}/" in done.stderr
        assert (tmp_path / "home" / ".mongodb" / "data").is_dir()
    finally:
        _stop(pid_file)
    assert not pid_alive(int(pid_file.read_text()))


def test_start_when_mongod_dies(tmp_path):
    bin_dir = _bin_dir(tmp_path)
    _write_script(bin_dir / "mongod", "#!/bin/sh\nexit 1\n")
    started = time.monotonic()
    done = _run_start(tmp_path, bin_dir, PRINT_URI, _free_port())
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"
    assert "did not answer" in done.stderr and "embedded server" in done.stderr
    assert took < 10, f"start waited {took:.1f}s for a mongod that had exited"


# -- the README's Binder links ----------------------------------------------------------------


def test_readme_binder_links_open_a_notebook_that_exists():
    links = re.findall(r"https://mybinder\.org/v2/gh/[^)\s]+", (ROOT / "README.md").read_text())
    assert links, "the README has no Binder link"
    for link in links:
        path = re.search(r"[?&]urlpath=lab/tree/([^&]+)", link)
        assert path, f"{link} opens no notebook"
        assert (ROOT / path.group(1)).is_file(), f"{link} opens {path.group(1)}: no such file"
