"""Debian's Chromium for the tests that drive a page (JupyterLab, Notebook 7, mjq dashboard):
where it is, how it starts here, and a script that times when a row shows in the page."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("MJQ_CHROMIUM") or shutil.which("chromium")
DOCS = Path(__file__).resolve().parents[2] / "docs"  # where MJQ_SCREENSHOTS=1 writes
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Resolves window.__mjqShown with Date.now() once a tail row holds the token (None after 10 s).
WATCH_FOR_ROW = """(token) => {
    const shown = () => [...document.querySelectorAll(".mjq-tail tbody tr")]
        .some((row) => row.textContent.includes(token));
    window.__mjqShown = new Promise((resolve) => {
        const observer = new MutationObserver(() => {
            if (shown()) { observer.disconnect(); resolve(Date.now()); }
        });
        observer.observe(document.body, {childList: true, subtree: true, characterData: true});
        setTimeout(() => { observer.disconnect(); resolve(null); }, 10000);
    });
}"""


def require_chromium() -> None:
    """Skip the calling test module where Chromium is missing; in CI (MJQ_REQUIRE_BROWSER)
    fail it instead: the browser tests are the only real-browser checks."""
    if CHROMIUM:
        return
    why = (
        "Chromium is not installed (Debian: apt-get install chromium; or set MJQ_CHROMIUM to "
        "a Chromium binary), so JupyterLab can't be driven in a browser"
    )
    if os.environ.get("MJQ_REQUIRE_BROWSER"):
        pytest.fail(why, pytrace=False)
    pytest.skip(why, allow_module_level=True)
