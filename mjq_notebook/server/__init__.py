"""The server layer: where a MongoDB comes from.

``connect()`` uses a URI when one is given, else the user's own embedded server (SecantusDB):
one process per data folder (``lifecycle``), which runs as ``python -m mjq_notebook.server``
(``daemon``), keeps its folder private and its login there (``access``), records itself in the
folder for other processes (``records``), and counts the processes connected to it
(``peers``). ``client`` makes this package's checked pymongo clients; ``embedded`` runs
SecantusDB inside a process. Nothing here imports the queue or anything above it. The folder
is opened once on a checked path (``folder``), so no other user can redirect it.
"""

from .access import CREDENTIALS_FILE, Credentials, read_credentials
from .client import client_for, env_uri, mask_uri, wire_version
from .connection import (
    DATA_ENV,
    connect,
    data_dir,
    default_data_dir,
    embedded_client,
    embedded_uri,
)
from .daemon import main, serve
from .embedded import EmbeddedServer, embedded_server
from .folder import DataFolder, open_folder
from .lifecycle import (
    DEFAULT_IDLE_TIMEOUT,
    IDLE_ENV,
    START_TIMEOUT,
    Revive,
    check_server,
    ensure_server,
    idle_timeout_default,
    stop_server,
)
from .peers import client_pids, count_connections
from .records import (
    BUSY_TIMEOUT,
    LOCK_FILE,
    LOG_FILE,
    URI_FILE,
    ServerInfo,
    answers,
    find_running,
    pid_alive,
    read_info,
    remove_info,
    start_lock,
    write_info,
)

__all__ = [
    "BUSY_TIMEOUT",
    "CREDENTIALS_FILE",
    "DATA_ENV",
    "DEFAULT_IDLE_TIMEOUT",
    "IDLE_ENV",
    "LOCK_FILE",
    "LOG_FILE",
    "START_TIMEOUT",
    "URI_FILE",
    "Credentials",
    "DataFolder",
    "EmbeddedServer",
    "Revive",
    "ServerInfo",
    "answers",
    "check_server",
    "client_for",
    "client_pids",
    "connect",
    "count_connections",
    "data_dir",
    "default_data_dir",
    "embedded_client",
    "embedded_server",
    "embedded_uri",
    "ensure_server",
    "env_uri",
    "find_running",
    "idle_timeout_default",
    "main",
    "mask_uri",
    "open_folder",
    "pid_alive",
    "read_credentials",
    "read_info",
    "remove_info",
    "serve",
    "start_lock",
    "stop_server",
    "wire_version",
    "write_info",
]
