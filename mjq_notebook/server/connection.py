"""Find a MongoDB to talk to: a URI if one is given, else the user's shared embedded server
(a SecantusDB process per data folder, see ``lifecycle.py``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ServerUnavailable
from .access import read_credentials
from .client import client_for, env_uri
from .embedded import INSTALL_HINT, have_secantus
from .lifecycle import Revive, ensure_server

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.database import Database

DATA_ENV = "MJQ_DATA_DIR"  # the embedded server's data folder, if not the per-user default
log = logging.getLogger("mjq_notebook.server")


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The embedded server's data folder: ``path``, else ``$MJQ_DATA_DIR``, else this user's
    data folder (``~/.local/share/mjq-notebook`` on Linux), the same from wherever a kernel,
    ``mjq`` command or worker starts, so they all share one server. Made absolute, but no
    symlink in it is resolved here: ``folder.py`` checks each one where it is."""
    if path is None:
        path = os.environ.get(DATA_ENV) or default_data_dir()
    return Path(os.path.abspath(os.path.expanduser(path)))


def default_data_dir() -> str:
    """This user's data folder for mjq-notebook (platformdirs), e.g. ~/.local/share/mjq-notebook."""
    from platformdirs import user_data_dir

    return user_data_dir("mjq-notebook", appauthor=False)


def connect(uri: str | None = None, db: str = "job_queue", *, timeout: float = 5.0) -> Database:
    """A pymongo ``Database``: from ``uri``, else ``MJQ_MONGODB_URI``/``MONGODB_URI``, else the
    user's shared embedded server (started as a process of its own if none runs, and again
    if it crashes while this client uses it; see :func:`data_dir`)."""
    uri = uri or env_uri()
    if uri:
        return client_for(uri, timeout=timeout)[db]
    return embedded_client(timeout=timeout)[db]


def embedded_client(path: str | os.PathLike | None = None, *, timeout: float = 5.0) -> MongoClient:
    """A ``MongoClient`` logged in to the shared embedded server of ``data_dir(path)``.

    Its heartbeats watch the server: when it has died without stopping cleanly (``kill -9``,
    the OOM killer), the first client to notice starts it again, on the same folder and port,
    so every client carries on by itself."""
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
    if not have_secantus():
        raise ServerUnavailable(INSTALL_HINT)
    folder = data_dir(path)
    return ensure_server(folder, idle_timeout=idle_timeout).uri
