"""The dashboard's range picker in a real JupyterLab through Chromium (issue 26, item 3):
choosing 7 d draws a week of rollups, its time axis in days, in the light and the dark theme
(screenshots of both, to look at), with the oldest waiting job's age beside the picker.

One JupyterLab, one notebook (the dashboard) for the module.
"""

from __future__ import annotations

import uuid

import pytest

from mjq_notebook import JobQueue

from .support.lab import dashboard_in_lab, expect, shoot
from .support.rollups import seed_rollups

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def lab(tmp_path_factory, client, server_uri):
    db_name = f"mjq_test_{uuid.uuid4().hex[:10]}"
    queue = JobQueue(client[db_name], lease=30, max_attempts=1)
    seed_rollups(queue, days=7)  # a week as the workers would have rolled it up
    queue.pub({"kind": "report"})  # and one job waiting now
    try:
        with dashboard_in_lab(tmp_path_factory, queue, server_uri) as lab:
            yield lab
    finally:
        client.drop_database(db_name)


def test_choosing_7_days_draws_the_week_in_both_themes(lab, tmp_path):
    board = lab.dashboard
    expect(board).to_contain_text("Oldest waiting:", timeout=10_000)
    expect(board.locator(".mjq", has_text="Oldest waiting:").locator("b")).not_to_have_text(
        "none", timeout=10_000
    )
    board.get_by_role("button", name="7 d", exact=True).click()
    expect(board).to_contain_text("last 7 d · per 1 h", timeout=15_000)
    charts = board.locator("svg", has_text="-3.5 d")
    expect(charts).to_have_count(3)
    for label in ("-7 d", "-3.5 d", "now", "finished", "error rate", "p99", "oldest waiting"):
        expect(charts.locator("text", has_text=label).first).to_be_visible()
    # the live charts make way for the week's
    expect(board.locator("svg", has_text="created").first).to_be_hidden()
    assert lab.errors == []
    shots = shoot(lab, tmp_path, "dashboard-7d")
    assert all(path.stat().st_size > 10_000 for path in shots)
