"""The embedded server's data folder is its owner's alone: private files, and a login.

The folder is created ``0700`` and its files ``0600`` (the server process runs with umask
``077``), so no other user of the machine can read the jobs from WiredTiger's files. The
server refuses clients that don't log in; the login is made on first start and kept in the
folder (``mjq-server.credentials``, ``0600``), where ``connect()``, ``mjq`` and workers of
the same user find it. The password never leaves that file and the processes that read it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataFolderError

CREDENTIALS_FILE = "mjq-server.credentials"
USER = "mjq"  # the one user of an embedded server; root of it, as its owner is
AUTH_DB = "admin"
PRIVATE_UMASK = 0o077

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

    @classmethod
    def new(cls) -> Credentials:
        return cls(USER, secrets.token_urlsafe(24))


def private_folder(folder: str | os.PathLike) -> Path:
    """``folder`` made (``0700``) or checked: it must belong to this user, and it and its
    files are made readable by this user only: said once when the folder itself was open (an
    earlier version left it so), silently for files made open inside the private folder (by
    ``embedded_server()`` in a process with a common umask). DataFolderError when another
    user owns it, or when it is a file or can't be made."""
    folder = Path(folder).resolve()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:  # a file there or above it, a folder we may not write in
        what = "is a file, not a folder" if folder.is_file() else f"can't be made ({exc})"
        raise DataFolderError(
            f"the data folder {folder} {what}: set MJQ_DATA_DIR (or --path) to a folder of "
            "yours, or connect to a server with MJQ_MONGODB_URI"
        ) from None
    info = folder.stat()
    if info.st_uid != os.geteuid():
        raise DataFolderError(
            f"the data folder {folder} belongs to {_user_name(info.st_uid)}, not to you "
            f"({_user_name(os.geteuid())}): an embedded server keeps one user's jobs, readable "
            "by that user only. Use a folder of your own (MJQ_DATA_DIR or --path), or that "
            "user's server through MJQ_MONGODB_URI"
        )
    exposed = _open_to_others(folder)  # else no other user could reach the files anyway
    opened = [path for path in (folder, *folder.rglob("*")) if _open_to_others(path)]
    for path in opened:
        with contextlib.suppress(OSError):  # a file the server removes meanwhile
            path.chmod(stat.S_IMODE(path.lstat().st_mode) & ~0o077)
    if exposed:
        log.warning(
            "made %s and %d file(s) in it readable by you only (an earlier version of "
            "mjq-notebook had left them readable by every user of this machine)",
            folder,
            len(opened) - 1,
        )
    return folder


def _open_to_others(path: Path) -> bool:
    with contextlib.suppress(OSError):
        info = path.lstat()
        return not stat.S_ISLNK(info.st_mode) and bool(info.st_mode & 0o077)
    return False


def _user_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def private_umask() -> None:
    """From now on this process creates files for its user only (the server process)."""
    os.umask(PRIVATE_UMASK)


def read_credentials(folder: str | os.PathLike) -> Credentials | None:
    """The login kept in ``folder``; None when there is none yet."""
    try:
        saved = json.loads((Path(folder) / CREDENTIALS_FILE).read_text())
        return Credentials(str(saved["user"]), str(saved["password"]))
    except FileNotFoundError:
        return None
    except PermissionError:
        raise DataFolderError(
            f"can't read the embedded server's login in {folder}: it belongs to another user"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataFolderError(
            f"the embedded server's login {Path(folder) / CREDENTIALS_FILE} is damaged "
            f"({type(exc).__name__}); stop the server, delete that file and connect again: "
            "a new login is made, the jobs are kept"
        ) from None


def credentials_for(folder: str | os.PathLike) -> Credentials:
    """The login of ``folder``'s server, made (and saved, ``0600``) on first start."""
    saved = read_credentials(folder)
    if saved is not None:
        return saved
    made = Credentials.new()
    write_private(Path(folder) / CREDENTIALS_FILE, json.dumps(vars(made)))
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


def private_open(path: str | os.PathLike, mode: str = "a"):
    """``open(path, mode)``, creating the file readable and writable by this user only."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o600), mode)


def write_private(path: Path, text: str) -> None:
    """Write ``path`` (this user's only) atomically: readers see the old file or the whole
    new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with private_open(tmp, "w") as file:
        file.write(text)
    os.replace(tmp, path)
