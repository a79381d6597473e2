"""The Binder setup: binder/environment.yml installs what the notebooks import, and
binder/start points them at a mongod that answers, or leaves them on the embedded server."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
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

from .support.servers import free_port

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


def _run_start(tmp_path: Path, bin_dir: Path, command: str, port: int | None = None, **extra: str):
    env = {k: v for k, v in os.environ.items() if k not in ("MJQ_MONGODB_URI", "MONGODB_URI")}
    env.update(PATH=str(bin_dir), HOME=str(tmp_path / "home"), **extra)
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


# A stand-in for conda-forge's mongod 6.0 as far as binder/start and pymongo see it: it speaks
# the wire protocol (OP_QUERY for the handshake, OP_MSG after), answers hello/isMaster as a
# `--replSet` member does (no set before replSetInitiate, then secondary, then primary), and
# records its arguments and the commands it gets. MODE says how replSetInitiate goes:
#   primary            initiate succeeds; primary half a second later, as after an election
#   initiate_fails     initiate answers an error (InvalidReplicaSetConfig)
#   never_primary      initiate succeeds, but the member stays secondary
#   already_initiated  the data folder holds a set already: initiate answers AlreadyInitialized
FAKE_MONGOD = r"""
import datetime, json, os, socketserver, struct, sys, threading, time
import bson
from bson import ObjectId

MODE, RECORD = sys.argv[1], sys.argv[2]
args = sys.argv[3:]
opts = {a: b for a, b in zip(args, args[1:] + [None]) if a.startswith("--")}
port, set_name = int(opts["--port"]), opts.get("--replSet")
lock = threading.Lock()
state = {"config": None, "initiated_at": None}
if MODE == "already_initiated" and set_name:
    member = {"_id": 0, "host": f"127.0.0.1:{port}"}
    state.update(config={"_id": set_name, "members": [member]}, initiated_at=0.0)


def record(entry):
    with lock, open(RECORD, "a") as out:
        out.write(json.dumps(entry) + "\n")


record({"pid": os.getpid(), "argv": args})
threading.Timer(60, os._exit, (0,)).start()  # never outlive a test


def hello(name):
    reply = {"helloOk": True, "maxBsonObjectSize": 16777216, "maxMessageSizeBytes": 48000000,
             "maxWriteBatchSize": 100000, "localTime": datetime.datetime.now(datetime.timezone.utc),
             "logicalSessionTimeoutMinutes": 30, "minWireVersion": 0, "maxWireVersion": 17,
             "readOnly": False, "ok": 1.0}
    primary = True  # a standalone server
    config = state["config"]
    if set_name and config is None:
        primary = False
        reply.update(isreplicaset=True, info="Does not have a valid replica set config")
    elif set_name:
        host = config["members"][0]["host"]
        primary = MODE != "never_primary" and time.monotonic() - state["initiated_at"] > 0.5
        reply.update(setName=set_name, setVersion=1, hosts=[host], me=host)
        if primary:
            reply.update(primary=host, electionId=ObjectId("7fffffff0000000000000001"))
    reply["secondary"] = bool(set_name and config) and not primary
    reply["isWritablePrimary" if name == "hello" else "ismaster"] = primary
    return reply


def error(code, name, message):
    return {"ok": 0.0, "errmsg": message, "code": code, "codeName": name}


def initiate(config):
    if not set_name:
        return error(76, "NoReplicationEnabled", "not running with --replSet")
    if state["config"] is not None:
        return error(23, "AlreadyInitialized", "already initialized")
    if MODE == "initiate_fails":
        return error(93, "InvalidReplicaSetConfig", "the fake refuses this config")
    if config.get("_id") != set_name or len(config.get("members", [])) != 1:
        return error(93, "InvalidReplicaSetConfig", f"bad config {config}")
    state.update(config=config, initiated_at=time.monotonic())
    return {"ok": 1.0}


def command(doc):
    name = next(iter(doc))
    entry = {"command": name}
    if name == "replSetInitiate":
        entry["config"] = doc[name]
    record(entry)
    if name.lower() in ("hello", "ismaster"):
        return hello(name)
    if name == "replSetInitiate":
        return initiate(doc[name])
    if name in ("ping", "endSessions"):
        return {"ok": 1.0}
    return error(59, "CommandNotFound", f"no such command: {name!r}")


class Handler(socketserver.BaseRequestHandler):
    def read(self, size):
        data = b""
        while len(data) < size:
            chunk = self.request.recv(size - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def handle(self):
        try:
            while True:
                length, request_id, _, opcode = struct.unpack("<iiii", self.read(16))
                body = self.read(length - 16)
                if opcode == 2004:  # OP_QUERY: the handshake
                    end = body.index(b"\0", 4)
                    doc = bson.decode(body[end + 9:])
                    reply = struct.pack("<iqii", 0, 0, 0, 1) + bson.encode(command(doc))
                    reply_op = 1  # OP_REPLY
                elif opcode == 2013:  # OP_MSG
                    flags, pos, doc = struct.unpack_from("<I", body)[0], 4, {}
                    end = len(body) - (4 if flags & 1 else 0)
                    while pos < end:
                        kind, pos = body[pos], pos + 1
                        size = struct.unpack_from("<i", body, pos)[0]
                        if kind == 0:
                            doc.update(bson.decode(body[pos:pos + size]))
                        pos += size
                    reply = struct.pack("<IB", 0, 0) + bson.encode(command(doc))
                    reply_op = 2013
                else:
                    return
                header = struct.pack("<iiii", 16 + len(reply), 0, request_id, reply_op)
                self.request.sendall(header + reply)
        except (EOFError, ConnectionError):
            pass


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = daemon_threads = True


Server((opts.get("--bind_ip", "127.0.0.1"), port), Handler).serve_forever()
"""


def _fake_mongod(tmp_path: Path, bin_dir: Path, mode: str) -> Path:
    """Put the fake mongod, in ``mode``, on the PATH; returns the file it records to."""
    fake = tmp_path / "fake_mongod.py"
    fake.write_text(FAKE_MONGOD)
    record = tmp_path / "mongod.jsonl"
    record.touch()
    _write_script(
        bin_dir / "mongod",
        f'#!/bin/sh\nexec "{sys.executable}" "{fake}" {mode} "{record}" "$@"\n',
    )
    return record


def _records(record: Path) -> list[dict]:
    return [json.loads(line) for line in record.read_text().splitlines()]


def _fake_pid(record: Path) -> int:
    return next(entry["pid"] for entry in _records(record) if "pid" in entry)


def _gone(pid: int, within: float = 10) -> bool:
    """Whether process ``pid`` has ended (or ends within ``within`` seconds)."""
    deadline = time.monotonic() + within
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _kill(pid: int) -> None:
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


# what the notebooks would see: MJQ_MONGODB_URI, and the server and topology it leads to
SHOW_CONNECTION = """
import json, os, pymongo
uri = os.environ.get("MJQ_MONGODB_URI")
seen = {"uri": uri}
if uri:
    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    hello = client.admin.command("hello")
    seen.update(setName=hello.get("setName"), isWritablePrimary=hello.get("isWritablePrimary"),
                topology=client.topology_description.topology_type_name)
print(json.dumps(seen))
"""


def _replica_set_started(tmp_path: Path, mode: str) -> None:
    """binder/start with the fake mongod in ``mode``, which ends with a primary: the notebooks
    get a replica-set URI on which the driver finds that primary."""
    bin_dir = _bin_dir(tmp_path)
    record = _fake_mongod(tmp_path, bin_dir, mode)
    port = free_port()
    try:
        done = _run_start(tmp_path, bin_dir, SHOW_CONNECTION, port)
        pid = _fake_pid(record)
        assert pid_alive(pid), "binder/start stopped the mongod the notebooks use"
    finally:
        if record.read_text():
            _kill(_fake_pid(record))
    assert done.returncode == 0, done.stderr
    uri = f"mongodb://127.0.0.1:{port}/?replicaSet=rs0"
    assert json.loads(done.stdout) == {
        "uri": uri,
        "setName": "rs0",
        "isWritablePrimary": True,
        "topology": "ReplicaSetWithPrimary",
    }, done.stderr
    assert f"mongod is the primary of replica set rs0 at {uri}" in done.stderr
    entries = _records(record)
    argv = entries[0]["argv"]
    for option, value in [
        ("--replSet", "rs0"),
        ("--bind_ip", "127.0.0.1"),
        ("--port", str(port)),
        ("--dbpath", str(tmp_path / "home" / ".mongodb" / "data")),
    ]:
        assert option in argv and argv[argv.index(option) + 1] == value, argv
    assert (tmp_path / "home" / ".mongodb" / "data").is_dir()
    commands = [entry["command"] for entry in entries[1:]]
    initiates = [entry["config"] for entry in entries if entry.get("command") == "replSetInitiate"]
    assert initiates == [{"_id": "rs0", "members": [{"_id": 0, "host": f"127.0.0.1:{port}"}]}]
    # binder/start asked "hello" after the initiate, until the member was primary
    assert "hello" in commands[commands.index("replSetInitiate") :], commands


def test_start_runs_a_replica_set(tmp_path):
    _replica_set_started(tmp_path, "primary")


def test_start_when_the_set_is_already_initiated(tmp_path):
    _replica_set_started(tmp_path, "already_initiated")


def _falls_back(tmp_path: Path, bin_dir: Path, record: Path | None, said: str, **env):
    """binder/start falls back: MJQ_MONGODB_URI unset, why in its messages, the mongod it started
    stopped, Jupyter (here: the command) started all the same."""
    done = _run_start(tmp_path, bin_dir, PRINT_URI, free_port(), **env)
    pid = _fake_pid(record) if record else None
    try:
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "None", done.stderr
        assert said in done.stderr and "embedded server" in done.stderr, done.stderr
        if pid is not None:
            assert _gone(pid), "binder/start left running a mongod the notebooks don't use"
    finally:
        if pid is not None:
            _kill(pid)
    return done


def test_start_when_initiate_fails(tmp_path):
    bin_dir = _bin_dir(tmp_path)
    record = _fake_mongod(tmp_path, bin_dir, "initiate_fails")
    _falls_back(tmp_path, bin_dir, record, "replSetInitiate failed")
    assert [e["command"] for e in _records(record)[1:]].count("replSetInitiate") == 1
    log = (tmp_path / "home" / ".mongodb" / "mongod.log").read_text()
    assert "InvalidReplicaSetConfig" in log or "the fake refuses this config" in log


def test_start_when_never_primary(tmp_path):
    bin_dir = _bin_dir(tmp_path)
    record = _fake_mongod(tmp_path, bin_dir, "never_primary")
    started = time.monotonic()
    # 5 s: each poll is a Python process importing pymongo (up to a second or more on a busy
    # machine), so the repeated asking shows within the wait whatever the load
    _falls_back(tmp_path, bin_dir, record, "did not become primary", MJQ_BINDER_MONGOD_WAIT="5")
    took = time.monotonic() - started
    # bash counts SECONDS in whole seconds: a wait of 5 s lasts between 4 and 5
    assert 4 <= took < 20, f"start gave up after {took:.1f}s, not after the 5s it was given"
    commands = [e["command"] for e in _records(record)[1:]]
    assert commands.count("replSetInitiate") == 1
    assert commands[commands.index("replSetInitiate") :].count("hello") >= 2, commands


def test_start_when_mongod_never_answers(tmp_path):
    bin_dir = _bin_dir(tmp_path)
    pid_file = tmp_path / "mongod.pid"
    # a mongod that starts but never listens
    _write_script(bin_dir / "mongod", f'#!/bin/sh\necho $$ > "{pid_file}"\nexec sleep 60\n')
    started = time.monotonic()
    _falls_back(tmp_path, bin_dir, None, "did not answer", MJQ_BINDER_MONGOD_WAIT="2")
    took = time.monotonic() - started
    pid = int(pid_file.read_text())
    try:
        assert _gone(pid), "binder/start left running a mongod that never answered"
    finally:
        _kill(pid)
    # bash counts SECONDS in whole seconds: a wait of 2 s lasts between 1 and 2
    assert 1 <= took < 15, f"start gave up after {took:.1f}s, not after the 2s it was given"


def test_start_when_the_server_has_no_replSetInitiate(tmp_path):
    """A real server that answers but can't be initiated (the embedded one, standing in for
    mongod, answers CommandNotFound): the fallback, with that server stopped."""
    pytest.importorskip("secantus")
    bin_dir = _bin_dir(tmp_path)
    pid_file = tmp_path / "mongod.pid"
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
    try:
        _falls_back(tmp_path, bin_dir, None, "replSetInitiate failed")
    finally:
        _stop(pid_file)
    assert not pid_alive(int(pid_file.read_text()))


def test_start_when_mongod_dies(tmp_path):
    bin_dir = _bin_dir(tmp_path)
    _write_script(bin_dir / "mongod", "#!/bin/sh\nexit 1\n")
    started = time.monotonic()
    _falls_back(tmp_path, bin_dir, None, "did not answer")
    took = time.monotonic() - started
    assert took < 10, f"start waited {took:.1f}s for a mongod that had exited"


# -- the README's Binder links ----------------------------------------------------------------


def test_readme_binder_links_open_a_notebook_that_exists():
    links = re.findall(r"https://mybinder\.org/v2/gh/[^)\s]+", (ROOT / "README.md").read_text())
    assert links, "the README has no Binder link"
    for link in links:
        path = re.search(r"[?&]urlpath=lab/tree/([^&]+)", link)
        assert path, f"{link} opens no notebook"
        assert (ROOT / path.group(1)).is_file(), f"{link} opens {path.group(1)}: no such file"
