"""``mjq dashboard --viewers``: a second token that shows the page read-only. The role comes
from the token alone and reaches the page's kernel however the request is dressed; a viewer
reaches no owner's kernel, and the widgets' action messages sent by a viewer change nothing.

One ``mjq dashboard --viewers --queue emails`` for the module (its tokens random); the tests
open it as the owner and as a viewer, over HTTP, a bare websocket client and Chromium.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import shutil
import signal
import stat
import subprocess
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from mjq_notebook import JobQueue

from .support.dashboard import dashboard_env, require_voila, start_dashboard
from .support.kernel_socket import KernelSocket
from .support.servers import free_port
from .support.waiting import wait_for

require_voila()
psutil = pytest.importorskip("psutil")

DB = "web_roles"
FORGED = {"X-Mjq-Role": "owner", "X-Mjq-Client": "6.6.6.6"}  # what a viewer might send
# what no viewer may see or click (the tail's job actions, the dashboard's, the form's)
ACTIONS = ("Pause queue", "Resume queue", "Publish", "Cancel job", "Confirm cancel", "Run now",
           "Release now", "Retry", "Retry all", "Cancel all", "Run all")  # fmt: skip
NOT_CLICKED = ("Close", "Keep it", "Don't retry")  # each would undo the clicks around it


def _actions(labels: set[str]) -> set[str]:
    """The labels of action buttons ("Publish 3 copies", "Retry all failed…" too)."""
    return {label for label in labels if label.startswith(ACTIONS)}


def _mjq(*args: str, env: dict) -> subprocess.Popen:
    return start_dashboard("--db", DB, *args, env=env)


@dataclass
class Dashboard:
    process: subprocess.Popen
    port: int
    owner: str  # the tokens
    viewer: str
    printed: list[str]  # what it printed, up to the viewers' note
    home: Path

    def get(self, path: str, method: str = "GET", **headers: str) -> tuple[int, dict, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Host": f"127.0.0.1:{self.port}", **headers}
        connection.request(method, path, headers=headers)
        reply = connection.getresponse()
        body = reply.read().decode("utf-8", "replace")
        connection.close()
        return reply.status, dict(reply.getheaders()), body

    def open_page(self, **headers: str) -> tuple[str, str]:
        """GET the page (``headers`` say how); the id of the kernel it started and the
        login cookie it set."""
        status, reply, body = self.get("/", **headers)
        assert status == 200, status
        kernel = re.search(r'"kernelId": "([0-9a-f-]{36})"', body).group(1)
        return kernel, reply.get("Set-Cookie", "").split(";", 1)[0]

    def login(self, password: str) -> str:
        """Log in on the login page (as a browser does: its form, its XSRF cookie); the
        login cookie set, "" for none."""
        _status, reply, body = self.get("/login")
        xsrf = reply["Set-Cookie"].split(";", 1)[0]
        form = re.search(r'name="_xsrf" value="([^"]+)"', body).group(1)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        body = urllib.parse.urlencode({"_xsrf": form, "password": password})
        headers = {"Host": f"127.0.0.1:{self.port}", "Cookie": xsrf,
                   "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip
        connection.request("POST", "/login", body=body, headers=headers)
        reply = connection.getresponse()
        reply.read()
        connection.close()
        cookies = [c.split(";", 1)[0] for c in reply.headers.get_all("Set-Cookie") or []]
        return next((c for c in cookies if c.startswith("username-") and '=""' not in c), "")

    def kernel_env(self, kernel_id: str) -> dict:
        """The environment of kernel ``kernel_id`` (a process below mjq dashboard)."""
        for child in psutil.Process(self.process.pid).children(recursive=True):
            if any(kernel_id in part for part in child.cmdline()):
                return child.environ()
        pytest.fail(f"no kernel {kernel_id} runs")


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, server_uri):
    from pymongo import MongoClient

    client = MongoClient(server_uri)
    emails = JobQueue(client[DB], "emails")
    emails.pub_many([{"to": f"{n}@example.com"} for n in range(3)])
    home = tmp_path_factory.mktemp("roles")
    port = free_port()
    args = ("--viewers", "--queue", "emails", "--port", str(port), "--max-pages", "12")
    process = _mjq(*args, env=dashboard_env(home, server_uri))
    try:
        printed = [process.stdout.readline() for _ in range(3)]
        if process.poll() is not None:
            pytest.fail(f"mjq dashboard ended: {process.stderr.read()}")
        tokens = [re.search(r"\?token=([\w-]+)", line) for line in printed[:2]]
        owner, viewer = (match.group(1) for match in tokens)
        yield Dashboard(process, port, owner, viewer, printed, home)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        client.drop_database(DB)
        client.close()
    said = "".join(printed) + out + err  # the viewers' token: only where it was handed out
    assert said.count(viewer) == 1, said


# -- the token ---------------------------------------------------------------------------------


def test_viewers_get_a_token_of_their_own_printed_beside_the_owners(dashboard):
    port, owner, viewer = dashboard.port, dashboard.owner, dashboard.viewer
    assert len(viewer) >= 22 and viewer != owner  # 128 bits and more, URL-safe base64
    address = f"http://127.0.0.1:{port}/"
    owner_line, viewer_line, note = dashboard.printed
    assert f"{address}?token={owner}" in owner_line
    assert f"read-only viewers open {address}?token={viewer}" in viewer_line
    assert "can't publish, pause, resume, cancel" in note and "sees every queue" in note
    url_file = dashboard.home / "run" / "mjq-notebook" / f"dashboard-{port}.url"
    urls = [f"{address}?token={owner}", f"{address}?token={viewer}"]
    assert url_file.read_text().split() == urls
    assert stat.S_IMODE(url_file.stat().st_mode) == 0o600
    assert _command_lines(dashboard) >= 2  # mjq and Voilà at least


def _command_lines(dashboard: Dashboard) -> int:
    """Check no token is in the command line (``/proc/<pid>/cmdline``) of mjq dashboard or
    any process below it, kernels too; how many there are."""
    processes = [psutil.Process(dashboard.process.pid)]
    processes += processes[0].children(recursive=True)
    for process in processes:
        command_line = Path(f"/proc/{process.pid}/cmdline").read_bytes().decode()
        assert dashboard.viewer not in command_line and dashboard.owner not in command_line
    return len(processes)


def test_the_role_reaches_the_kernel_from_the_token_alone(dashboard):
    owner, viewer = dashboard.owner, dashboard.viewer
    kernel, cookie = dashboard.open_page(**FORGED, Authorization=f"token {viewer}")
    seen = dashboard.kernel_env(kernel)
    assert (seen["HTTP_X_MJQ_ROLE"], seen["HTTP_X_MJQ_CLIENT"]) == ("viewer", "127.0.0.1")
    assert cookie.startswith("username-")  # the viewer is logged in by cookie now
    for how in [
        {"Cookie": cookie},  # back by cookie alone
        {"Cookie": cookie, **FORGED},
        {"Cookie": cookie, "X-MJQ-ROLE": "owner", "X-Mjq-Client": "6.6.6.6"},
    ]:
        seen = dashboard.kernel_env(dashboard.open_page(**how)[0])
        assert (seen["HTTP_X_MJQ_ROLE"], seen["HTTP_X_MJQ_CLIENT"]) == ("viewer", "127.0.0.1")
    for query in (f"/?token={viewer}&role=owner", f"/?token={viewer}&X-Mjq-Role=owner"):
        _status, _reply, body = dashboard.get(query, **FORGED)
        kernel = re.search(r'"kernelId": "([0-9a-f-]{36})"', body).group(1)
        assert dashboard.kernel_env(kernel)["HTTP_X_MJQ_ROLE"] == "viewer"
    # a wrong token with the viewer's cookie: still the viewer, never more
    _status, _reply, body = dashboard.get("/?token=" + "x" * 32, Cookie=cookie, **FORGED)
    kernel = re.search(r'"kernelId": "([0-9a-f-]{36})"', body).group(1)
    assert dashboard.kernel_env(kernel)["HTTP_X_MJQ_ROLE"] == "viewer"
    # the login page: the viewer's token typed as the password logs in a viewer
    login = dashboard.login(viewer)
    assert login and login != cookie
    seen = dashboard.kernel_env(dashboard.open_page(Cookie=login, **FORGED)[0])
    assert seen["HTTP_X_MJQ_ROLE"] == "viewer"
    assert dashboard.login("x" * 32) == ""  # a wrong one logs in no one
    # and the owner's token is the owner, even with the viewer's cookie
    kernel, owner_cookie = dashboard.open_page(Authorization=f"token {owner}", Cookie=cookie)
    assert dashboard.kernel_env(kernel)["HTTP_X_MJQ_ROLE"] == "owner"
    assert owner_cookie and owner_cookie != cookie


# -- a bare websocket client --------------------------------------------------------------------


async def _press_everything(socket: KernelSocket, job_id: str, rounds: int = 3) -> set[str]:
    """What a script holding a viewer's page would try: select a job in the tail, fill the
    publish form, and click every button, over a few rounds (a click may show new ones);
    the buttons' labels."""
    pressed = set()
    await socket.learn(until=lambda s: len(s.states) > 20)  # the whole page, before any click
    for _ in range(rounds):
        await socket.learn()
        for comm_id, state in list(socket.states.items()):
            if "selected" in state and "rows" in state:  # the tail's table
                socket.comm(comm_id, {"method": "update", "state": {"selected": job_id},
                                      "buffer_paths": []})  # fmt: skip
            elif state.get("_model_name") == "TextareaModel":
                socket.comm(comm_id, {"method": "update", "state": {"value": '{"x": 1}'},
                                      "buffer_paths": []})  # fmt: skip
        await socket.read(1)
        for comm_id, label in socket.buttons().items():
            if label not in NOT_CLICKED:
                socket.comm(comm_id, {"method": "custom", "content": {"event": "click"}})
                pressed.add(label)
        await socket.read(2)
    return pressed


def _snapshot(queue: JobQueue) -> tuple:
    return (queue.counts(), queue.paused, list(queue.collection.find()), list(queue.audit()))


def test_a_viewers_action_messages_change_nothing_and_the_owners_are_audited(dashboard, db):
    queue = JobQueue(db.client[DB], "emails")
    job_id = str(queue.collection.find_one({"status": "waiting"})["_id"])
    before = _snapshot(queue)

    async def as_viewer() -> tuple[set[str], int]:
        kernel, _cookie = dashboard.open_page(Authorization=f"token {dashboard.viewer}", **FORGED)
        socket = await KernelSocket.open(dashboard.port, kernel, dashboard.viewer, **FORGED)
        pressed = await _press_everything(socket, job_id)
        socket.connection.close()
        return pressed, len(socket.states)

    pressed, widgets = asyncio.run(as_viewer())
    time.sleep(1)  # a write would be on its way by now
    assert _snapshot(queue) == before
    assert widgets > 20 and "Workers" not in pressed  # it saw the page (a toggle: not pressed)
    assert _actions(pressed) == set(), pressed  # no action button even in the kernel

    async def as_owner() -> set[str]:  # the same client, the owner's token: Pause queue
        kernel, _cookie = dashboard.open_page(Authorization=f"token {dashboard.owner}")
        socket = await KernelSocket.open(dashboard.port, kernel, dashboard.owner, **FORGED)
        await socket.learn(until=lambda s: {"Pause queue", "Publish"} <= set(s.buttons().values()))
        labels = set(socket.buttons().values())
        for comm_id, label in socket.buttons().items():
            if label == "Pause queue":
                socket.comm(comm_id, {"method": "custom", "content": {"event": "click"}})
        await socket.read(2)
        socket.connection.close()
        return labels

    labels = asyncio.run(as_owner())
    assert {"Pause queue", "Publish", "Retry all matches", "Run all now"} <= labels, labels
    wait_for(lambda: queue.paused, 10, "the owner's click to pause the queue")
    (entry,) = queue.audit()
    assert entry["action"] == "pause"
    assert {k: entry["who"][k] for k in ("via", "role", "client")} == {
        "via": "page", "role": "owner", "client": "127.0.0.1"}  # fmt: skip
    queue.resume()  # as it was, for the next test
    queue.db[queue.name + ".audit"].drop()


def test_a_viewer_cannot_reach_an_owners_kernel(dashboard):
    from tornado.httpclient import HTTPClientError

    owner_kernel, _ = dashboard.open_page(Authorization=f"token {dashboard.owner}")
    viewer_kernel, cookie = dashboard.open_page(Authorization=f"token {dashboard.viewer}")

    async def knock(kernel: str, **how: str) -> int:
        try:
            socket = await KernelSocket.open(dashboard.port, kernel, **how)
        except HTTPClientError as refused:
            return refused.code
        socket.connection.close()
        return 101

    for how in ({"token": dashboard.viewer}, {"Cookie": cookie}):
        assert asyncio.run(knock(owner_kernel, **how, **FORGED)) == 403, how
        assert asyncio.run(knock(viewer_kernel, **how, **FORGED)) == 101, how  # its own: yes
    token = {"Authorization": f"token {dashboard.viewer}", **FORGED}
    assert dashboard.get(f"/api/kernels/{owner_kernel}", **token)[0] == 403
    assert dashboard.get(f"/api/kernels/{owner_kernel}", "DELETE", **token)[0] == 403
    assert dashboard.get(f"/voila/api/shutdown/{owner_kernel}", "POST", **token)[0] == 403
    assert dashboard.get(f"/api/kernels/{viewer_kernel}", "DELETE", **token)[0] == 403
    assert dashboard.get(f"/api/kernels/{viewer_kernel}", **token)[0] == 200
    dashboard.kernel_env(owner_kernel)  # the owner's kernel still runs
    assert _command_lines(dashboard) >= 4  # the two kernels' too
    assert asyncio.run(knock(owner_kernel, token=dashboard.owner)) == 101


def test_without_a_token_everyone_is_the_owner(tmp_path, server_uri):
    port = free_port()
    process = _mjq("--no-token", "--port", str(port), env=dashboard_env(tmp_path, server_uri))
    try:
        assert f"http://127.0.0.1:{port}/ " in process.stdout.readline()  # no token
        page = Dashboard(process, port, "", "", [], tmp_path)
        kernel, _cookie = page.open_page(**{"X-Mjq-Role": "viewer"})
        assert page.kernel_env(kernel)["HTTP_X_MJQ_ROLE"] == "owner"
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


# -- refused in one line -----------------------------------------------------------------------


def test_weak_or_equal_viewer_tokens_are_refused_in_one_line(tmp_path, server_uri):
    same = "the-same-token-" + uuid.uuid4().hex
    token_file = tmp_path / "viewer-token"
    token_file.write_text("short\n")
    cases = [
        ({"MJQ_DASHBOARD_VIEWER_TOKEN": "short"}, ("--viewers",), "too short"),
        ({"MJQ_DASHBOARD_VIEWER_TOKEN": "   "}, ("--viewers",), "blank"),
        ({}, ("--viewer-token-file", str(token_file)), "too short"),
        ({"MJQ_DASHBOARD_TOKEN": same, "MJQ_DASHBOARD_VIEWER_TOKEN": same}, ("--viewers",),
         "the owner's"),
        ({}, ("--viewers", "--no-token"), "--no-token"),
        ({}, ("--viewer-token", "a-long-enough-viewer-token"), "MJQ_DASHBOARD_VIEWER_TOKEN"),
    ]  # fmt: skip
    for extra, args, says in cases:
        env = dashboard_env(tmp_path, server_uri, **extra)
        process = _mjq("--port", str(free_port()), *args, env=env)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 2 and out == "", (args, err)
        assert len(err.strip().splitlines()) == 1 and says in err, (args, err)
        assert same not in err and "a-long-enough" not in err


# -- in Chromium ------------------------------------------------------------------------------

CHROMIUM = os.environ.get("MJQ_CHROMIUM") or shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


def _buttons(page) -> set[str]:
    """The labels of the page's buttons, shown or not."""
    texts = page.locator("button").evaluate_all("bs => bs.map(b => b.textContent.trim())")
    return {text for text in texts if text}


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM, reason="Chromium is not installed")
def test_in_chromium_a_viewer_sees_no_action_and_the_owners_pause_is_audited(dashboard, db):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright")
    expect = sync_api.expect
    queue = JobQueue(db.client[DB], "emails")
    address = f"http://127.0.0.1:{dashboard.port}/?token="
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        seen, refused = {}, []
        for role, token in (("viewer", dashboard.viewer), ("owner", dashboard.owner)):
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            page.on("response", lambda r: r.status >= 400 and refused.append((r.status, r.url)))
            page.goto(address + token)
            expect(page.locator(".mjq-overview-row", has_text="emails")).to_be_visible(
                timeout=45_000
            )
            row = page.locator(".mjq-tail tbody tr", has_text="0@example.com")
            expect(row).to_be_visible()
            row.click()  # a job selected: its detail, and for the owner its actions
            page.wait_for_timeout(1500)
            seen[role] = _buttons(page)
            if role == "viewer":
                page.screenshot(path=str(dashboard.home / "web-viewer.png"), full_page=True)
                page.close()
        assert _actions(seen["viewer"]) == set(), seen["viewer"]
        assert refused == []  # nothing the page itself needs is refused to a viewer
        assert {"Pause queue", "Publish", "Cancel job"} <= seen["owner"], seen["owner"]
        assert queue.audit() == []
        page.get_by_role("button", name=re.compile(r"^\W*Pause queue$")).click()
        wait_for(lambda: queue.paused, 10, "the queue paused from the page")
        browser.close()
    (entry,) = queue.audit()
    assert entry["action"] == "pause" and entry["who"]["via"] == "page"
    assert (entry["who"]["role"], entry["who"]["client"]) == ("owner", "127.0.0.1")
    if os.environ.get("MJQ_SCREENSHOTS"):
        docs = Path(__file__).resolve().parent.parent / "docs"
        shutil.copy(dashboard.home / "web-viewer.png", docs / "web-viewer.png")
