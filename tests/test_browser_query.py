"""The query language in the dashboard's tail, in a real JupyterLab through Chromium: a query
typed in the search box leaves only its matches in the table; a mistake shows its message
under the box and leaves the rows as they were."""

from __future__ import annotations

import time
import uuid

import pytest

from mjq_notebook import JobQueue
from mjq_notebook.notebook.widgets.search import PLACEHOLDER

from .support.lab import dashboard_in_lab, expect

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def lab(tmp_path_factory, client, server_uri):
    db_name = f"mjq_test_{uuid.uuid4().hex[:10]}"
    queue = JobQueue(client[db_name], lease=30)
    try:
        with dashboard_in_lab(tmp_path_factory, queue, server_uri) as lab:
            yield lab
    finally:
        client.drop_database(db_name)


def test_a_typed_query_shows_only_its_matches(lab):
    token = uuid.uuid4().hex[:8]
    ids = lab.queue.pub_many(
        [
            {"shop": f"s-{token}", "customer": n, "plan": "pro" if n % 2 else "free"}
            for n in range(6)
        ]
    )
    rows = lab.page.locator(".mjq-tail tbody tr")
    expect(lab.row(str(ids[5]))).to_be_visible(timeout=10_000)
    box = lab.page.get_by_placeholder(PLACEHOLDER).first
    box.fill(f"data.shop:s-{token} data.customer:>=2 -data.plan:free")
    start = time.monotonic()
    expect(rows).to_have_count(2, timeout=5_000)
    print(f"\nthe query's rows shown {time.monotonic() - start:.2f} s after typing")
    for n in (5, 3):
        expect(lab.row(str(ids[n]))).to_be_visible()
    box.fill(f"data.shop:s-{token} stauts:failed")
    message = lab.page.locator(".mjq-query-error")
    expect(message.first).to_contain_text("unknown field `stauts` at", timeout=5_000)
    expect(message.first).to_contain_text("did you mean `status`?")
    expect(rows).to_have_count(2)  # the last good query's rows stay
    box.fill("")
    expect(rows).to_have_count(6, timeout=5_000)
    expect(message.first).to_be_hidden()
