"""``mjq dashboard``: Voilà serves the overview as a web page; Chromium renders it live.

One ``mjq dashboard`` process for the module (the server's URI reaches it in the environment,
as a user's would); the tests look at the page, publish from this process, and stop it with
SIGTERM last. ``MJQ_SCREENSHOTS=1`` keeps the page's screenshots in ``docs/``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from mjq_notebook import JobQueue
from mjq_notebook.cli.web.serve import notebook

from .support.browser import CHROMIUM, CHROMIUM_ARGS, DOCS, WATCH_FOR_ROW
from .support.dashboard import dashboard_env, printed_url, require_voila, start_dashboard
from .support.servers import free_port


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


# -- without a server or a browser -----------------------------------------------------------


def test_another_interface_without_its_names_is_refused_in_one_line(tmp_path, server_uri):
    process = start_dashboard("--host", "0.0.0.0", env=dashboard_env(tmp_path, server_uri))
    out, err = process.communicate(timeout=60)
    assert process.returncode != 0 and out == ""
    assert len(err.strip().splitlines()) == 1 and "--allow-host" in err and "0.0.0.0" in err


def test_the_notebook_names_the_database_and_never_the_uri():
    cell = notebook("jobs'db", "q")["cells"][0]["source"]
    assert 'connect(db="jobs\'db")' in cell and "queue='q'" in cell and "mongodb" not in cell


def test_a_queue_that_does_not_exist_is_an_error_before_serving(tmp_path, server_uri, db):
    JobQueue(db, "real").pub({"n": 1})
    args = ("--db", db.name, "--queue", "nosuch", "--port", str(free_port()))
    process = start_dashboard(*args, env=dashboard_env(tmp_path, server_uri))
    _out, err = process.communicate(timeout=60)
    assert process.returncode != 0 and "no queue 'nosuch'" in err and "real" in err


def test_a_token_is_asked_for_and_stays_off_the_command_line(tmp_path, server_uri, db):
    JobQueue(db, "jobs").pub({"n": 1})
    port = free_port()
    env = dashboard_env(tmp_path, server_uri, MJQ_DASHBOARD_TOKEN="tok-" + uuid.uuid4().hex)
    process = start_dashboard("--db", db.name, "--port", str(port), env=env)
    try:
        url = printed_url(process)
        token = env["MJQ_DASHBOARD_TOKEN"]
        address = f"http://127.0.0.1:{port}/"
        assert url == f"{address}?token={token}"  # the owner's terminal has it
        url_file = tmp_path / "run" / "mjq-notebook" / f"dashboard-{port}.url"
        assert url_file.read_text().strip() == url and url_file.stat().st_mode & 0o077 == 0
        with pytest.raises(urllib.error.HTTPError) as refused:  # to the login page
            urllib.request.build_opener(_NoRedirect).open(address, timeout=30)
        assert refused.value.code == 302 and "/login" in refused.value.headers["Location"]
        with urllib.request.urlopen(url, timeout=60) as page:
            assert page.status == 200
        import psutil

        for child in psutil.Process(process.pid).children(recursive=True):
            assert not any("tok-" in part for part in child.cmdline())
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C: as clean as SIGTERM
        process.communicate(timeout=30)
    assert process.returncode == 0
    assert not url_file.exists()  # gone with the server


def test_without_voila_it_says_what_to_install(monkeypatch):
    import mjq_notebook.cli.web.serve as web

    monkeypatch.setattr(web.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(SystemExit) as exited:
        web.serve("job_queue")
    assert "pip install 'mjq-notebook[web]'" in str(exited.value)
    assert 'pip install -e ".[web]"' in str(exited.value)  # what works from a clone


# -- in Chromium ------------------------------------------------------------------------------

sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (the dev extra)")


def _shoot_web(page, row, tmp_path: Path, suffix: str) -> list[Path]:
    """The overview, then the ``emails`` dashboard opened below it, once each has read the
    queue: ``web-overview{suffix}.png`` and ``web-dashboard{suffix}.png``."""
    expect = sync_api.expect
    expect(row).to_contain_text("waiting 2 working", timeout=5_000)  # not "oldest waiting 2 s"
    page.mouse.move(0, 0)
    overview = tmp_path / f"web-overview{suffix}.png"
    page.screenshot(path=str(overview), full_page=True)
    row.get_by_role("button", name="emails").click()
    expect(page.get_by_role("button", name=re.compile(r"^\W*Publish$"))).to_be_visible()
    expect(page.locator(".mjq-tail tbody tr", has_text="b@example.com")).to_be_visible()
    for reading in ("counting…", "workers: reading…"):  # the dashboard has read the queue
        expect(page.get_by_text(reading)).to_have_count(0, timeout=10_000)
    page.mouse.move(0, 0)
    page.wait_for_timeout(1000)  # the rows' flash fades
    dashboard = tmp_path / f"web-dashboard{suffix}.png"
    page.screenshot(path=str(dashboard), full_page=True)
    return [overview, dashboard]


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM, reason="Chromium is not installed")
@pytest.mark.serial  # a latency bound: nothing of another xdist worker beside it
def test_the_page_shows_the_queues_live_and_stops_on_sigterm(tmp_path, server_uri, db, alone):
    require_voila()
    import psutil

    expect = sync_api.expect
    queue = JobQueue(db, "emails")
    queue.pub({"to": "a@example.com"})
    port = free_port()
    started = time.monotonic()
    process = start_dashboard(
        "--db", db.name, "--port", str(port), env=dashboard_env(tmp_path, server_uri)
    )
    try:
        url = printed_url(process)
        assert re.fullmatch(rf"http://127\.0\.0\.1:{port}/\?token=[\w-]{{22,}}", url), url
        listening = {
            c.laddr.ip
            for p in psutil.Process(process.pid).children(recursive=True)
            for c in p.net_connections("inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        }
        assert listening == {"127.0.0.1"}
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url)
            row = page.locator(".mjq-overview-row", has_text="emails")
            expect(row).to_be_visible(timeout=45_000)
            expect(row).to_contain_text("waiting 1 working")
            JobQueue(db, "sms").pub({"to": "+1"})  # a new queue shows up
            queue.pub({"to": "b@example.com"})
            expect(row).to_contain_text(
                "waiting 2 working", timeout=5_000
            )  # not "oldest waiting 2 s"
            expect(page.locator(".mjq-overview-row", has_text="sms")).to_be_visible(timeout=5_000)
            shots = _shoot_web(page, row, tmp_path, "")  # and the emails dashboard is open
            dark = browser.new_page(viewport={"width": 1100, "height": 900})
            dark.on("pageerror", lambda error: errors.append(str(error)))
            dark.goto(f"{url}&theme=dark")  # Voilà's JupyterLab Dark theme
            dark_row = dark.locator(".mjq-overview-row", has_text="emails")
            expect(dark_row).to_be_visible(timeout=45_000)
            shots += _shoot_web(dark, dark_row, tmp_path, "-dark")
            # in the light page's emails dashboard: a job published from outside shows
            # within 0.5 s
            figures = []
            with alone():
                for n in range(5):
                    token = f"web-appears-{uuid.uuid4().hex[:8]}"
                    page.evaluate(WATCH_FOR_ROW, token)
                    published = time.time()  # the browser's Date.now() clock
                    queue.pub({"to": token})
                    shown = page.evaluate("window.__mjqShown")
                    assert shown is not None, f"{token} never showed in the web page"
                    figures.append(shown / 1000 - published)
                    time.sleep(0.2 + 0.3 * n)  # at different moments of the watcher's cycle
            print(f"\nmjq dashboard: jobs shown after {', '.join(f'{f:.3f}' for f in figures)} s")
            assert max(figures) < 0.5, figures
            # a click on Publish in the page writes the job
            token = f"web-published-{uuid.uuid4().hex[:8]}"
            page.locator(".mjq-editor textarea").fill(f'{{"to": "{token}"}}')
            page.get_by_role("button", name=re.compile(r"^\W*Publish$")).click()
            deadline = time.monotonic() + 10
            while (doc := queue.collection.find_one({"data.to": token})) is None:
                assert time.monotonic() < deadline, "the job published in the page never came"
                time.sleep(0.1)
            assert doc["status"] == "waiting"
            if os.environ.get("MJQ_SCREENSHOTS"):
                for shot in shots:
                    shutil.copy(shot, DOCS / shot.name)
            assert errors == []
            browser.close()
        children = psutil.Process(process.pid).children(recursive=True)
        notebooks = [Path(a) for c in children for a in c.cmdline() if a.endswith(".ipynb")]
        assert notebooks and notebooks[0].exists()
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    assert process.returncode == 0
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []  # Voilà and its kernel ended with it
    assert not notebooks[0].parent.exists()  # the temporary notebook's folder went too
    print(f"\nmjq dashboard test took {time.monotonic() - started:.1f}s")


def _background(page) -> tuple[int, ...]:
    """The page's computed background colour, as (r, g, b)."""
    colour = page.evaluate("getComputedStyle(document.body).backgroundColor")
    return tuple(int(n) for n in re.findall(r"\d+", colour)[:3])


def _contrast(one: str, other: str) -> float:
    """WCAG's contrast ratio of two CSS ``rgb(...)`` colours."""

    def luminance(colour: str) -> float:
        channels = [int(n) / 255 for n in re.findall(r"\d+", colour)[:3]]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(one), luminance(other)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM, reason="Chromium is not installed")
def test_the_page_follows_the_system_theme_uses_the_width_and_warns_of_nothing(
    tmp_path, server_uri, db
):
    require_voila()
    expect = sync_api.expect
    JobQueue(db, "emails").pub({"to": "a@example.com"})
    port = free_port()
    env = dashboard_env(tmp_path, server_uri)
    process = start_dashboard("--db", db.name, "--port", str(port), env=env)
    shots = []
    try:
        url = printed_url(process)
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            seen = {}
            for scheme, address in [("dark", url), ("light", url), ("dark", f"{url}&theme=light")]:
                context = browser.new_context(
                    color_scheme=scheme, viewport={"width": 1400, "height": 900}
                )
                page = context.new_page()
                page.goto(address)
                row = page.locator(".mjq-overview-row", has_text="emails")
                expect(row).to_be_visible(timeout=60_000)
                seen[scheme, address] = _background(page)
                width = page.locator(".mjq-overview").first.bounding_box()["width"]
                assert width >= 0.9 * 1400, (scheme, width)  # the window's width, not 1000 px
                shot = tmp_path / f"web-1400-{scheme}{'-light' if 'theme' in address else ''}.png"
                page.screenshot(path=str(shot), full_page=True)
                shots.append(shot)
                if scheme == "dark" and address == url:  # the selected queue stays readable
                    row.get_by_role("button", name="emails").click()
                    button = row.locator(".jupyter-button.mod-info")
                    expect(button).to_be_visible()
                    colours = button.evaluate(
                        "b => [getComputedStyle(b).color, getComputedStyle(b).backgroundColor]"
                    )
                    assert _contrast(*colours) >= 4.5, colours
                context.close()
            browser.close()
        assert max(seen["dark", url]) < 80, seen  # dark: the system says so
        assert min(seen["light", url]) > 200, seen
        assert min(seen["dark", f"{url}&theme=light"]) > 200, seen  # ?theme= overrides
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        if os.environ.get("MJQ_SCREENSHOTS"):
            for shot in shots:
                shutil.copy(shot, DOCS / shot.name)
    terminal = out + err  # three page loads, three kernels: nothing that calls for no action
    for alarm in ("not trusted", "without encryption", "websocket_ping_timeout"):
        assert alarm not in terminal, terminal
