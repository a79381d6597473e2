"""Find a MongoDB to talk to: a URI if one is given, else the shared embedded server (a
SecantusDB process per data folder, see ``server.py``)."""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .access import (
    AUTH_DB,
    Credentials,
    add_login,
    credentials_for,
    private_folder,
    read_credentials,
)
from .errors import ServerUnavailable

if TYPE_CHECKING:
    from pymongo.database import Database

ENV_VARS = ("MJQ_MONGODB_URI", "MONGODB_URI")
DATA_ENV = "MJQ_DATA_DIR"  # the embedded server's data folder, if not the per-user default
LEGACY_DATA_DIR = ".mjq-data"  # where versions before 0.2 kept it: the working folder
URI_FILE = "mjq-server.uri"  # written by a running embedded server so other processes find it

log = logging.getLogger("mjq_notebook.server")

_INSTALL_HINT = (
    "no MongoDB URI was given (argument, MJQ_MONGODB_URI or MONGODB_URI) and the embedded "
    "server is not installed: pip install 'mjq-notebook[local]', or set "
    "MJQ_MONGODB_URI=mongodb://host:27017"
)


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The embedded server's data folder: ``path``, else ``$MJQ_DATA_DIR``, else this user's
    data folder (``~/.local/share/mjq-notebook`` on Linux), the same from wherever a kernel,
    ``mjq`` command or worker starts, so they all share one server."""
    if path is None:
        path = os.environ.get(DATA_ENV) or default_data_dir()
    return Path(path).expanduser().resolve()


def default_data_dir() -> str:
    """This user's data folder for mjq-notebook (platformdirs), e.g. ~/.local/share/mjq-notebook."""
    from platformdirs import user_data_dir

    return user_data_dir("mjq-notebook", appauthor=False)


_mentioned: set[Path] = set()


def _mention_legacy_folder(folder: Path) -> None:
    """Once per process: a ``./.mjq-data`` of an earlier version is not the folder in use;
    its jobs are still there, and this says how to reach them."""
    legacy = Path(LEGACY_DATA_DIR).resolve()
    if legacy == folder or legacy in _mentioned or not (legacy / "WiredTiger").exists():
        return
    _mentioned.add(legacy)
    log.warning(
        "%s holds the jobs of an earlier mjq-notebook, which kept its data in the working "
        "folder; the embedded server now keeps one folder per user (%s). To use the old "
        "jobs, set %s=%s (or `--path %s`), or, with both servers stopped "
        "(`mjq serve --stop`), move the old folder there",
        legacy,
        folder,
        DATA_ENV,
        legacy,
        LEGACY_DATA_DIR,
    )


def mask_uri(uri: str) -> str:
    """The URI with any password replaced by ``***``, safe for messages and reprs."""
    return re.sub(r"(?<=://)([^:/@]+):([^@/]*)@", r"\1:***@", uri)


def env_uri() -> str | None:
    """The URI from MJQ_MONGODB_URI or MONGODB_URI, if either is set."""
    return next((os.environ[v] for v in ENV_VARS if os.environ.get(v)), None)


def client_for(uri: str, *, timeout: float = 5.0, **kwargs: Any):
    """A ``MongoClient`` for ``uri`` that has answered a ping, or ``ServerUnavailable``."""
    from pymongo import MongoClient
    from pymongo.errors import ConfigurationError, ConnectionFailure, InvalidURI

    ms = int(timeout * 1000)
    options = dict(tz_aware=True, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms)
    try:
        client = MongoClient(uri, **{**options, **kwargs})
    except (InvalidURI, ConfigurationError, ValueError) as exc:
        raise ServerUnavailable(f"invalid MongoDB URI {mask_uri(uri)}: {exc}") from None
    try:
        client.admin.command("ping")
    except ConnectionFailure as exc:
        client.close()
        reason = mask_uri(str(exc).split(", Timeout:")[0])
        raise ServerUnavailable(
            f"no MongoDB server answered at {mask_uri(uri)} within {timeout:g}s ({reason})"
        ) from None
    return client


def wire_version(db: Database) -> int:
    """The server's ``maxWireVersion``: which MongoDB features it has (21: 7.0, 25: 8.0)."""
    return int(db.command("hello").get("maxWireVersion", 0))


def connect(uri: str | None = None, db: str = "job_queue", *, timeout: float = 5.0) -> Database:
    """A pymongo ``Database``: from ``uri``, else ``MJQ_MONGODB_URI``/``MONGODB_URI``, else the
    user's shared embedded server (started as a process of its own if none runs, and again
    if it crashes while this client uses it; see :func:`data_dir`)."""
    uri = uri or env_uri()
    if uri:
        return client_for(uri, timeout=timeout)[db]
    return embedded_client(timeout=timeout)[db]


def embedded_client(path: str | os.PathLike | None = None, *, timeout: float = 5.0):
    """A ``MongoClient`` logged in to the shared embedded server of ``data_dir(path)``.

    Its heartbeats watch the server: when it has died without stopping cleanly (``kill -9``,
    the OOM killer), the first client to notice starts it again, on the same folder and port,
    so every client carries on by itself."""
    from .server import Revive

    folder = data_dir(path)
    address = embedded_uri(folder)
    credentials = read_credentials(folder)
    login = credentials.client_options() if credentials is not None else {}
    return client_for(address, timeout=timeout, event_listeners=[Revive(folder)], **login)


def embedded_uri(
    path: str | os.PathLike | None = None, *, idle_timeout: float | None = None
) -> str:
    """The address of the shared embedded server for ``data_dir(path)`` (no login in it:
    ``connect()`` and :func:`embedded_client` add it from the folder).

    A live server of that folder (its pid exists and it answers a ping) is shared; else one is
    started as a detached process that outlives this one, and stops by itself after
    ``idle_timeout`` seconds with no client (default ``$MJQ_SERVER_IDLE_TIMEOUT``, else an
    hour; 0: never). Processes racing to start it end up with one.
    """
    if not _have_secantus():
        raise ServerUnavailable(_INSTALL_HINT)
    from .server import ensure_server

    folder = data_dir(path)
    _mention_legacy_folder(folder)
    return ensure_server(folder, idle_timeout=idle_timeout).uri


def _have_secantus() -> bool:
    if "secantus" in sys.modules:
        return sys.modules["secantus"] is not None
    try:
        return importlib.util.find_spec("secantus") is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class EmbeddedServer:
    """A running embedded server: clients connect to ``uri``, which carries its login (keep
    it to yourself); ``address`` is the same without it. The repr shows only the address."""

    address: str
    port: int
    server: Any = field(repr=False)  # the SecantusDBServer itself
    credentials: Credentials = field(repr=False)

    @property
    def uri(self) -> str:
        login = f"{self.credentials.user}:{self.credentials.password}@"
        uri = self.address.replace("://", f"://{login}", 1)
        return uri + f"&authSource={AUTH_DB}"

    def stop(self) -> None:
        self.server.stop()


@contextlib.contextmanager
def embedded_server(
    path: str | os.PathLike = ":memory:", port: int = 0
) -> Iterator[EmbeddedServer]:
    """Run an embedded SecantusDB server inside this process for the block; ``.uri`` is its
    address with its login. With a data folder, other processes find it there while the
    block runs (and log in with the folder's credentials)."""
    folder = None if str(path) == ":memory:" else private_folder(path)
    server = _start_server(folder, port=port)
    if folder is not None:
        from .server import write_info

        write_info(folder, server.address, os.getpid(), time.time())
    try:
        yield server
    finally:
        if folder is not None:
            from .server import remove_info

            remove_info(folder, os.getpid())
        with contextlib.suppress(Exception):
            server.stop()


def _start_server(folder: Path | None, port: int = 0) -> EmbeddedServer:
    """Start SecantusDB in this process on 127.0.0.1 (any free port when ``port`` is 0).

    It refuses clients without its login (the folder's, made on first start; a new one for
    an in-memory server), and on a folder it journals every write before acknowledging it
    (``sync_on_commit``), so a ``kill -9`` of the server loses nothing it said was written.
    """
    try:
        from secantus import SecantusDBServer
    except ImportError:
        raise ServerUnavailable(_INSTALL_HINT) from None
    storage = ":memory:" if folder is None else str(folder)
    credentials = Credentials.new() if folder is None else credentials_for(folder)
    try:
        server = SecantusDBServer(
            host="127.0.0.1",
            storage_path=storage,
            port=port,
            require_auth=True,
            enable_test_commands=False,
            sync_on_commit=folder is not None,
        )
    except Exception as exc:  # WiredTiger refuses a folder another process has open
        raise ServerUnavailable(
            f"could not open {folder or storage} for the embedded server: {exc}. If another "
            "process uses that folder, point this one at it with MJQ_MONGODB_URI"
        ) from exc
    try:
        add_login(server, credentials)
        server.start()
    except Exception as exc:  # the port is taken
        with contextlib.suppress(Exception):
            server.stop()  # let go of the folder
        raise ServerUnavailable(
            f"could not start the embedded server on {folder or storage}, port {port}: {exc}"
        ) from exc
    # SecantusDB keeps a record per retryable write and scans them all on each write, so
    # with retries on it slows down minute by minute; our writes are safe to retry ourselves.
    address = f"{server.uri.rstrip('/')}/?retryWrites=false"
    return EmbeddedServer(address, server.port, server, credentials)
