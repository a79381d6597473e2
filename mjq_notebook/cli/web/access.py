"""Who may open ``mjq dashboard``: its token, the host names and port it answers, and the file
that hands the owner the tokenised URL.

The page shows job data and its buttons publish, pause, retry and cancel, so it always asks
for a token, on 127.0.0.1 too (127.0.0.1 is shared by every user of the machine), as Jupyter
does: a random one made at each start unless the owner gives one in ``$MJQ_DASHBOARD_TOKEN``
or a file, never on a command line (``ps`` shows it to everyone). Jupyter Server checks the
``Host`` header against the names here, so a web page the owner visits can't reach it through
a name of its own (DNS rebinding). With ``--viewers`` a second token, made or given the same
way, opens the page read-only (web/roles.py tells the page's kernel which token it was).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from ...errors import DashboardError

TOKEN_ENV = "MJQ_DASHBOARD_TOKEN"
VIEWER_TOKEN_ENV = "MJQ_DASHBOARD_VIEWER_TOKEN"
DEFAULT_PORT = 8866  # Voilà's own
MIN_TOKEN = 16  # characters
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
LOCAL_NAMES = ("localhost",)  # and any loopback address, which Jupyter Server allows itself
NO_TOKEN_WARNING = (
    "mjq dashboard: --no-token: anyone who can reach this port -- every user of this machine "
    "on 127.0.0.1 -- sees every job and can publish, pause, retry and cancel"
)
VIEWER_NOTE = (
    "a viewer sees every queue, job, worker and chart, and can't publish, pause, resume, "
    "cancel, run now, release or retry: the page shows no such button, its kernel refuses"
)


def new_token() -> str:
    """A random token of 192 bits, URL-safe."""
    return secrets.token_urlsafe(24)


def given_token(
    environ: Mapping[str, str] | None = None,
    token_file: str | None = None,
    env_name: str = TOKEN_ENV,
) -> str | None:
    """The token given in ``token_file`` or ``$env_name`` (the owner's, by default), or None
    for none given; a blank or short one raises :class:`DashboardError` (one line)."""
    environ = os.environ if environ is None else environ
    if token_file is not None:
        try:
            token, where = Path(token_file).read_text(encoding="utf-8").strip(), token_file
        except OSError as exc:
            why = exc.strerror
            raise DashboardError(f"can't read the token file {token_file}: {why}") from None
    elif env_name in environ:
        token, where = environ[env_name].strip(), f"${env_name}"
    else:
        return None
    if len(token) < MIN_TOKEN:
        raise DashboardError(
            f"the token in {where} is {'blank' if not token else 'too short'}: give one of "
            f"{MIN_TOKEN} characters or more (e.g. python -c 'import secrets; "
            "print(secrets.token_urlsafe())'), or none and one is made at each start"
        )
    return token


def viewer_token(
    owner: str | None,
    environ: dict | None = None,
    token_file: str | None = None,
    *,
    no_token: bool = False,
) -> str:
    """The viewers' token: given in ``token_file`` or ``$MJQ_DASHBOARD_VIEWER_TOKEN`` (as the
    owner's is), else a random one; :class:`DashboardError` if it is weak or the owner's
    (``owner``: the owner's given token, None for a random one), or if there is no token."""
    if no_token:
        raise DashboardError("--viewers: not with --no-token, where everyone is the owner")
    token = given_token(environ, token_file, VIEWER_TOKEN_ENV) or new_token()
    if owner is not None and token == owner:
        where = token_file or f"${VIEWER_TOKEN_ENV}"
        raise DashboardError(
            f"the viewer token in {where} is the owner's: a viewer would be the owner; give another"
        )
    return token


def is_local(host: str) -> bool:
    """True if ``host`` (an interface to listen on) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_names(host: str, allowed: list[str] | None) -> list[str]:
    """The ``Host`` header names the page answers (beside loopback addresses): localhost
    when bound locally, else the names given with ``--allow-host``, which are required."""
    allowed = [name.strip().lower() for name in allowed or [] if name.strip()]
    if is_local(host):
        return [*LOCAL_NAMES, *allowed]
    if not allowed:
        raise DashboardError(
            f"--host {host}: name the host names visitors will use with --allow-host NAME "
            "(repeatable); the page answers no other (a web page could reach it under its own)"
        )
    numeric = [name for name in allowed if _is_address(name)]
    if numeric:
        raise DashboardError(
            f"--allow-host {numeric[0]}: give a host name, not an address (Jupyter Server "
            "answers only loopback addresses)"
        )
    return [*LOCAL_NAMES, *allowed]


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


def url_folder(environ: Mapping[str, str] | None = None) -> Path:
    """Where the URL file goes: ``$XDG_RUNTIME_DIR/mjq-notebook``, else this user's state
    folder (``~/.local/state/mjq-notebook``); made 0700."""
    environ = os.environ if environ is None else environ
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        folder = Path(runtime) / "mjq-notebook"
    else:
        from platformdirs import user_state_dir

        folder = Path(user_state_dir("mjq-notebook", appauthor=False))
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = folder.lstat()
    if folder.is_symlink() or info.st_uid != os.geteuid():
        raise DashboardError(f"{folder} is not a folder of yours: not writing the URL there")
    os.chmod(folder, 0o700)
    return folder


def write_url(port: int, url: str, environ: dict | None = None) -> Path:
    """Write ``url`` to ``dashboard-<port>.url`` (mode 0600, no link followed); its path."""
    path = url_folder(environ) / f"dashboard-{port}.url"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(url + "\n")
    return path
