"""Find a MongoDB to talk to: a URI if one is given, else the embedded SecantusDB server."""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import threading
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

_embedded_lock = threading.Lock()
_embedded: dict[str, Any] = {}  # path -> running server started by this process


def mask_uri(uri: str) -> str:
    """The URI with any password replaced by ``***``, safe for messages and reprs."""
    return re.sub(r"(?<=://)([^:/@]+):([^@/]*)@", r"\1:***@", uri)


def _env_uri() -> str | None:
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
    embedded server with its data in ``./.mjq-data`` (started once per process).
    """
    uri = uri or _env_uri() or embedded_uri()
    return client_for(uri, timeout=timeout)[db]


def embedded_uri(path: str | os.PathLike = DEFAULT_DATA_DIR) -> str:
    """The URI of the embedded server for ``path``: one another process runs, else our own."""
    folder = Path(path).resolve()
    with _embedded_lock:
        if str(folder) in _embedded:
            return _embedded[str(folder)].uri
        running = _running_uri(folder)
        if running:
            return running
        server = _start_server(folder)
        _embedded[str(folder)] = server
        atexit.register(_stop_server, server, folder)
        return server.uri


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
    """Run an embedded SecantusDB server for the block; ``.uri`` is its address."""
    folder = None if str(path) == ":memory:" else Path(path).resolve()
    server = _start_server(folder, port=port)
    try:
        yield server
    finally:
        _stop_server(server, folder)


def _start_server(folder: Path | None, port: int = 0) -> EmbeddedServer:
    try:
        from secantus import SecantusDBServer
    except ImportError:
        raise ServerUnavailable(_INSTALL_HINT) from None
    storage = ":memory:"
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        storage = str(folder)
    server = SecantusDBServer(storage_path=storage, port=port)
    try:
        server.start()
    except Exception as exc:  # WiredTiger refuses a folder another process has open
        raise ServerUnavailable(
            f"could not start the embedded server on {folder or storage}: {exc}. If another "
            "process uses that folder, point this one at it with MJQ_MONGODB_URI"
        ) from exc
    # SecantusDB keeps a record per retryable write and scans them all on each write, so
    # with retries on it slows down minute by minute; our writes are safe to retry ourselves.
    embedded = EmbeddedServer(f"{server.uri.rstrip('/')}/?retryWrites=false", server.port, server)
    if folder is not None:
        (folder / URI_FILE).write_text(f"{embedded.uri}\n{os.getpid()}\n")
    return embedded


def _stop_server(server: EmbeddedServer, folder: Path | None) -> None:
    if folder is not None:
        with contextlib.suppress(OSError):
            (folder / URI_FILE).unlink()
    with contextlib.suppress(Exception):
        server.stop()


def _running_uri(folder: Path) -> str | None:
    """The URI another live process serves ``folder`` on; None when the file is stale."""
    try:
        uri, pid = (folder / URI_FILE).read_text().split()[:2]
        os.kill(int(pid), 0)  # signal 0 only asks whether the process exists
    except (OSError, ValueError):
        return None
    return uri
