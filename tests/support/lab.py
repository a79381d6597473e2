"""A notebook open in Chromium through Playwright (JupyterLab or Notebook 7): the page, the
dashboard in it, the kernel behind it, and the jobs and screenshots the docs show. Importing
it skips the calling module where Playwright, Chromium, JupyterLab or ipykernel is missing."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mjq_notebook import JobQueue

from .browser import CHROMIUM, CHROMIUM_ARGS, DOCS, require_chromium
from .jupyter import require_modules

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the browser tests need playwright (the dev extra)"
)
require_chromium()
require_modules("jupyterlab", "ipykernel", needed_by="the browser tests")
expect = sync_api.expect


@dataclass
class Lab:
    page: object  # playwright Page, showing the notebook with the dashboard
    queue: JobQueue  # the dashboard's queue, opened from this process
    alerts: list[str] = field(default_factory=list)  # messages of every dialog that opened
    errors: list[str] = field(default_factory=list)  # uncaught page errors

    @property
    def dashboard(self):
        """The dashboard's output in the notebook."""
        # found by its editor: the publish button's label changes with the number of copies
        editor = self.page.locator(".mjq-editor")
        return self.page.locator(".jp-OutputArea-output").filter(has=editor).first

    @property
    def publish_button(self):
        return self.page.get_by_role("button", name=re.compile(r"^\W*Publish$"))

    def row(self, text: str):
        """The tail table's row showing ``text``."""
        return self.page.locator(".mjq-tail tbody tr", has_text=text).first

    def kernel_value(self, expression: str) -> str:
        """``expression`` evaluated in the notebook's kernel, as text."""
        return self.page.evaluate(
            """async (expression) => {
                const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
                const reply = await kernel.requestExecute({
                    code: "", silent: true, store_history: false,
                    user_expressions: {value: expression},
                }).done;
                return reply.content.user_expressions.value.data["text/plain"];
            }""",
            expression,
        )

    def run(self, command: str, args: dict | None = None) -> None:
        self.page.evaluate(
            "([command, args]) => window.jupyterapp.commands.execute(command, args)",
            [command, args or {}],
        )


@contextlib.contextmanager
def chromium_page(queue: JobQueue) -> Iterator[Lab]:
    """A Chromium page (1280 x 1500, 30 s timeouts) for a notebook of ``queue``; its dialogs
    are dismissed and noted, as are its uncaught errors."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1500})
        page.set_default_timeout(30_000)
        lab = Lab(page, queue)
        page.on("dialog", lambda dialog: (lab.alerts.append(dialog.message), dialog.dismiss()))
        page.on("pageerror", lambda error: lab.errors.append(str(error)))
        yield lab
        browser.close()


@contextlib.contextmanager
def dashboard_in_lab(
    tmp_path_factory: pytest.TempPathFactory, queue: JobQueue, uri: str, *more_cells: str
) -> Iterator[Lab]:
    """JupyterLab in Chromium with a notebook showing ``queue.dashboard()`` (then
    ``more_cells``, where ``q`` is the queue), run, the left area hidden."""
    from .jupyter import jupyter_lab, write_notebook

    root = tmp_path_factory.mktemp("lab-root")
    opening = (
        "from mjq_notebook import JobQueue, connect\n"
        f"q = JobQueue(connect({uri!r}, {queue.db.name!r}), {queue.name!r})\n"
        "q.dashboard()"
    )
    write_notebook(root / "dashboard.ipynb", [opening, *more_cells])
    home = tmp_path_factory.mktemp("jupyter-home")
    with jupyter_lab(root, home) as url, chromium_page(queue) as lab:
        lab.page.goto(f"{url}/lab/tree/dashboard.ipynb")
        wait_for_kernel(lab)
        lab.run("application:toggle-left-area")
        run_all_and_wait_for_dashboard(lab)
        yield lab


def wait_for_kernel(lab: Lab) -> None:
    """Until the open notebook's kernel is connected (JupyterLab or Notebook 7)."""
    lab.page.wait_for_function(
        "window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel"
        "?.connectionStatus === 'connected'",
        timeout=60_000,
    )


def run_all_and_wait_for_dashboard(lab: Lab) -> None:
    """Run every cell of the open notebook; fail with its output if no dashboard shows."""
    lab.run("notebook:run-all-cells")
    try:
        expect(lab.publish_button).to_be_visible(timeout=60_000)
    except AssertionError:
        outputs = "\n".join(lab.page.locator(".jp-OutputArea").all_inner_texts())
        pytest.fail(f"the notebook showed no dashboard; its output:\n{outputs}")


# Jobs like a real queue's, for the screenshots: (data, seconds of work, error or None).
SCREENSHOT_JOBS = [
    ({"kind": "thumbnail", "image": "cats/0412.jpg", "size": [256, 256]}, 0.04, None),
    ({"kind": "email", "to": "ada@example.com", "template": "welcome"}, 0.12, None),
    ({"kind": "report", "month": "2026-10", "format": "pdf", "pages": 14}, 0.45, None),
    ({"kind": "thumbnail", "image": "cats/0413.jpg", "size": [256, 256]}, 0.05, None),
    (
        {"kind": "email", "to": "bob@example.com", "template": "reset"},
        0.3,
        TimeoutError("SMTP server smtp.example.com did not answer within 10 s"),
    ),
    ({"kind": "thumbnail", "image": "dogs/0007.png", "size": [512, 512]}, 0.09, None),
    ({"kind": "email", "to": "cy@example.com", "template": "digest"}, 0.15, None),
    ({"kind": "report", "month": "2026-11", "format": "xlsx", "pages": 3}, 0.6, None),
    ({"kind": "thumbnail", "image": "dogs/0008.png", "size": [512, 512]}, 0.07, None),
]
STILL_WORKING = [
    {"kind": "report", "month": "2026-09", "format": "pdf", "pages": 40},
    {"kind": "thumbnail", "image": "birds/0001.jpg", "size": [1024, 1024]},
]
STILL_WAITING = [
    {"kind": "email", "to": "dee@example.com", "template": "welcome"},
    {"kind": "thumbnail", "image": "birds/0002.jpg", "size": [256, 256]},
    {"kind": "report", "month": "2026-12", "format": "pdf", "pages": 9},
]


def stage_screenshot_jobs(lab: Lab) -> None:
    """Jobs like a real queue's in every state, a failed one's detail open, and a job in
    the publish form: what the screenshots show."""
    queue = JobQueue(lab.queue.db, lease=60, max_attempts=1)
    first = 10_000  # above every other job's priority: the claims below take these jobs
    failed = None
    for data, seconds, error in SCREENSHOT_JOBS:
        job_id = queue.pub(data, priority=first)
        job = queue.next(timeout=5)
        assert job.id == job_id
        time.sleep(seconds)
        if error is None:
            queue.done(job, result={"ok": True, "ms": round(seconds * 1000)})
        else:
            try:
                raise error
            except TimeoutError as exc:
                queue.fail(job, exc)
            failed = job.id
    working = queue.pub_many(STILL_WORKING, priority=first)
    running = [queue.next(timeout=5) for _ in working]
    assert [job.id for job in running] == working
    running[0].progress(14, 40, "rendering pages")  # a bar in its row
    last = queue.pub_many(STILL_WAITING)[-1]
    expect(lab.row(str(last))).to_be_visible(timeout=5_000)
    lab.row(str(failed)).click()  # a failed job's detail shows the most
    expect(lab.dashboard).to_contain_text("TimeoutError", timeout=5_000)
    editor = lab.dashboard.locator(".mjq-editor textarea")
    editor.fill('{"kind": "email", "to": "eve@example.com", "template": "welcome"}')
    editor.blur()
    lab.page.mouse.move(0, 0)  # no hover highlight in the picture
    lab.page.wait_for_timeout(1500)  # the rows' flash fades


def shoot(lab, tmp_path, name: str) -> list[Path]:
    """The dashboard in the light and the dark theme (to look at; MJQ_SCREENSHOTS=1: docs/)."""
    shots = []
    lab.page.mouse.move(0, 0)
    for theme, light in (("JupyterLab Light", "true"), ("JupyterLab Dark", "false")):
        lab.run("apputils:change-theme", {"theme": theme})
        lab.page.wait_for_function(f"document.body.dataset.jpThemeLight === '{light}'")
        lab.page.wait_for_timeout(1000)  # the theme's stylesheet loads and applies
        path = tmp_path / f"{name}-{'light' if light == 'true' else 'dark'}.png"
        lab.dashboard.screenshot(path=str(path))
        shots.append(path)
        if os.environ.get("MJQ_SCREENSHOTS") == "1":
            DOCS.mkdir(exist_ok=True)
            shutil.copyfile(path, DOCS / path.name)
    print(f"\nscreenshots: {', '.join(str(p) for p in shots)}")
    return shots
