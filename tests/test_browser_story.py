"""A job's story and Edit and retry in JupyterLab's tail (issue 25, items 4 and 5): edit a
failed job's data in its detail, retry it and see it done; a job lost with its (killed)
worker and then done shows both attempts in its detail. One JupyterLab for the module."""

from __future__ import annotations

import re
import signal
import time
import uuid

import pytest

from mjq_notebook import JobQueue

from .support.jupyter import jupyter_lab, write_notebook
from .support.lab import chromium_page, expect, wait_for_kernel
from .support.processes import read_log, start_worker
from .support.waiting import wait_for

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def lab(tmp_path_factory, client, server_uri):
    db_name = f"mjq_test_{uuid.uuid4().hex[:10]}"
    queue = JobQueue(client[db_name], lease=30, backoff=0.05)
    root = tmp_path_factory.mktemp("lab-root")
    write_notebook(
        root / "tail.ipynb",
        [
            "from mjq_notebook import JobQueue, connect\n"
            f"q = JobQueue(connect({server_uri!r}, {db_name!r}))\n"
            "q.tail()",
        ],
    )
    home = tmp_path_factory.mktemp("jupyter-home")
    started = time.monotonic()
    try:
        with jupyter_lab(root, home) as url, chromium_page(queue) as lab:
            lab.page.goto(f"{url}/lab/tree/tail.ipynb")
            wait_for_kernel(lab)
            lab.run("notebook:run-all-cells")
            expect(lab.page.locator(".mjq-tail")).to_be_visible(timeout=60_000)
            print(f"\nJupyterLab showed the tail after {time.monotonic() - started:.1f}s")
            yield lab
    finally:
        client.drop_database(db_name)


def _detail(lab):
    """The tail's output in the notebook (its rows, buttons and detail)."""
    return lab.page.locator(".jp-OutputArea-output").filter(has=lab.page.locator(".mjq-tail"))


def test_edit_and_retry_a_failed_job_in_the_tails_detail_and_see_it_done(lab):
    token = f"edit-{uuid.uuid4().hex[:8]}"
    job_id = lab.queue.pub({"browser": token, "to": "typo"}, max_attempts=1)
    job = lab.queue.next(timeout=5)
    assert job.id == job_id
    lab.queue.fail(job, "no such address")
    expect(lab.row(token)).to_contain_text("failed", timeout=5_000)
    lab.row(token).click()
    view = _detail(lab)
    view.get_by_role("button", name=re.compile(r"^\W*Edit and retry$")).click()
    editor = view.locator(".mjq-edit-data textarea")
    expect(editor).to_have_value(re.compile(r'"to": "typo"'), timeout=5_000)
    editor.fill('{"browser": "' + token + '", "to": "fixed"')
    expect(view).to_contain_text("invalid JSON", timeout=5_000)  # the publish form's words
    editor.fill('{"browser": "' + token + '", "to": "fixed"}')
    view.get_by_role("button", name=re.compile(r"^\W*Retry with this data$")).click()
    expect(lab.row(token)).to_contain_text("waiting", timeout=5_000)
    again = lab.queue.next(timeout=5)
    assert again.id == job_id and again.data == {"browser": token, "to": "fixed"}
    lab.queue.done(again)
    expect(lab.row(token)).to_contain_text("done", timeout=5_000)
    expect(view).to_contain_text("Attempts", timeout=5_000)
    expect(view).to_contain_text("data was", timeout=5_000)


def test_a_job_lost_with_its_worker_then_done_shows_both_attempts(lab, server_uri, tmp_path):
    token = f"lost-{uuid.uuid4().hex[:8]}"
    job_id = lab.queue.pub({"browser": token})
    log = tmp_path / "ran.log"
    doomed = start_worker(server_uri, lab.queue.db, "hang", log, "--lease", "1")
    try:
        wait_for(lambda: read_log(log), 30, "the worker to start the job")
        doomed_worker = lab.queue.get(job_id)["worker"]
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
        doomed.communicate(timeout=30)
    job = lab.queue.next(timeout=10)  # once its lease ran out: attempt 2, here
    assert job.id == job_id
    lab.queue.done(job)
    expect(lab.row(token)).to_contain_text("done", timeout=5_000)
    lab.row(token).click()
    attempts = _detail(lab).locator(".mjq-sec", has_text="Attempts").locator("tbody tr")
    expect(attempts).to_have_count(2, timeout=5_000)
    expect(attempts.nth(0)).to_contain_text("lost")
    expect(attempts.nth(0)).to_contain_text(doomed_worker)
    expect(attempts.nth(1)).to_contain_text("done")
    expect(attempts.nth(1)).to_contain_text(lab.queue.worker_id)
    assert lab.alerts == [] and lab.errors == []
