"""Find a MongoDB to talk to: a URI if one is given, else the shared embedded server (a
SecantusDB process per data folder, see ``server.py``)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ServerUnavailable

if TYPE_CHECKING:
    from pymongo.database import Database

ENV_VARS = ("MJQ_MONGODB_URI", "MONGODB_URI")
DEFAULT_DATA_DIR = ".mjq-data"
URI_FILE = "mjq-server.uri"  # written by a running embedded server so other processes find it

_INSTALL_HINT = (
    "no MongoDB URI was given (argument, MJQ_MONGODB_URI or MONGODB_URI) and the embedded "
    "server is not installed: pip install 'mjq-notebook[local]', or set "
    "MJQ_MONGODB_URI=mongodb://host:27017"
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
    shared embedded server for ``./.mjq-data`` (started as a process of its own if none runs).
    """
    uri = uri or env_uri() or embedded_uri()
    return client_for(uri, timeout=timeout)[db]


def embedded_uri(
    path: str | os.PathLike = DEFAULT_DATA_DIR, *, idle_timeout: float | None = None
) -> str:
    """The URI of the shared embedded server for the data folder ``path``.

    A live server of that folder (its pid exists and it answers a ping) is shared; else one is
    started as a detached process that outlives this one, and stops by itself after
    ``idle_timeout`` seconds with no client (default ``$MJQ_SERVER_IDLE_TIMEOUT``, else an
    hour; 0: never). Processes racing to start it end up with one.
    """
    if not _have_secantus():
        raise ServerUnavailable(_INSTALL_HINT)
    from .server import ensure_server

    return ensure_server(path, idle_timeout=idle_timeout).uri


def _have_secantus() -> bool:
    if "secantus" in sys.modules:
        return sys.modules["secantus"] is not None
    try:
        return importlib.util.find_spec("secantus") is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class EmbeddedServer:
    """A running embedded server: ``uri`` is what clients connect to."""

    uri: str
    port: int
    server: Any  # the SecantusDBServer itself

    def stop(self) -> None:
        self.server.stop()


@contextlib.contextmanager
def embedded_server(
    path: str | os.PathLike = ":memory:", port: int = 0
) -> Iterator[EmbeddedServer]:
    """Run an embedded SecantusDB server inside this process for the block; ``.uri`` is its
    address. With a data folder, other processes find it there while the block runs."""
    folder = None if str(path) == ":memory:" else Path(path).resolve()
    server = _start_server(folder, port=port)
    if folder is not None:
        from .server import write_info

        write_info(folder, server.uri, os.getpid(), time.time())
    try:
        yield server
    finally:
        if folder is not None:
            from .server import remove_info

            remove_info(folder, os.getpid())
        with contextlib.suppress(Exception):
            server.stop()


def _start_server(folder: Path | None, port: int = 0) -> EmbeddedServer:
    """Start SecantusDB in this process on 127.0.0.1 (any free port when ``port`` is 0)."""
    try:
        from secantus import SecantusDBServer
    except ImportError:
        raise ServerUnavailable(_INSTALL_HINT) from None
    storage = ":memory:"
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        storage = str(folder)
    try:
        server = SecantusDBServer(host="127.0.0.1", storage_path=storage, port=port)
    except Exception as exc:  # WiredTiger refuses a folder another process has open
        raise ServerUnavailable(
            f"could not open {folder or storage} for the embedded server: {exc}. If another "
            "process uses that folder, point this one at it with MJQ_MONGODB_URI"
        ) from exc
    try:
        server.start()
    except Exception as exc:  # the port is taken
        with contextlib.suppress(Exception):
            server.stop()  # let go of the folder
        raise ServerUnavailable(
            f"could not start the embedded server on {folder or storage}, port {port}: {exc}"
        ) from exc
    # SecantusDB keeps a record per retryable write and scans them all on each write, so
    # with retries on it slows down minute by minute; our writes are safe to retry ourselves.
    return EmbeddedServer(f"{server.uri.rstrip('/')}/?retryWrites=false", server.port, server)
