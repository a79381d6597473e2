"""Real Jupyter processes for the browser and kernel tests: a JupyterLab server on 127.0.0.1
with no token, and notebooks written to disk.

Everything Jupyter writes (settings, workspaces, runtime files) goes into a temporary folder,
so the tests neither read nor change the user's Jupyter setup, and nothing reaches the network
(no news, no update check).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .servers import free_port


def require_modules(*names: str, needed_by: str) -> None:
    """Skip the calling test (or module) where one of ``names`` is not installed: found, not
    imported (JupyterLab's, Voilà's or nbformat's import takes over a second in each process:
    all of Jupyter Server, a JSON-schema grammar)."""
    for name in names:
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{needed_by} need {name} (the dev extra)", allow_module_level=True)


# The lab plugin that fetches news from the internet and asks about it in a pop-up.
DISABLED_LAB_PLUGINS = ("@jupyterlab/apputils-extension:announcements",)
# JupyterLab's own news and update check (Notebook 7 has neither option)
NO_LAB_NEWS = (
    "--LabApp.news_url=None",
    "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
)


def isolated_jupyter_env(home: Path) -> dict[str, str]:
    """The environment for Jupyter processes, with config, data and runtime dirs in ``home``
    (kernelspecs and lab extensions still come from this Python's prefix)."""
    config = home / "config"
    (config / "labconfig").mkdir(parents=True, exist_ok=True)
    disabled = {name: True for name in DISABLED_LAB_PLUGINS}
    (config / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": disabled})
    )
    env = {**os.environ}
    for var in ("MJQ_MONGODB_URI", "MONGODB_URI"):  # the notebook names its URI itself
        env.pop(var, None)
    env.update(
        JUPYTER_CONFIG_DIR=str(config),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        IPYTHONDIR=str(home / "ipython"),
        JUPYTER_PLATFORM_DIRS="1",
        PYTHONUNBUFFERED="1",
        PYDEVD_DISABLE_FILE_VALIDATION="1",  # no debugger warning on every kernel start
    )
    return env


def write_notebook(path: Path, cells: list[str]) -> Path:
    """A notebook of code cells for the default ``python3`` kernel (this Python)."""
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"cell-{i}",
                "metadata": {},
                "outputs": [],
                "source": source,
            }
            for i, source in enumerate(cells)
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook, indent=1))
    return path


@contextlib.contextmanager
def jupyter_lab(
    root: Path, home: Path, *, timeout: float = 120.0, notebook7: bool = False
) -> Iterator[str]:
    """Run JupyterLab serving ``root``; yields its base URL (``http://127.0.0.1:<port>``).
    ``notebook7``: Notebook 7 (``jupyter notebook``) instead, the same server and options.

    No token or password, XSRF checks off (only 127.0.0.1 can reach it), the app exposed as
    ``window.jupyterapp`` so the test can run lab commands, and no network access.
    """
    port = free_port()
    log_path = home / ("jupyter-notebook.log" if notebook7 else "jupyter-lab.log")
    log = log_path.open("wb")
    app = "JupyterNotebookApp" if notebook7 else "LabApp"
    args = [
        sys.executable,
        "-m",
        "notebook" if notebook7 else "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={root}",
        *(() if notebook7 else NO_LAB_NEWS),
        f"--{app}.expose_app_in_browser=True",
        "--ServerApp.terminals_enabled=False",
    ]
    lab = subprocess.Popen(
        args, env=isolated_jupyter_env(home), stdout=log, stderr=subprocess.STDOUT, cwd=root
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_http(f"{url}/api/status", lab, timeout, log_path)
        yield url
    finally:
        lab.terminate()
        try:
            lab.wait(20)
        except subprocess.TimeoutExpired:
            lab.kill()
            lab.wait(10)
        log.close()


def _wait_for_http(url: str, process: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"jupyter lab exited ({process.returncode}):\n{log.read_text()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"jupyter lab did not answer {url} within {timeout}s:\n{log.read_text()}")
