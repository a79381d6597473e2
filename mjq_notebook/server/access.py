"""The embedded server's data folder is its owner's alone: private files, and a login.

The folder is created ``0700`` and its files ``0600`` (the server process runs with umask
``077``), so no other user of the machine can read the jobs from WiredTiger's files. The
server refuses clients that don't log in; the login is made on first start and kept in the
folder (``mjq-server.credentials``, ``0600``), where ``connect()``, ``mjq`` and workers of
the same user find it. The password never leaves that file and the processes that read it.
Where the folder is and who else could redirect it is ``folder.py``'s business.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import stat
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import quote_plus

from ..errors import DataFolderError
from .folder import DataFolder, held, open_folder

CREDENTIALS_FILE = "mjq-server.credentials"
USER = "mjq"  # the one user of an embedded server; root of it, as its owner is
AUTH_DB = "admin"
PRIVATE_UMASK = 0o077
# what an embedded server keeps in its folder: WiredTiger's files, SecantusDB's tables, ours
OUR_FILES = re.compile(r"WiredTiger.*|secantus_.*\.wt|\.?mjq-server\..*")

log = logging.getLogger("mjq_notebook.server")


@dataclass(frozen=True)
class Credentials:
    """The embedded server's login. The password is left out of the repr."""

    user: str
    password: str = field(repr=False)

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for ``MongoClient`` (pymongo never shows the password)."""
        return dict(
            username=self.user,
            password=self.password,
            authSource=AUTH_DB,
            authMechanism="SCRAM-SHA-256",
        )

    def in_uri(self, address: str) -> str:
        """``address`` (a ``mongodb://`` URI with a query) with this login in it: whoever sees
        the result can log in, so keep it to yourself."""
        login = f"{quote_plus(self.user)}:{quote_plus(self.password)}@"
        return address.replace("://", f"://{login}", 1) + f"&authSource={AUTH_DB}"

    @classmethod
    def new(cls) -> Credentials:
        return cls(USER, secrets.token_urlsafe(24))


def private_folder(folder: str | os.PathLike | DataFolder) -> DataFolder:
    """``folder`` opened on a checked path (``folder.py``: no symlink, nothing another user
    owns or may write to), made ``0700`` when missing. Only what this package made is then
    made readable by this user only: the server's files in it (by name; not a symlink, nor
    a file with a name elsewhere too), and the folder itself when it holds nothing else.
    Said once when the folder was open (a folder made by hand or by another tool with a
    common umask: the login in it would be every user's), silently for files
    made open inside the private folder (by ``embedded_server()`` in a process with a common
    umask). A file of the user's own in the folder keeps its mode. DataFolderError when
    refused."""
    if isinstance(folder, DataFolder):
        return folder
    opened = open_folder(folder, create=True)
    assert opened is not None  # made when missing
    if opened.created:
        return opened
    try:
        names = os.listdir(opened.fd)
        ours = [name for name in names if OUR_FILES.fullmatch(name)]
        mode = stat.S_IMODE(os.fstat(opened.fd).st_mode)
        exposed = bool(ours) and len(ours) == len(names) and bool(mode & 0o077)
        if exposed:  # our data folder, open to every user: the login in it with it
            os.fchmod(opened.fd, mode & ~0o077)
        tightened = sum(_tighten(opened, name) for name in ours)
    except BaseException:
        opened.close()
        raise
    if exposed:
        log.warning(
            "made %s and %d file(s) in it readable by you only (every user of this machine "
            "could read them, the server's login among them)",
            opened.path,
            tightened,
        )
    return opened


def _tighten(folder: DataFolder, name: str) -> bool:
    """Make the file ``name`` of ``folder`` this user's only, through a handle that follows
    no symlink; a symlink, another user's file, or one with a name elsewhere too (a hard
    link) is left as it is. Whether it changed."""
    with contextlib.suppress(OSError):  # a file the server removes meanwhile
        info = folder.stat(name)
        mine = info.st_uid == os.geteuid() and stat.S_ISREG(info.st_mode)
        if not mine or info.st_nlink > 1 or not info.st_mode & 0o077:
            return False
        fd = folder.open(name, os.O_RDONLY | os.O_NONBLOCK)
        try:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
                return False  # replaced meanwhile
            os.fchmod(fd, stat.S_IMODE(now.st_mode) & ~0o077)
            return True
        finally:
            os.close(fd)
    return False


def private_umask() -> None:
    """From now on this process creates files for its user only (the server process)."""
    os.umask(PRIVATE_UMASK)


def read_credentials(folder: str | os.PathLike | DataFolder) -> Credentials | None:
    """The login kept in ``folder``; None when there is none yet."""
    with held(folder) as opened:
        return None if opened is None else _read_credentials(opened)


def _read_credentials(folder: DataFolder) -> Credentials | None:
    try:
        saved = json.loads(folder.read_text(CREDENTIALS_FILE))
        return Credentials(str(saved["user"]), str(saved["password"]))
    except FileNotFoundError:
        return None
    except PermissionError:
        raise DataFolderError(
            f"can't read the embedded server's login in {folder.path}: it belongs to another user"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataFolderError(
            f"the embedded server's login {folder.path / CREDENTIALS_FILE} is damaged "
            f"({type(exc).__name__}); stop the server, delete that file and connect again: "
            "a new login is made, the jobs are kept"
        ) from None


def credentials_for(folder: DataFolder) -> Credentials:
    """The login of ``folder``'s server, made (and saved, ``0600``) on first start."""
    saved = _read_credentials(folder)
    if saved is not None:
        return saved
    made = Credentials.new()
    folder.write_private(CREDENTIALS_FILE, json.dumps(vars(made)))
    return made


def add_login(server: Any, credentials: Credentials) -> None:
    """Give a SecantusDB server, before it starts listening, its one user (root), so that
    with ``require_auth`` there is never a moment a client could get in without it. The
    record is the one SecantusDB's ``createUser`` writes; ``replace`` keeps it equal to the
    saved login."""
    from secantus.auth import derive_credentials

    secret = derive_credentials(credentials.password, username=credentials.user)
    record = {
        "_id": f"{AUTH_DB}.{credentials.user}",
        "user": credentials.user,
        "db": AUTH_DB,
        "credentials": secret.to_doc(),
        "roles": [{"role": "root", "db": AUTH_DB}],
        "mechanisms": ["SCRAM-SHA-256"],
    }
    server.storage.add_user(AUTH_DB, credentials.user, record, replace=True)


def private_open(folder: DataFolder, name: str, mode: str = "a") -> IO[Any]:
    """``open()`` of the file ``name`` in ``folder``, created readable and writable by this
    user only (a symlink there is refused)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    return os.fdopen(folder.open(name, flags), mode)
