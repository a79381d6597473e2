"""The data folder, opened once on a checked path, so that no other user can redirect it.

Every component from ``/`` down is opened relative to its parent's handle without following
symlinks, and checked: it must belong to this user or root, and no other user may write to
it, except that a sticky folder such as ``/tmp`` may be a *parent* (others can't rename or
remove what we own in it). The data folder itself must be this user's and no symlink; a
symlink higher up is followed only when this user or root made it, and its target is checked
the same way. Files in the folder are then reached through the handle (``dir_fd``), never
through the path again.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from ..errors import DataFolderError

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_LINKS = 40  # as the kernel's own limit on symlinks in one lookup
FIX = (
    "set MJQ_DATA_DIR (or --path) to a folder of yours, or connect to a server with MJQ_MONGODB_URI"
)


def user_name(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


class DataFolder:
    """A data folder opened and checked by :func:`open_folder`: ``path`` (every component
    checked) and ``fd``, its handle, through which its files are read and written."""

    def __init__(self, path: Path, fd: int, created: bool) -> None:
        self.path = path
        self.fd = fd
        self.created = created  # made by this call, so 0700 and empty

    def __enter__(self) -> DataFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __repr__(self) -> str:
        return f"DataFolder({str(self.path)!r})"

    def open(self, name: str, flags: int, mode: int = 0o600) -> int:
        """``os.open`` of the file ``name`` in the folder (a symlink there is refused)."""
        try:
            return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno != errno.ELOOP:
                raise
        raise DataFolderError(
            f"{self.path / name} is a symbolic link, not a file the embedded server made; "
            "remove it and try again"
        )

    def read_text(self, name: str) -> str:
        with os.fdopen(self.open(name, os.O_RDONLY)) as file:
            return file.read()

    def stat(self, name: str) -> os.stat_result:
        return os.stat(name, dir_fd=self.fd, follow_symlinks=False)

    def exists(self, name: str) -> bool:
        try:
            self.stat(name)
        except FileNotFoundError:
            return False
        return True

    def unlink(self, name: str) -> None:
        os.unlink(name, dir_fd=self.fd)

    def write_private(self, name: str, text: str) -> None:
        """Write ``name`` (this user's only, ``0600``) atomically: readers see the old file
        or the whole new one, never a part."""
        tmp = f".{name}.{os.getpid()}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        with os.fdopen(self.open(tmp, flags), "w") as file:
            file.write(text)
        os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)


def open_folder(path: str | os.PathLike, *, create: bool = False) -> DataFolder | None:
    """The data folder at ``path`` opened after checking every component of its path (see
    the module's docstring); made (``0700``, parents ``0755``) when missing and ``create``,
    else None when missing. DataFolderError, in one line naming the component and why, when
    a component is refused."""
    path = Path(os.path.abspath(os.path.expanduser(path)))
    try:
        return _walk(path, create)
    except _Missing:
        return None


@contextlib.contextmanager
def held(
    folder: DataFolder | str | os.PathLike, *, create: bool = False
) -> Iterator[DataFolder | None]:
    """``folder`` itself when it is open already, else opened (checked) for the block."""
    if isinstance(folder, DataFolder):
        yield folder
        return
    opened = open_folder(folder, create=create)
    try:
        yield opened
    finally:
        if opened is not None:
            opened.close()


class _Missing(Exception):
    pass


def _walk(path: Path, create: bool) -> DataFolder:
    todo = list(path.parts[1:])
    where = Path("/")
    fd = os.open("/", _DIR)
    created = links = 0
    try:
        _check_dir(path, where, os.fstat(fd), last=not todo)
        while todo:
            name = todo.pop(0)
            last = not todo
            here = where / name
            try:
                child = os.open(name, _DIR, dir_fd=fd)
                made = False
            except FileNotFoundError:
                if not create:
                    raise _Missing from None
                _mkdir(path, here, name, fd, 0o700 if last else 0o755)
                child = os.open(name, _DIR, dir_fd=fd)
                made = True
            except OSError as exc:
                target = _symlink(path, here, name, fd, exc, last)
                links += 1
                if links > _MAX_LINKS:
                    _refuse(path, here, "is one symbolic link too many (a loop?)")
                # restart from / on the link's target (lexically joined: where has no link)
                todo = [*Path(os.path.normpath(where / target)).parts[1:], *todo]
                os.close(fd)
                fd, where = os.open("/", _DIR), Path("/")
                continue
            os.close(fd)
            fd, where = child, here
            created = made
            _check_dir(path, here, os.fstat(fd), last=last)
        return DataFolder(path, fd, bool(created))
    except BaseException:
        os.close(fd)
        raise


def _mkdir(path: Path, here: Path, name: str, fd: int, mode: int) -> None:
    try:
        os.mkdir(name, mode, dir_fd=fd)
    except FileExistsError:
        pass  # made meanwhile: opened and checked next like any other
    except OSError as exc:
        _refuse(path, here, f"can't be made ({exc.strerror})")


def _symlink(path: Path, here: Path, name: str, fd: int, exc: OSError, last: bool) -> str:
    """The target of the symlink ``name`` when it may be followed; else refused."""
    try:
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except OSError:
        _refuse(path, here, f"can't be opened ({exc.strerror})")
    if not stat.S_ISLNK(info.st_mode):
        if stat.S_ISDIR(info.st_mode):
            _refuse(path, here, f"can't be opened ({exc.strerror})")
        kind = "a file" if stat.S_ISREG(info.st_mode) else "no folder"
        _refuse(path, here, f"is {kind}, not a folder" + " (so it can't be made)" * (not last))
    target = os.readlink(name, dir_fd=fd)
    if last:
        _refuse(path, here, f"is a symbolic link (to {target}), not a folder of yours")
    if info.st_uid not in (0, os.geteuid()):
        _refuse(path, here, f"is a symbolic link (to {target}) made by {user_name(info.st_uid)}")
    return target


def _check_dir(path: Path, here: Path, info: os.stat_result, *, last: bool) -> None:
    me = os.geteuid()
    if info.st_uid not in (0, me) or (last and info.st_uid != me):
        _refuse(path, here, f"belongs to {user_name(info.st_uid)}, not to you ({user_name(me)})")
    mode = stat.S_IMODE(info.st_mode)
    writable = mode & 0o002 or (mode & 0o020 and _group_has_others(info.st_gid))
    if writable and not (mode & stat.S_ISVTX and not last):
        who = "every user" if mode & 0o002 else f"group {_group_name(info.st_gid)}"
        hint = " (a sticky folder such as /tmp is fine only above a folder of yours)"
        _refuse(
            path,
            here,
            f"can be written by {who} (mode {mode:04o})" + hint * bool(mode & stat.S_ISVTX),
        )


def _group_has_others(gid: int) -> bool:
    """Whether a user other than this one and root is in group ``gid`` (a user's private
    group, as umask 002 systems give, has only that user)."""
    me = os.geteuid()
    try:
        members = {pwd.getpwnam(name).pw_uid for name in grp.getgrgid(gid).gr_mem}
    except KeyError:
        return True
    members |= {user.pw_uid for user in pwd.getpwall() if user.pw_gid == gid}
    return bool(members - {0, me})


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _refuse(path: Path, here: Path, why: str) -> NoReturn:
    where = f"the data folder {path}" + (f": {here}" if here != path else "")
    raise DataFolderError(f"{where} {why}; {FIX}")
