"""The ``mjq dashboard`` command in a process of its own, as a user starts it: its
environment (the URI and token never on a command line) and the address it prints."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .jupyter import isolated_jupyter_env, require_modules


def require_voila() -> None:
    """Skip the calling test (or module) where Voilà, the web extra, is missing."""
    require_modules("voila", needed_by="mjq dashboard's tests")


def dashboard_env(home: Path, server_uri: str, **extra: str) -> dict[str, str]:
    """An environment of its own under ``home`` (Jupyter's folders, the URL file's folder),
    with ``server_uri`` and no token (owner's or viewers') unless ``extra`` gives one."""
    env = isolated_jupyter_env(home / "jupyter-home")
    for name in ("MJQ_DASHBOARD_TOKEN", "MJQ_DASHBOARD_VIEWER_TOKEN"):
        env.pop(name, None)
    (home / "run").mkdir(mode=0o700, exist_ok=True)  # where the URL file goes
    env.update(MJQ_MONGODB_URI=server_uri, XDG_RUNTIME_DIR=str(home / "run"), **extra)
    return env


def start_dashboard(*args: str, env: dict[str, str], **kwargs) -> subprocess.Popen:
    """``mjq dashboard *args``, its stdout and stderr piped as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "mjq_notebook.cli", "dashboard", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )  # fmt: skip


def printed_url(process: subprocess.Popen, timeout: float = 60) -> str:
    """The URL ``mjq dashboard`` printed (with its token); fails if it ends or prints none."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"(http://\S+/\S*)", process.stdout.readline() or "")
        if match:
            return match.group(1)
        if process.poll() is not None:
            pytest.fail(f"mjq dashboard ended ({process.returncode}): {process.stderr.read()}")
    pytest.fail("mjq dashboard printed no address")
