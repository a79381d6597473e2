"""The query language in the dashboard's tail, in a real JupyterLab through Chromium: a query
typed in the search box leaves only its matches in the table; a mistake shows its message
under the box and leaves the rows as they were."""

from __future__ import annotations

import time
import uuid

import pytest

from mjq_notebook import JobQueue
from mjq_notebook.notebook.widgets.search import PLACEHOLDER

from .support.jupyter import jupyter_lab, write_notebook
from .support.lab import chromium_page, expect, run_all_and_wait_for_dashboard, wait_for_kernel

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def lab(tmp_path_factory, client, server_uri):
    db_name = f"mjq_test_{uuid.uuid4().hex[:10]}"
    queue = JobQueue(client[db_name], lease=30)
    root = tmp_path_factory.mktemp("lab-root")
    write_notebook(
        root / "dashboard.ipynb",
        [f"from mjq_notebook import JobQueue, connect\n"
         f"JobQueue(connect({server_uri!r}, {db_name!r})).dashboard()"],
    )  # fmt: skip
    home = tmp_path_factory.mktemp("jupyter-home")
    try:
        with jupyter_lab(root, home) as url, chromium_page(queue) as lab:
            lab.page.goto(f"{url}/lab/tree/dashboard.ipynb")
            wait_for_kernel(lab)
            run_all_and_wait_for_dashboard(lab)
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
