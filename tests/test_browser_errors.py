"""The dashboard's Errors panel in a real JupyterLab (Chromium through Playwright): a group of
failures shows, its button opens it, "Retry all N" asks with the count and requeues exactly
that group's jobs, which a worker then does."""

from __future__ import annotations

import re
import uuid

import pytest

from mjq_notebook import Empty, JobQueue

from .support.lab import dashboard_in_lab, expect
from .support.waiting import wait_for

pytestmark = pytest.mark.browser


def _fail(queue: JobQueue, exc: Exception) -> object:
    queue.pub({"kind": type(exc).__name__}, max_attempts=1)
    job = queue.next(timeout=5)
    try:
        raise exc
    except Exception as raised:
        queue.fail(job, raised)
    return job.id


@pytest.fixture(scope="module")
def lab(tmp_path_factory, client, server_uri):
    db_name = f"mjq_test_{uuid.uuid4().hex[:10]}"
    queue = JobQueue(client[db_name], lease=30)
    keys = [_fail(queue, KeyError(f"user {n} missing")) for n in (3, 17, 256)]
    others = [_fail(queue, ValueError(f"bad row {n}")) for n in (1, 2)]
    try:
        with dashboard_in_lab(tmp_path_factory, queue, server_uri) as lab:
            lab.keys, lab.others = keys, others  # type: ignore[attr-defined]
            yield lab
    finally:
        client.drop_database(db_name)


def test_retry_a_group_from_the_errors_panel(lab):
    panel = lab.page.locator(".mjq-errors")
    expect(panel).to_contain_text("5 jobs failed, in 2 group(s)", timeout=15_000)
    expect(panel).to_contain_text("user <n> missing")
    panel.get_by_role("button", name=re.compile(r"KeyError")).click()
    retry = panel.get_by_role("button", name=re.compile(r"Retry all 3$"))
    expect(retry).to_be_visible(timeout=5_000)
    retry.click()
    confirm = panel.get_by_role("button", name=re.compile(r"Confirm: retry 3 jobs"))
    expect(confirm).to_be_visible(timeout=5_000)
    assert {lab.queue.get(i)["status"] for i in lab.keys} == {"failed"}  # asked, not done
    confirm.click()
    expect(panel).to_contain_text("retried 3 jobs", timeout=5_000)
    states = {lab.queue.get(i)["status"] for i in lab.keys}
    assert states == {"waiting"}
    assert {lab.queue.get(i)["status"] for i in lab.others} == {"failed"}
    expect(panel).to_contain_text("2 jobs failed, in 1 group(s)", timeout=15_000)
    for _ in lab.keys:  # a worker does them now
        lab.queue.done(lab.queue.next(timeout=5))
    with pytest.raises(Empty):
        lab.queue.next()
    wait_for(
        lambda: {lab.queue.get(i)["status"] for i in lab.keys} == {"done"}, 10, "the group done"
    )
