"""``mjq dashboard``: the overview (and a queue's dashboard) as a web page, served by Voilà.

Voilà runs a notebook in a kernel of its own and shows its outputs as a standalone page,
rendering ipywidgets and anywidget widgets as JupyterLab does: the page is the very widgets
of ``mjq_notebook.overview(db)`` and ``q.dashboard()``, so there is no second UI to keep in
step. A notebook of one cell is written to a temporary folder at start; the kernel finds the
server through the environment (``MJQ_MONGODB_URI``), never through the notebook, a command
line or the page, and Voilà hides the cell's source anyway.

It listens on 127.0.0.1 unless told otherwise. Another interface needs a token (``--token``
or ``MJQ_DASHBOARD_TOKEN``): the page shows job data and can publish, requeue and cancel
jobs. The token reaches Voilà in a ``voila.json`` readable by the user only (Voilà reads it
from its working folder as ``Voila.token``), not on its command line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .signals import handling_stop_signals

TOKEN_ENV = "MJQ_DASHBOARD_TOKEN"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
DEFAULT_PORT = 8866  # Voilà's own
NOTEBOOK = "mjq-dashboard.ipynb"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
INSTALL = "pip install 'mjq-notebook[web]'"


def token_problem(host: str, token: str | None) -> str | None:
    """Why serving on ``host`` with ``token`` is refused (one line), or None."""
    if host in LOCAL_HOSTS or token:
        return None
    return (
        f"mjq dashboard: --host {host} would show job data and the Publish/Requeue/Cancel "
        f"actions to the network: give a token (--token or ${TOKEN_ENV}), or stay on 127.0.0.1"
    )


def notebook(db: str, queue: str | None) -> dict[str, Any]:
    """The notebook Voilà serves: one cell that shows the overview of ``db`` (with the
    dashboard of ``queue`` open). Names go in as Python literals; the URI stays out."""
    source = (
        "from mjq_notebook import connect, overview\n"
        "# connect() finds the server as mjq did: $MJQ_MONGODB_URI, else the embedded one\n"
        f"overview(connect(db={db!r}), queue={queue!r})"
    )
    cell = {
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
        "--Voila.log_level=WARN", "--show_tracebacks=False",
    ]  # fmt: skip


def serve(
    db: str,
    queue: str | None = None,
    *,
    uri: str | None = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
) -> int:
    """Serve the page until SIGINT or SIGTERM; returns the exit code."""
    if importlib.util.find_spec("voila") is None:
        raise SystemExit(f"mjq dashboard: needs Voilà, which is not installed: {INSTALL}")
    problem = token_problem(host, token)
    if problem:
        raise SystemExit(problem)
    folder = Path(tempfile.mkdtemp(prefix="mjq-dashboard-"))  # mode 0700: the user's only
    try:
        (folder / NOTEBOOK).write_text(json.dumps(notebook(db, queue)), encoding="utf-8")
        if token:  # Voilà reads voila.json from its working folder
            config = folder / "voila.json"
            config.touch(mode=0o600)
            config.write_text(json.dumps({"Voila": {"token": token}}), encoding="utf-8")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if uri:
            env["MJQ_MONGODB_URI"] = uri
        return _run(voila_command(folder, host, port), folder, env, host, port, bool(token))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(command: list[str], folder: Path, env: dict, host: str, port: int, token: bool) -> int:
    stopping: list[int] = []

    def stop(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    with handling_stop_signals(stop):
        voila = subprocess.Popen(command, cwd=folder, env=env, stdin=subprocess.DEVNULL)
        try:
            if not _wait_listening(voila, host, port, stopping):
                if stopping:
                    return 0
                raise SystemExit(
                    f"mjq dashboard: Voilà did not start on {host}:{port} (see above; is the "
                    "port taken? --port picks another)"
                )
            shown = f"[{host}]" if ":" in host else host
            where = f"http://{shown}:{port}/"
            how = f" (open it with ?token=<the token> once: {where}?token=…)" if token else ""
            print(f"mjq: the dashboard is at {where}{how}; Ctrl-C stops it", flush=True)
            while voila.poll() is None and not stopping:
                time.sleep(0.2)
            if voila.poll() is not None and not stopping:
                print(f"mjq dashboard: Voilà stopped (exit {voila.returncode})", file=sys.stderr)
                return 1
            return 0
        finally:
            _stop(voila)


def _wait_listening(voila: subprocess.Popen, host: str, port: int, stopping: list) -> bool:
    """True once ``host:port`` accepts connections; False if Voilà ended or a signal came."""
    target = "127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host
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
