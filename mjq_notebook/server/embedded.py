"""SecantusDB inside this process: the server ``embedded_server()`` runs for a block, and the
one a detached server process runs (``daemon.py``)."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import ServerUnavailable
from .access import Credentials, add_login, credentials_for, private_folder
from .folder import DataFolder
from .records import hold_folder, remove_info, write_info

INSTALL_HINT = (
    "no MongoDB URI was given (argument, MJQ_MONGODB_URI or MONGODB_URI) and the embedded "
    "server is not installed: pip install 'mjq-notebook[local]', or set "
    "MJQ_MONGODB_URI=mongodb://host:27017"
)


def have_secantus() -> bool:
    """Whether SecantusDB (the ``local`` extra) can be imported, without importing it."""
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
        return self.credentials.in_uri(self.address)

    def stop(self) -> None:
        self.server.stop()


@contextlib.contextmanager
def embedded_server(
    path: str | os.PathLike = ":memory:", port: int = 0, *, test_commands: bool = False
) -> Iterator[EmbeddedServer]:
    """Run an embedded SecantusDB server inside this process for the block; ``.uri`` is its
    address with its login. With a data folder, other processes find it there while the
    block runs (and log in with the folder's credentials). ``test_commands``: accept
    ``configureFailPoint`` (fault injection, for tests; never on a server others use)."""
    with contextlib.ExitStack() as stack:
        folder = None
        if str(path) != ":memory:":
            folder = stack.enter_context(private_folder(path))
            hold_folder(folder)  # while the block runs: the URI file's pid is then this one's
        server = start_server(folder, port=port, test_commands=test_commands)
        if folder is not None:
            write_info(folder, server.address, os.getpid(), time.time())
        try:
            yield server
        finally:
            if folder is not None:
                remove_info(folder, os.getpid())
            with contextlib.suppress(Exception):
                server.stop()


def start_server(
    folder: DataFolder | None, port: int = 0, *, test_commands: bool = False
) -> EmbeddedServer:
    """Start SecantusDB in this process on 127.0.0.1 (any free port when ``port`` is 0).

    It refuses clients without its login (the folder's, made on first start; a new one for
    an in-memory server), and on a folder it journals every write before acknowledging it
    (``sync_on_commit``), so a ``kill -9`` of the server loses nothing it said was written.
    """
    try:
        from secantus import SecantusDBServer
    except ImportError:
        raise ServerUnavailable(INSTALL_HINT) from None
    # SecantusDB opens its files by path, not through our handle. That is safe: every
    # component of this path was checked (folder.py) to be a real folder of this user or root
    # that no other user may write to, so no one else can swap any part of it for a link.
    storage = ":memory:" if folder is None else str(folder.path)
    credentials = Credentials.new() if folder is None else credentials_for(folder)
    try:
        server = SecantusDBServer(
            host="127.0.0.1",
            storage_path=storage,
            port=port,
            require_auth=True,
            enable_test_commands=test_commands,
            sync_on_commit=folder is not None,
        )
    except Exception as exc:  # WiredTiger refuses a folder another process has open
        raise ServerUnavailable(
            f"could not open {storage} for the embedded server: {exc}. If another "
            "process serves that folder, connect() and mjq find that server there"
        ) from exc
    try:
        add_login(server, credentials)
        server.start()
    except Exception as exc:  # the port is taken
        with contextlib.suppress(Exception):
            server.stop()  # let go of the folder
        raise ServerUnavailable(
            f"could not start the embedded server on {storage}, port {port}: {exc}"
        ) from exc
    # SecantusDB keeps a record per retryable write and scans them all on each write, so
    # with retries on it slows down minute by minute; our writes are safe to retry ourselves
    # (retries.py, tests/test_faults.py). A 2 s heartbeat: after a "not primary" error the
    # client finds the server again within 2 s, where the default 10 s outlasted the server
    # selection of our retry, which then found no server.
    address = f"{server.uri.rstrip('/')}/?retryWrites=false&heartbeatFrequencyMS=2000"
    return EmbeddedServer(address, server.port, server, credentials)
