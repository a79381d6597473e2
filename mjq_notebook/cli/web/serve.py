"""``mjq dashboard``: the overview (and a queue's dashboard) as a web page, served by Voilà.

Voilà runs a notebook in a kernel of its own and shows its outputs as a standalone page,
rendering ipywidgets and anywidget widgets as JupyterLab does: the page is the very widgets
of ``mjq_notebook.overview(db)`` and ``q.dashboard()``, so there is no second UI to keep in
step. A notebook of one cell is written to a temporary folder at start; the kernel finds the
server through the environment (``MJQ_MONGODB_URI``), never through the notebook, a command
line or the page, and Voilà hides the cell's source anyway.

It listens on 127.0.0.1 unless told otherwise, and always asks for a token (web/access.py
says whose and which host names it answers). The token and those names reach Voilà in a
``voila.json`` readable by the user only (Voilà reads it from its working folder), not on its
command line. Before it prints an address it checks the port was free and that what answers
there is the Voilà it started (a header with a nonce of this start, fetched without the token).
With ``--viewers`` a second token opens the page read-only: web/roles.py tells each page's
kernel which token opened it, and the notebook's widgets act through ``Actor.page()``.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import webbrowser
from pathlib import Path
from typing import Any

from ...core.audit import CLIENT_ENV, ROLE_ENV
from ...errors import DashboardError
from ...signals import handling_stop_signals
from .access import (
    DEFAULT_PORT,
    NO_TOKEN_WARNING,
    VIEWER_NOTE,
    host_names,
    is_local,
    new_token,
    write_url,
)

NONCE_HEADER = "X-Mjq-Dashboard"
NOTEBOOK = "mjq-dashboard.ipynb"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
MAX_PAGES = 5  # kernels at once: web/kernels.py bounds them
KERNELS = "mjq_notebook.cli.web.kernels.BoundedKernelManager"
ROLES = "mjq_notebook.cli.web.roles"  # who opened a page, told to its kernel
TEMPLATE = "mjq"  # page/voila/templates/mjq: the system's theme, the window's width
PAGE_DATA = Path(__file__).resolve().parent / "page"  # on Voilà's JUPYTER_PATH
INSTALL = "pip install 'mjq-notebook[web]' (from a checkout: pip install -e \".[web]\")"


def notebook(db: str, queue: str | None) -> dict[str, Any]:
    """The notebook Voilà serves: one cell that shows the overview of ``db`` (with the
    dashboard of ``queue`` open), acting as the page's visitor (owner or viewer). Names go
    in as Python literals; the URI stays out."""
    source = (
        "from mjq_notebook import connect, overview\n"
        "from mjq_notebook.core.audit import Actor\n"
        "# connect() finds the server as mjq did: $MJQ_MONGODB_URI, else the embedded one;\n"
        "# Actor.page(): who opened this page, as mjq dashboard told this kernel\n"
        f"overview(connect(db={db!r}), queue={queue!r}, actor=Actor.page())"
    )
    cell: dict[str, Any] = {
        "cell_type": "code",
        "execution_count": None,
        "id": "mjq-dashboard",
        "metadata": {},
        "outputs": [],
        "source": source,
    }
    kernelspec = {"display_name": "Python 3", "language": "python", "name": "python3"}
    return {
        "cells": [cell],
        "metadata": {"kernelspec": kernelspec, "title": f"mjq · {db}"},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def voila_command(folder: Path, host: str, port: int) -> list[str]:
    """Voilà on the notebook in ``folder``: no browser, exactly ``port`` (no other port
    tried, so the address printed is the one served), quiet but for warnings."""
    return [
        sys.executable, "-m", "voila", str(folder / NOTEBOOK),
        "--no-browser", f"--port={port}", f"--Voila.ip={host}", "--Voila.port_retries=0",
        "--Voila.log_level=WARN", "--show_tracebacks=False", f"--template={TEMPLATE}",
    ]  # fmt: skip


def serve(
    db: str,
    queue: str | None = None,
    *,
    uri: str | None = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
    no_token: bool = False,
    allow_hosts: list[str] | None = None,
    open_browser: bool = False,
    max_pages: int = MAX_PAGES,
    viewer_token: str | None = None,
) -> int:
    """Serve the page until SIGINT or SIGTERM; returns the exit code. ``token`` None makes a
    random one; ``no_token`` serves without (only on this machine's loopback);
    ``viewer_token`` opens the page read-only."""
    if importlib.util.find_spec("voila") is None:
        raise SystemExit(f"mjq dashboard: needs Voilà, which is not installed: {INSTALL}")
    names = check(host, port, no_token, allow_hosts)
    token = "" if no_token else token or new_token()
    nonce = secrets.token_hex(16)
    folder = Path(tempfile.mkdtemp(prefix="mjq-dashboard-"))  # mode 0700: the user's only
    try:
        (folder / NOTEBOOK).write_text(json.dumps(notebook(db, queue)), encoding="utf-8")
        trust(folder)
        config = folder / "voila.json"  # Voilà reads voila.json from its working folder
        config.touch(mode=0o600)
        settings = voila_config(token, names, nonce, max_pages, viewer_token or "")
        settings["NotebookNotary"] = notary_config(folder)
        config.write_text(json.dumps(settings), encoding="utf-8")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for name in (ROLE_ENV, CLIENT_ENV):  # a kernel's role: from its page's request only
            env.pop(name, None)
        env["JUPYTER_RUNTIME_DIR"] = str(folder / "runtime")  # kernels' ipc sockets: ours only
        env["JUPYTER_PATH"] = os.pathsep.join(
            [str(PAGE_DATA), *filter(None, [os.environ.get("JUPYTER_PATH")])]
        )
        if uri:
            env["MJQ_MONGODB_URI"] = uri
        site = Site(host, port, token, nonce, open_browser, viewer_token)
        return _run(voila_command(folder, host, port), folder, env, site)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def check(host: str, port: int, no_token: bool, allow_hosts: list[str] | None) -> list[str]:
    """The host names to answer, once the port is known free and the options agree; else
    :class:`DashboardError` in one line."""
    if not 1 <= port <= 65535:
        raise DashboardError(f"--port {port}: a port is 1 to 65535")
    names = host_names(host, allow_hosts)
    if no_token and not is_local(host):
        raise DashboardError(f"--no-token: not with --host {host}, which the network reaches")
    if not port_free(host, port):
        raise DashboardError(
            f"port {port} on {host} is taken by another program: pick another with --port"
        )
    return names


def port_free(host: str, port: int) -> bool:
    """True if ``host:port`` can be bound now, as Tornado binds (SO_REUSEADDR: a port in
    TIME_WAIT is free, one something listens on is not)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def notary_config(folder: Path) -> dict[str, str]:
    """Where the notebook's trust lives: a signature database and secret of this start, in
    ``folder`` (the user's only), so the user's own Jupyter trust database is not touched."""
    return {"db_file": str(folder / "trust.db"), "secret_file": str(folder / "trust.key")}


def trust(folder: Path) -> None:
    """Sign the notebook in ``folder``: it is ours, and Voilà warns of an unsigned one
    ("not trusted") though nothing calls for the user to act."""
    from nbformat import read, write
    from nbformat.sign import NotebookNotary

    (folder / "trust.key").touch(mode=0o600)
    (folder / "trust.key").write_bytes(secrets.token_bytes(32))
    path = folder / NOTEBOOK
    document = read(path, as_version=4)
    NotebookNotary(**notary_config(folder)).sign(document)
    write(document, path)


def voila_config(
    token: str, names: list[str], nonce: str, max_pages: int, viewer_token: str = ""
) -> dict[str, Any]:
    """Voilà's configuration: the tokens ("" for none), Jupyter Server's Host check (on, with
    ``names``; Voilà turns it off), the nonce header, the roles of web/roles.py (each page's
    kernel told its role in its environment), and its kernels bounded. Kernels talk
    over Unix sockets in the run's own folder (no TCP port any local user can reach, and so
    no "without encryption" warning); the websocket ping timeout is set to the interval,
    which Tornado would otherwise do with a warning."""
    settings = {"allow_remote_access": False, "local_hostnames": names,
                "headers": {NONCE_HEADER: nonce}, "ws_ping_timeout": 30_000}  # fmt: skip
    transport = "ipc" if os.name == "posix" else "tcp"  # Windows has no ipc transport
    voila = {"token": token, "tornado_settings": settings,
             "identity_provider_class": f"{ROLES}.RolesIdentityProvider",
             "authorizer_class": f"{ROLES}.RolesAuthorizer"}  # fmt: skip
    return {
        "Voila": voila,
        "RolesIdentityProvider": {"viewer_token": viewer_token},
        "VoilaConfiguration": {
            "multi_kernel_manager_class": KERNELS,
            "http_header_envs": ["X-Mjq-Role", "X-Mjq-Client"],  # set by web/roles.py
        },
        "BoundedKernelManager": {"max_kernels": max_pages},
        "KernelManager": {"transport": transport},
    }


class Site:
    """Where the page is served and how its owner opens it."""

    def __init__(self, host: str, port: int, token: str, nonce: str, open_browser: bool,
                 viewer_token: str | None = None):  # fmt: skip
        self.host, self.port, self.token, self.nonce = host, port, token, nonce
        self.open_browser = open_browser
        self.probe = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
        shown = f"[{host}]" if ":" in host else host
        self.address = f"http://{shown}:{port}/"
        self.url = f"{self.address}?token={token}" if token else self.address
        self.viewer_url = f"{self.address}?token={viewer_token}" if viewer_token else None

    def __repr__(self) -> str:  # no token in a log or a traceback
        return f"Site({self.address!r})"

    def is_ours(self) -> bool:
        """True if what answers on the port sends this start's nonce (asked without the
        token, so a squatter learns nothing)."""
        connection = http.client.HTTPConnection(self.probe, self.port, timeout=10)
        try:  # no redirect followed: the header of this very reply (a 302 or 403 has it)
            connection.request("GET", "/login")
            headers = connection.getresponse().headers
        except OSError:
            return False
        finally:
            connection.close()
        return headers.get(NONCE_HEADER) == self.nonce

    def announce(self) -> Path:
        """Print the address (tokenised; the viewers' too) and write it to the owner's URL
        file (the viewers' on a second line); its path."""
        path = write_url(self.port, "\n".join(filter(None, [self.url, self.viewer_url])))
        if not self.token:
            print(NO_TOKEN_WARNING, file=sys.stderr, flush=True)
        print(
            f"mjq: the dashboard is at {self.url} (also in {path}, yours only); Ctrl-C stops it",
            flush=True,
        )
        if self.viewer_url:
            print(f"mjq: read-only viewers open {self.viewer_url}\nmjq: {VIEWER_NOTE}", flush=True)
        if self.open_browser:
            webbrowser.open(self.url)
        return path


def _run(command: list[str], folder: Path, env: dict, site: Site) -> int:
    stopping: list[int] = []

    def stop(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    url_file = None
    with handling_stop_signals(stop):
        voila = subprocess.Popen(command, cwd=folder, env=env, stdin=subprocess.DEVNULL)
        try:
            if not _wait_listening(voila, site.probe, site.port, stopping):
                if stopping:
                    return 0
                raise DashboardError(
                    f"Voilà did not start on {site.host}:{site.port} (see above; is the port "
                    "taken? --port picks another)"
                )
            if not site.is_ours():
                raise DashboardError(
                    f"something else answers on {site.host}:{site.port}: not saying where "
                    "the dashboard is; pick another port with --port"
                )
            url_file = site.announce()
            while voila.poll() is None and not stopping:
                time.sleep(0.2)
            if voila.poll() is not None and not stopping:
                print(f"mjq dashboard: Voilà stopped (exit {voila.returncode})", file=sys.stderr)
                return 1
            return 0
        finally:
            _stop(voila)
            if url_file is not None:
                url_file.unlink(missing_ok=True)


def _wait_listening(voila: subprocess.Popen, target: str, port: int, stopping: list) -> bool:
    """True once ``target:port`` accepts connections; False if Voilà ended or a signal came."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and voila.poll() is None and not stopping:
        with contextlib.suppress(OSError), socket.create_connection((target, port), 0.5):
            return True
        time.sleep(0.1)
    return False


def _stop(voila: subprocess.Popen) -> None:
    """SIGTERM, which Voilà takes as a clean stop (its kernels shut down), then SIGKILL."""
    if voila.poll() is not None:
        return
    voila.send_signal(signal.SIGTERM)
    try:
        voila.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        voila.kill()
        voila.wait()
