"""``q.dashboard()`` in a real JupyterLab 4, driven by Debian's Chromium through Playwright.

One JupyterLab server, one notebook and one page for the module: the notebook shows the
dashboard of a fresh database; the tests publish and work jobs from this process and look at
the rendered page, click in it, and read MongoDB. ``MJQ_SCREENSHOTS=1`` also writes the
light and dark screenshots to ``docs/``.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid

import pytest

from mjq_notebook import Empty, JobQueue
from mjq_notebook.core.registry import Registration, State

from .support.browser import WATCH_FOR_ROW
from .support.jupyter import jupyter_lab, write_notebook
from .support.lab import (
    chromium_page,
    expect,
    run_all_and_wait_for_dashboard,
    shoot,
    stage_screenshot_jobs,
    wait_for_kernel,
)
from .support.processes import start_worker, stop_processes
from .support.xss import XSS

pytestmark = pytest.mark.browser

# The kernel's threads, less the subshells JupyterLab's widget manager may ask ipykernel 7 for
THREADS = "sum(not t.name.startswith('subshell-') for t in threading.enumerate())"


@pytest.fixture(scope="module")
def lab(tmp_path_factory, client, server_uri):
    db_name = f"mjq_test_{uuid.uuid4().hex[:10]}"
    queue = JobQueue(client[db_name], lease=30)
    queue.pub({"kind": "before the notebook"})
    root = tmp_path_factory.mktemp("lab-root")
    write_notebook(
        root / "dashboard.ipynb",
        [
            "import threading\n"
            "from mjq_notebook import JobQueue, connect\n"
            f"q = JobQueue(connect({server_uri!r}, {db_name!r}))\n"
            "q.counts()  # the client's threads have started: count from here\n"
            f"threads_before = {THREADS}\n"
            "q.dashboard()",
            "q.explore()",
        ],
    )
    home = tmp_path_factory.mktemp("jupyter-home")
    started = time.monotonic()
    try:
        with jupyter_lab(root, home) as url, chromium_page(queue) as lab:
            lab.page.goto(f"{url}/lab/tree/dashboard.ipynb")
            wait_for_kernel(lab)
            lab.run("application:toggle-left-area")  # more room for the dashboard
            run_all_and_wait_for_dashboard(lab)
            print(f"\nJupyterLab showed the dashboard after {time.monotonic() - started:.1f}s")
            yield lab
    finally:
        client.drop_database(db_name)


@pytest.mark.serial  # a latency bound: nothing of another xdist worker beside it
def test_a_job_published_elsewhere_appears_in_the_page_within_half_a_second(lab):
    figures = []
    for n in range(5):
        token = f"appears-{uuid.uuid4().hex[:8]}"
        lab.page.evaluate(WATCH_FOR_ROW, token)
        published = time.time()  # the browser's Date.now() clock
        lab.queue.pub({"browser": token})
        shown = lab.page.evaluate("window.__mjqShown")
        assert shown is not None, f"{token} never showed in the page"
        figures.append(shown / 1000 - published)
        time.sleep(0.2 + 0.3 * n)  # at different moments of the watcher's cycle
    print(f"\nJupyterLab: jobs shown after {', '.join(f'{f:.3f}' for f in figures)} s")
    assert max(figures) < 0.5, figures


def test_a_worker_turns_the_row_done(lab):
    token = f"worked-{uuid.uuid4().hex[:8]}"
    target = lab.queue.pub({"browser": token})
    expect(lab.row(token)).to_be_visible(timeout=5_000)
    while True:  # work everything waiting, as a worker would, until ours is done
        job = lab.queue.next(timeout=5)
        lab.queue.done(job, result={"ok": True})
        if job.id == target:
            break
    finished = time.monotonic()
    expect(lab.row(token)).to_contain_text("done", timeout=5_000)
    print(f"\ndone shown after {time.monotonic() - finished:.2f}s")


def test_publish_in_the_page_writes_the_job(lab):
    token = f"from-the-page-{uuid.uuid4().hex[:8]}"
    editor = lab.dashboard.locator(".mjq-editor textarea")
    editor.fill(f'{{"browser": "{token}", "n": 1}}')
    expect(lab.publish_button).to_be_enabled()
    lab.publish_button.click()
    deadline = time.monotonic() + 10
    while (doc := lab.queue.collection.find_one({"data.browser": token})) is None:
        assert time.monotonic() < deadline, "the job published in the page never reached MongoDB"
        time.sleep(0.1)
    assert doc["data"] == {"browser": token, "n": 1} and doc["status"] == "waiting"
    expect(lab.dashboard).to_contain_text(str(doc["_id"]), timeout=5_000)
    expect(lab.row(token)).to_be_visible(timeout=5_000)


def test_one_publish_button_says_how_many_and_publishes_that_many(lab):
    token = f"copies-{uuid.uuid4().hex[:8]}"
    lab.dashboard.locator(".mjq-editor textarea").fill(f'{{"browser": "{token}"}}')
    copies = lab.dashboard.locator(
        "xpath=.//label[normalize-space()='copies']/following-sibling::input"
    )
    copies.fill("3")
    copies.press("Tab")
    button = lab.dashboard.get_by_role("button", name=re.compile(r"^\W*Publish 3 copies$"))
    expect(button).to_be_visible(timeout=5_000)
    assert lab.publish_button.count() == 0  # no "Publish" beside it that publishes one
    button.click()
    deadline = time.monotonic() + 10
    while lab.queue.collection.count_documents({"data.browser": token}) < 3:
        assert time.monotonic() < deadline, "the three copies never reached MongoDB"
        time.sleep(0.1)
    time.sleep(0.3)
    assert lab.queue.collection.count_documents({"data.browser": token}) == 3
    copies.fill("1")
    copies.press("Tab")
    expect(lab.publish_button).to_be_visible(timeout=5_000)


OUTPUT_WIDTH = 953  # JupyterLab's and Notebook 7's output area in the report of a scrollbar

# Every box of an output that would show a horizontal scrollbar (its content wider than it),
# and the size chart labels are drawn at (an SVG narrower than its viewBox scales them down).
MEASURE = """(output) => {
    const wide = [];
    for (const el of [output, ...output.querySelectorAll("*")]) {
        const overflow = getComputedStyle(el).overflowX;
        if ((overflow === "auto" || overflow === "scroll") && el.scrollWidth > el.clientWidth) {
            wide.push(`${el.className} ${el.scrollWidth} > ${el.clientWidth}`);
        }
    }
    const labels = [...output.querySelectorAll("svg text")].map((text) => {
        const svg = text.ownerSVGElement;
        const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
        return parseFloat(getComputedStyle(text).fontSize) * scale;
    });
    return {width: output.clientWidth, wide, labels};
}"""


def test_no_horizontal_scrollbar_at_953px_and_chart_labels_of_11px(lab):
    """A 957 px box in a 953 px output area put a scrollbar under the dashboard and the
    explorer (widgets 100% wide plus their 2 px margins)."""
    explorer = lab.page.locator(".jp-OutputArea-output").filter(has_text="group by").first
    expect(explorer.locator("img")).to_be_visible(timeout=30_000)
    original = lab.page.viewport_size
    try:
        for _ in range(5):  # the output area is as wide as the window less a fixed margin
            width = lab.dashboard.evaluate("(output) => output.clientWidth")
            if width == OUTPUT_WIDTH:
                break
            size = lab.page.viewport_size
            lab.page.set_viewport_size(
                {"width": size["width"] + OUTPUT_WIDTH - width, "height": size["height"]}
            )
            lab.page.wait_for_timeout(500)
        lab.page.wait_for_timeout(1000)  # the charts redraw, the layout settles
        for name, output in (("dashboard", lab.dashboard), ("explorer", explorer)):
            found = output.evaluate(MEASURE)
            assert found["width"] == OUTPUT_WIDTH, found
            assert found["wide"] == [], f"the {name} overflows at {OUTPUT_WIDTH} px: {found}"
        labels = lab.dashboard.evaluate(MEASURE)["labels"]
        assert labels and min(labels) >= 11 - 0.01, labels
    finally:
        lab.page.set_viewport_size(original)


def test_table_columns_stand_still_as_values_change(lab):
    """The columns keep their places as texts of other lengths arrive ("due in 59.8 min"
    beside "1.2 s …") and as the live cells count on."""
    header = lab.dashboard.locator(".mjq-tail thead th")

    def places() -> list[int]:
        boxes = (th.bounding_box() for th in header.all())
        return [round(box["x"]) for box in boxes if box]  # progress: hidden while none has it

    token = f"columns-{uuid.uuid4().hex[:8]}"
    lab.queue.pub({"browser": token})
    expect(lab.row(token)).to_be_visible(timeout=5_000)
    before = places()
    delayed = f"columns-due-{uuid.uuid4().hex[:8]}"
    lab.queue.pub({"browser": delayed}, delay=3590)  # "due in 59.8 min"
    expect(lab.row(delayed)).to_contain_text("due in", timeout=5_000)
    lab.page.wait_for_timeout(1200)  # and the live cells tick
    assert places() == before, (before, places())


def test_screenshots_in_light_and_dark(lab, tmp_path):
    stage_screenshot_jobs(lab)
    shots = shoot(lab, tmp_path, "dashboard")
    assert all(p.stat().st_size > 10_000 for p in shots)
    assert lab.alerts == []


def test_hostile_job_data_and_errors_run_no_script(lab):
    ids = [lab.queue.pub({text: text, "nested": {"list": [text]}}) for text in XSS]
    failing = lab.queue.pub({"xss": "fails"}, priority=100, max_attempts=1)
    job = lab.queue.next(timeout=5)
    assert job.id == failing
    try:
        raise RuntimeError("<img src=x onerror=alert(2)>")
    except RuntimeError as exc:
        lab.queue.fail(job, exc)
    lab.queue.pub({"xss": "result"}, priority=100)
    job = lab.queue.next(timeout=5)
    lab.queue.done(job, result={"<script>alert(3)</script>": "<img src=x onerror=alert(3)>"})
    for job_id in [*ids, failing, job.id]:
        row = lab.row(str(job_id))
        expect(row).to_be_visible(timeout=5_000)
        row.click()
        expect(lab.dashboard).to_contain_text(f"Job {job_id}", timeout=5_000)  # the detail
        if job_id == failing:  # its error and traceback, as text
            expect(lab.dashboard).to_contain_text("RuntimeError")
            expect(lab.dashboard).to_contain_text("<img src=x onerror=alert(2)>")
        lab.page.wait_for_timeout(200)
    expect(lab.dashboard).to_contain_text("<img src=x onerror=alert(3)>")  # the result
    lab.page.wait_for_timeout(500)
    assert lab.alerts == [], f"job data ran script in the page: {lab.alerts}"
    dashboard = lab.dashboard
    for selector in ("img[src='x']", "svg[onload]", "script"):
        assert dashboard.locator(selector).count() == 0, f"{selector} rendered from job data"
    assert not lab.errors, lab.errors


def test_requeue_a_failed_job_in_the_page(lab):
    token = f"requeue-{uuid.uuid4().hex[:8]}"
    failing = lab.queue.pub({"browser": token}, priority=100, max_attempts=1)
    job = lab.queue.next(timeout=5)
    assert job.id == failing
    lab.queue.fail(job, "broken on purpose")
    expect(lab.row(token)).to_contain_text("failed", timeout=5_000)
    lab.row(token).click()
    requeue = lab.dashboard.get_by_role("button", name=re.compile(r"^\W*Retry$"))
    expect(requeue).to_be_visible(timeout=5_000)
    requeue.click()
    expect(lab.row(token)).to_contain_text("waiting", timeout=5_000)
    doc = lab.queue.collection.find_one({"_id": failing})
    assert doc["status"] == "waiting" and doc["error"]["message"] == "broken on purpose"


def test_waits_and_delays_count_on_in_the_page(lab):
    """The live cells move by themselves: a waiting job's wait grows and a delayed job's
    "due in" shrinks, counted in the page between the rows the kernel sends."""
    waiting, delayed = f"waits-{uuid.uuid4().hex[:8]}", f"delayed-{uuid.uuid4().hex[:8]}"
    lab.queue.pub({"browser": waiting})
    lab.queue.pub({"browser": delayed}, delay=30)
    cells = {token: lab.row(token).locator("td").nth(3) for token in (waiting, delayed)}
    expect(cells[delayed]).to_contain_text("due in", timeout=5_000)
    expect(cells[waiting]).to_contain_text("…", timeout=5_000)
    before = {token: cell.inner_text() for token, cell in cells.items()}
    time.sleep(2.5)
    after = {token: cell.inner_text() for token, cell in cells.items()}
    assert after[waiting] != before[waiting] and after[waiting].endswith(" …"), (before, after)
    assert after[delayed] != before[delayed] and after[delayed].startswith("due in "), after

    def seconds(text: str) -> float:
        number, unit = text.replace("due in ", "").replace(" …", "").split()
        return float(number) * {"ms": 0.001, "s": 1, "min": 60}[unit]

    assert seconds(after[waiting]) > seconds(before[waiting])
    assert seconds(after[delayed]) < seconds(before[delayed])


def test_pause_queue_in_the_page_stops_claims_and_resume_restarts_them(lab, tmp_path):
    pause = lab.dashboard.get_by_role("button", name=re.compile(r"^\W*Pause queue$"))
    badge = lab.dashboard.locator(".mjq-s-paused")
    expect(pause).to_be_visible(timeout=5_000)
    expect(badge).to_have_count(0)
    token = f"paused-{uuid.uuid4().hex[:8]}"
    try:
        pause.click()
        expect(badge).to_be_visible(timeout=2_000)
        expect(badge).to_contain_text("paused")
        clicked = time.monotonic()
        lab.queue.pub({"browser": token})  # publishing goes on
        time.sleep(max(0.0, clicked + 1.0 - time.monotonic()))  # claims look within 1 s
        with pytest.raises(Empty):
            lab.queue.next()
        shoot(lab, tmp_path, "dashboard-paused")
        resume = lab.dashboard.get_by_role("button", name=re.compile(r"^\W*Resume queue$"))
        resume.click()
        expect(badge).to_have_count(0, timeout=2_000)
        expect(pause).to_be_visible()
        assert lab.queue.next(timeout=2) is not None
    finally:
        lab.queue.resume()
    assert lab.alerts == []


def test_cancel_in_the_page_cancels_a_waiting_job_after_confirmation(lab):
    token = f"cancel-{uuid.uuid4().hex[:8]}"
    job_id = lab.queue.pub({"browser": token}, delay=600)  # waiting, and not taken meanwhile
    expect(lab.row(token)).to_be_visible(timeout=5_000)
    lab.row(token).click()
    cancel = lab.dashboard.get_by_role("button", name=re.compile(r"^\W*Cancel job$"))
    expect(cancel).to_be_visible(timeout=5_000)
    cancel.click()
    confirm = lab.dashboard.get_by_role("button", name=re.compile(r"^\W*Confirm cancel$"))
    expect(confirm).to_be_visible(timeout=5_000)
    assert lab.queue.get(job_id)["status"] == "waiting"  # the first click only asks
    confirm.click()
    expect(lab.row(token)).to_contain_text("cancelled", timeout=5_000)
    assert lab.queue.get(job_id)["status"] == "cancelled"
    expect(lab.dashboard).to_contain_text(f"job {job_id} is cancelled")
    assert lab.alerts == []  # no browser dialog asked


def test_run_now_in_the_page_makes_a_delayed_job_due(lab):
    token = f"run-now-{uuid.uuid4().hex[:8]}"
    job_id = lab.queue.pub({"browser": token}, delay=600)
    wait_cell = lab.row(token).locator("td").nth(3)
    expect(wait_cell).to_contain_text("due in", timeout=5_000)
    lab.row(token).click()
    run_now = lab.dashboard.get_by_role("button", name=re.compile(r"^\W*Run now$"))
    expect(run_now).to_be_visible(timeout=5_000)
    run_now.click()
    expect(wait_cell).not_to_contain_text("due in", timeout=5_000)
    doc = lab.queue.get(job_id)
    due = doc["available_at"]
    assert doc["status"] != "waiting" or due is None or due <= dt.datetime.now(dt.timezone.utc)
    expect(run_now).to_be_hidden(timeout=5_000)  # nothing left to bring forward
    assert lab.alerts == []


def test_the_workers_panel_shows_two_workers_and_progress_shows_as_a_bar(
    lab, tmp_path, server_uri, monkeypatch
):
    """Two ``mjq work`` processes, as an operator runs them: both in the panel, one job's
    progress as a bar, and both "stopped" after a SIGTERM."""
    token = f"progress-{uuid.uuid4().hex[:8]}"
    names = [f"browser-{uuid.uuid4().hex[:6]}-{n}" for n in (1, 2)]
    release = tmp_path / "release"
    monkeypatch.setenv("MJQ_TEST_RELEASE", str(release))
    log = tmp_path / "ran.log"
    workers = [
        start_worker(server_uri, lab.queue.db, "progress", log, "--name", name, "--heartbeat", "1")
        for name in names
    ]
    try:
        lab.queue.pub({"browser": token, "progress": True})
        panel = lab.dashboard.locator("table.mjq-workers")
        for name in names:
            expect(panel.locator("tr", has_text=name)).to_contain_text("running", timeout=20_000)
        cell = lab.row(token).locator("td.mjq-tail-data")
        expect(cell).to_contain_text("40% · 4/10 · resizing", timeout=10_000)
        bar = cell.locator(".mjq-tail-bar > span")
        assert bar.evaluate("(el) => el.style.width") == "40%"
        expect(panel).to_contain_text(" for ", timeout=5_000)  # what one runs, how long
        lab.row(token).click()
        expect(lab.dashboard.locator('[role="progressbar"]')).to_be_visible(timeout=5_000)
        shoot(lab, tmp_path, "dashboard-workers")
    finally:
        release.touch()
        stop_processes(workers, grace=30)
    assert [w.returncode for w in workers] == [0, 0], [w.stdout.read() for w in workers]
    for name in names:
        row = lab.dashboard.locator("table.mjq-workers tr", has_text=name)
        expect(row).to_contain_text("stopped", timeout=10_000)
    assert not lab.errors, lab.errors


def test_a_lost_workers_job_says_so_and_release_now_hands_it_back(lab, tmp_path):
    token = f"lost-{uuid.uuid4().hex[:8]}"
    job_id = lab.queue.pub({"browser": token}, priority=1000)
    job = lab.queue.next(timeout=5)
    assert job.id == job_id
    # its worker registers, then falls silent: lost after 3 heartbeats of 0.2 s
    name = f"gone {XSS[0]}"
    record = Registration(lab.queue, f"lost-{token}", name=name, queues=[lab.queue.name],
                          concurrency=1, interval=0.2)  # fmt: skip
    record.write(State.RUNNING, [{"id": job.id, "since": job["ts"]["started"]}], {})
    progress = {"done": 3, "total": 10, "message": "resizing", "at": job["ts"]["started"]}
    lab.queue.collection.update_one(  # as if that worker had claimed it, and reported progress
        {"_id": job_id}, {"$set": {"worker": f"lost-{token}", "progress": progress}}
    )
    job["worker"] = f"lost-{token}"
    # its row says so before anyone selects it or opens the tail's Workers panel
    status = lab.row(token).locator("td.mjq-tail-status")
    expect(status).to_have_text("working · worker lost", timeout=10_000)
    expect(lab.row(token)).to_have_class(re.compile(r"\bmjq-tail-lost\b"))
    expect(lab.row(token)).to_have_attribute("data-status", "working")
    lab.row(token).click()
    lease = job["lease_until"].strftime("%H:%M:%S")
    note = (
        f"worker lost · claimable again from {lease} UTC, when its lease ends, "
        "by the next free worker; Release now hands it back at once"
    )
    expect(lab.dashboard).to_contain_text(note, timeout=10_000)
    tail_workers = lab.dashboard.get_by_role("button", name=re.compile(r"^\W*Workers$"))
    tail_workers.click()  # the tail's compact panel
    expect(lab.dashboard.locator("table.mjq-workers tr", has_text=name)).to_have_count(2)
    expect(lab.row(token)).not_to_have_class(re.compile(r"\bmjq-tail-flash\b"))  # as it stays
    shoot(lab, tmp_path, "dashboard-lost-worker")
    # its progress stands still: the row's bar in the grey of a waiting status, not the
    # working colour of a live one
    bar = lab.row(token).locator(".mjq-tail-bar > span")
    assert bar.evaluate("(el) => el.style.width") == "30%"
    frozen = bar.evaluate("(el) => getComputedStyle(el).backgroundColor")
    detail_bar = lab.dashboard.locator('[role="progressbar"] > span')  # and so is the detail's
    assert detail_bar.evaluate("(el) => getComputedStyle(el).backgroundColor") == frozen
    release = lab.dashboard.get_by_role("button", name=re.compile(r"^\W*Release now$"))
    release.click()
    expect(status).to_have_text("waiting", timeout=5_000)
    expect(lab.row(token)).not_to_have_class(re.compile(r"\bmjq-tail-lost\b"))
    assert status.evaluate("(el) => getComputedStyle(el).color") == frozen
    assert lab.queue.get(job_id)["status"] == "waiting"
    expect(lab.dashboard).to_contain_text(f"job {job_id} is waiting again")
    expect(release).to_be_hidden()
    tail_workers.click()
    assert lab.alerts == [] and lab.dashboard.locator("img[src='x']").count() == 0


def test_a_dashboard_no_longer_shown_stops(lab):
    before = int(lab.kernel_value("threads_before"))
    shown = int(lab.kernel_value(THREADS))
    assert shown > before, "the dashboard runs no thread of its own?"
    lab.run("notebook:clear-all-cell-outputs")  # as re-running or clearing the cell does
    deadline = time.monotonic() + 5
    while (now := int(lab.kernel_value(THREADS))) > before:
        assert time.monotonic() < deadline, (
            f"{before} threads before the dashboard, {shown} while shown, {now} 5 s after its "
            "output was cleared: " + lab.kernel_value("[t.name for t in threading.enumerate()]")
        )
        time.sleep(0.2)
    assert now == before
