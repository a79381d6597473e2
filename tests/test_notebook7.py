"""``q.dashboard()`` in a real Notebook 7 (``jupyter notebook``), in Debian's Chromium.

The same checks as JupyterLab's (tests/test_browser.py; both use tests/support/lab.py), in
the other front end people open: the file list at ``/tree``, the notebook at
``/notebooks/<file>``, the dashboard rendered, a job published from this process shown
quickly, and a click on Publish writing a job. ``MJQ_SCREENSHOTS=1`` also writes
``docs/notebook7-dashboard-{light,dark}.png``.
"""

from __future__ import annotations

import random
import statistics
import time
import uuid

import pytest

from mjq_notebook import JobQueue

from .support.browser import WATCH_FOR_ROW
from .support.jupyter import jupyter_lab, require_modules, write_notebook
from .support.lab import (
    chromium_page,
    expect,
    run_all_and_wait_for_dashboard,
    shoot,
    stage_screenshot_jobs,
    wait_for_kernel,
)

require_modules("notebook.app", needed_by="the Notebook 7 tests (notebook>=7)")
pytestmark = pytest.mark.browser

# A job published from outside shows within 0.5 s (issue 17), at random moments as a user's
# come; the figures, their median and maximum, are printed. (Until the watcher sent a snapshot
# a view's rate held back when due, rather than after its next change-stream wait of up to
# STREAM_AWAIT_MS, some took 0.52-0.58 s here.)
SHOWN_WITHIN = 0.5
SAMPLES = 10
# Notebook 7.6's own settings loader throws this on every page load (with or without our
# page_config), from its notebook_core bundle; any other page error fails the test.
NOTEBOOK7_OWN_ERROR = "Cannot read properties of undefined (reading 'schema')"


@pytest.fixture(scope="module")
def notebook7(tmp_path_factory, client, server_uri):
    db_name = f"mjq_test_{uuid.uuid4().hex[:10]}"
    queue = JobQueue(client[db_name], lease=30)
    queue.pub({"kind": "before the notebook"})
    root = tmp_path_factory.mktemp("notebook7-root")
    write_notebook(
        root / "dashboard.ipynb",
        [
            "from mjq_notebook import JobQueue, connect\n"
            f"q = JobQueue(connect({server_uri!r}, {db_name!r}))\n"
            "q.dashboard()",
        ],
    )
    home = tmp_path_factory.mktemp("notebook7-home")
    started = time.monotonic()
    try:
        with jupyter_lab(root, home, notebook7=True) as url, chromium_page(queue) as nb:
            page = nb.page
            page.goto(f"{url}/tree")  # Notebook 7's file list names the notebook
            expect(page.get_by_text("dashboard.ipynb").first).to_be_visible(timeout=60_000)
            page.goto(f"{url}/notebooks/dashboard.ipynb")
            wait_for_kernel(nb)
            run_all_and_wait_for_dashboard(nb)
            print(f"\nNotebook 7 showed the dashboard after {time.monotonic() - started:.1f}s")
            yield nb
    finally:
        client.drop_database(db_name)


@pytest.mark.serial  # a latency bound: nothing of another xdist worker beside it
def test_notebook7_renders_the_dashboard_shows_jobs_live_and_publishes(notebook7, alone):
    nb = notebook7
    assert "/notebooks/dashboard.ipynb" in nb.page.url
    version = nb.page.evaluate("window.jupyterapp.version")
    assert int(version.split(".")[0]) >= 7, version  # Notebook 7, not JupyterLab
    expect(nb.row("before the notebook")).to_be_visible(timeout=5_000)

    # published from this process: the row shows within SHOWN_WITHIN of the publish
    figures = []
    gaps = random.Random(17)
    with alone():
        for _ in range(SAMPLES):
            token = f"nb7-appears-{uuid.uuid4().hex[:8]}"
            nb.page.evaluate(WATCH_FOR_ROW, token)
            published = time.time()  # the same clock as the browser's Date.now()
            nb.queue.pub({"browser": token})
            shown = nb.page.evaluate("window.__mjqShown")
            assert shown is not None, f"{token} never showed in Notebook 7"
            figures.append(shown / 1000 - published)
            time.sleep(gaps.uniform(0.2, 1.5))  # at any moment of the watcher's cycle
    print(
        f"\nNotebook 7: published jobs shown after {', '.join(f'{s:.3f}' for s in figures)} s"
        f" (median {statistics.median(figures):.3f} s, max {max(figures):.3f} s)"
    )
    assert max(figures) < SHOWN_WITHIN, figures

    # a click on Publish writes the job
    token = f"nb7-from-the-page-{uuid.uuid4().hex[:8]}"
    nb.dashboard.locator(".mjq-editor textarea").fill(f'{{"browser": "{token}", "n": 7}}')
    expect(nb.publish_button).to_be_enabled()
    nb.publish_button.click()
    deadline = time.monotonic() + 10
    while (doc := nb.queue.collection.find_one({"data.browser": token})) is None:
        assert time.monotonic() < deadline, "the job published in Notebook 7 never reached MongoDB"
        time.sleep(0.1)
    assert doc["data"] == {"browser": token, "n": 7} and doc["status"] == "waiting"
    expect(nb.row(token)).to_be_visible(timeout=5_000)
    errors = [error for error in nb.errors if error != NOTEBOOK7_OWN_ERROR]
    assert nb.alerts == [] and errors == [], (nb.alerts, errors)


def test_notebook7_screenshots_in_light_and_dark(notebook7, tmp_path):
    stage_screenshot_jobs(notebook7)
    shots = shoot(notebook7, tmp_path, "notebook7-dashboard")
    assert all(p.stat().st_size > 10_000 for p in shots)
    assert notebook7.alerts == []
