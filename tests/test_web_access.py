"""``mjq dashboard``: only its owner gets in. A token always (a random one by default), only
its own host names, and the port checked before any address is printed.

One ``mjq dashboard`` for the module, with the default options; the tests knock at it without
the token (as this user and as ``nobody``), under a foreign ``Host``, and count the kernels it
started (the Python kernels below its process), which must stay 0 until the owner opens it.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid

import pytest

from mjq_notebook import JobQueue
from mjq_notebook.cli.web.serve import Site

from .support.dashboard import dashboard_env, printed_url, require_voila, start_dashboard
from .support.nobody import NOBODY
from .support.servers import free_port
from .support.waiting import wait_for

require_voila()
psutil = pytest.importorskip("psutil")

DB = "web_access"


def _kernels(process: subprocess.Popen) -> list:
    """The kernels running below ``process`` (one that is ending, a zombie, is not)."""
    kernels = []
    for child in psutil.Process(process.pid).children(recursive=True):
        try:
            if any("ipykernel" in part for part in child.cmdline()):
                kernels.append(child)
        except psutil.Error:
            pass
    return kernels


def _get(port: int, path: str, host: str | None = None, **headers: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path, headers={"Host": host or f"127.0.0.1:{port}", **headers})
    reply = connection.getresponse()
    reply.read()
    connection.close()
    return reply.status, reply.getheader("Location") or ""


UPGRADE = {  # a websocket handshake, as a bare client (no browser) sends it
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory, server_uri):
    """The default ``mjq dashboard``, its port and the tokenised URL it printed."""
    from pymongo import MongoClient

    client = MongoClient(server_uri)
    JobQueue(client[DB], "emails").pub({"to": "a@example.com"})
    home = tmp_path_factory.mktemp("dashboard")
    port = free_port()
    process = start_dashboard("--db", DB, "--port", str(port), env=dashboard_env(home, server_uri))
    try:
        url = printed_url(process)
        yield process, port, url, home
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
        client.drop_database(DB)
        client.close()


# -- the token ---------------------------------------------------------------------------------


def test_a_random_token_is_made_and_handed_to_the_owner_only(dashboard):
    process, port, url, home = dashboard
    token = re.fullmatch(rf"http://127\.0\.0\.1:{port}/\?token=([\w-]+)", url).group(1)
    assert len(token) >= 22  # 128 bits and more, URL-safe base64
    url_file = home / "run" / "mjq-notebook" / f"dashboard-{port}.url"
    assert url_file.read_text().strip() == url
    assert stat.S_IMODE(url_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(url_file.parent.stat().st_mode) == 0o700
    for child in psutil.Process(process.pid).children(recursive=True):
        assert not any(token in part for part in child.cmdline())  # never in argv


# Drops to nobody for good (after the imports: the venv's Python lives where nobody can't
# enter), then knocks at the page, an API route and the kernel websocket without the token.
AS_NOBODY = r"""
import http.client, json, os, sys
import encodings.idna  # noqa: F401  (imported lazily by socket code: not after the drop)
port, uid, gid, kernel, upgrade = json.loads(sys.argv[1])
os.setgroups([])
os.setgid(gid)
os.setuid(uid)
report = {"uid": os.getresuid()}
for name, path, headers in [
    ("page", "/", {}),
    ("api", f"/api/kernels/{kernel}", {}),
    ("websocket", f"/api/kernels/{kernel}/channels", upgrade),
    ("page with a wrong token", "/?token=" + "x" * 32, {}),
]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path, headers={"Host": f"127.0.0.1:{port}", **headers})
    reply = connection.getresponse()
    report[name] = [reply.status, reply.getheader("Location") or ""]
print(json.dumps(report))
"""


def test_another_user_gets_the_login_or_403_and_starts_no_kernel(dashboard, db):
    process, port, _, _home = dashboard
    before = {kernel.pid for kernel in _kernels(process)}
    jobs = JobQueue(db.client[DB], "emails").collection
    documents = list(jobs.find())
    argument = json.dumps([port, NOBODY.pw_uid, NOBODY.pw_gid, str(uuid.uuid4()), UPGRADE])
    child = subprocess.run(
        [sys.executable, "-c", AS_NOBODY, argument],
        cwd="/", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout)
    assert report.pop("uid") == [NOBODY.pw_uid] * 3
    for name in ("page", "page with a wrong token"):
        status, location = report.pop(name)
        assert status == 302 and location.startswith("/login"), (name, status, location)
    assert report == {"api": [403, ""], "websocket": [403, ""]}
    assert {kernel.pid for kernel in _kernels(process)} - before == set()
    assert list(jobs.find()) == documents  # and nothing in the queue changed


def test_open_hands_the_tokenised_url_to_the_browser(tmp_path, monkeypatch, capsys):
    import webbrowser

    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", opened.append)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    site = Site("127.0.0.1", 8866, "a-token-of-24-characters", "nonce", open_browser=True)
    url_file = site.announce()
    assert opened == ["http://127.0.0.1:8866/?token=a-token-of-24-characters"]
    assert url_file == tmp_path / "mjq-notebook" / "dashboard-8866.url"
    assert url_file.read_text().strip() == opened[0] in capsys.readouterr().out


def test_ten_unauthenticated_gets_start_no_kernel_and_the_owner_one(dashboard):
    process, port, url, _home = dashboard
    assert _kernels(process) == []
    for _ in range(10):
        status, location = _get(port, "/")
        assert status == 302 and location.startswith("/login")
    assert _kernels(process) == []
    status, _location = _get(port, url.split(f":{port}", 1)[1])  # the owner's URL
    assert status == 200
    wait_for(lambda: len(_kernels(process)) == 1, 30, "the owner's page's kernel")


def test_a_foreign_host_header_gets_403_and_no_kernel(dashboard):
    process, port, url, _home = dashboard
    before = {kernel.pid for kernel in _kernels(process)}
    with_token = url.split(f":{port}", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "192.168.1.7", "localhost.evil.example"):
        assert _get(port, with_token, host=host)[0] == 403, host
        kernel = f"/api/kernels/{uuid.uuid4()}/channels"
        assert _get(port, kernel, host=host, Origin=f"http://{host}", **UPGRADE)[0] == 403
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):  # its own names
        assert _get(port, "/", host=host)[0] == 302, host
    time.sleep(1)  # a kernel would be on its way by now (it starts within the request)
    assert {kernel.pid for kernel in _kernels(process)} - before == set()


# -- kernels bounded ---------------------------------------------------------------------------


def test_kernels_are_capped_and_those_no_page_connects_to_are_shut_down(tmp_path, server_uri):
    port = free_port()
    process = start_dashboard(
        "--db", DB, "--port", str(port), "--max-pages", "2", env=dashboard_env(tmp_path, server_uri)
    )
    try:
        path = printed_url(process).split(f":{port}", 1)[1]
        assert [_get(port, path)[0] for _ in range(2)] == [200, 200]  # pages never connecting
        wait_for(lambda: len(_kernels(process)) == 2, 30, "two kernels")
        status, _location = _get(port, path)
        assert status == 503  # too many open dashboards
        assert len(_kernels(process)) == 2
        took = wait_for(lambda: _kernels(process) == [], 40, "the lone kernels shut down")
        print(f"\nkernels no page connected to: gone {took:.1f} s after the cap was seen")
        assert _get(port, path)[0] == 200  # room again
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


# -- refused in one line -----------------------------------------------------------------------


@pytest.mark.parametrize("token", ["x", "", "   ", "fifteen-chars-x"])
def test_a_short_or_blank_token_is_refused_in_one_line(tmp_path, server_uri, token):
    env = dashboard_env(tmp_path, server_uri, MJQ_DASHBOARD_TOKEN=token)
    process = start_dashboard("--db", DB, "--port", str(free_port()), env=env)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "MJQ_DASHBOARD_TOKEN" in err, err
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    process = start_dashboard(
        "--db", DB, "--token-file", str(token_file), env=dashboard_env(tmp_path, server_uri)
    )
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2 and out == "" and len(err.strip().splitlines()) == 1, err


def test_a_token_on_the_command_line_is_refused(tmp_path, server_uri):
    process = start_dashboard(
        "--db", DB, "--token", "a-long-enough-token-value", env=dashboard_env(tmp_path, server_uri)
    )
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "MJQ_DASHBOARD_TOKEN" in err and "a-long-enough" not in err


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_a_port_out_of_range_is_refused(tmp_path, server_uri, port):
    process = start_dashboard("--db", DB, "--port", port, env=dashboard_env(tmp_path, server_uri))
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "1 to 65535" in err


def test_a_port_taken_is_refused_and_no_address_printed(tmp_path, server_uri):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        process = start_dashboard(
            "--db", DB, "--port", str(port), env=dashboard_env(tmp_path, server_uri)
        )
        out, err = process.communicate(timeout=60)
    assert process.returncode != 0 and out == "" and "http" not in err
    assert len(err.strip().splitlines()) == 1 and f"port {port}" in err and "taken" in err
    assert not list((tmp_path / "run").rglob("*.url"))


def test_another_server_on_the_port_is_not_taken_for_ours(tmp_path):
    """What answers must send this start's nonce; a squatter's reply does not (and it is
    asked without the token)."""
    import http.server
    import threading

    seen: list[str] = []

    class Squatter(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            self.send_response(200)
            self.send_header("X-Mjq-Dashboard", "guess")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Squatter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        site = Site("127.0.0.1", server.server_port, "secret-token-" + "x" * 10, "n0nce", False)
        assert site.is_ours() is False
        assert seen == ["/login"]  # no token went to it
    finally:
        server.shutdown()
        server.server_close()


def test_another_interface_needs_its_names_and_a_token(tmp_path, server_uri):
    env = dashboard_env(tmp_path, server_uri)
    for args, says in [
        (("--host", "0.0.0.0"), "--allow-host"),
        (("--host", "0.0.0.0", "--allow-host", "box.example", "--no-token"), "--no-token"),
        (("--host", "0.0.0.0", "--allow-host", "10.0.0.5"), "a host name"),
    ]:
        process = start_dashboard("--db", DB, "--port", str(free_port()), *args, env=env)
        out, err = process.communicate(timeout=60)
        assert process.returncode == 2 and out == "", (args, err)
        assert len(err.strip().splitlines()) == 1 and says in err, (args, err)


def test_no_token_says_why_it_is_dangerous_and_lets_this_machine_in(tmp_path, server_uri):
    port = free_port()
    process = start_dashboard(
        "--db", DB, "--port", str(port), "--no-token", env=dashboard_env(tmp_path, server_uri)
    )
    try:
        assert printed_url(process) == f"http://127.0.0.1:{port}/"
        assert _get(port, "/")[0] == 200  # no login
        assert _get(port, "/", host="evil.example")[0] == 403  # but still only its names
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    assert "every user of this machine" in err and process.returncode == 0


# -- in Chromium ------------------------------------------------------------------------------

CHROMIUM = os.environ.get("MJQ_CHROMIUM") or shutil.which("chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--host-resolver-rules=MAP evil.example 127.0.0.1",  # a rebinding site's name, resolved
]  # fmt: skip


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM, reason="Chromium is not installed")
def test_in_chromium_the_owner_keeps_the_page_and_a_foreign_name_gets_nothing(dashboard, db):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright")
    expect = sync_api.expect
    process, _port, url, _home = dashboard
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        before = {kernel.pid for kernel in _kernels(process)}
        foreign = browser.new_page()
        reply = foreign.goto(url.replace("127.0.0.1", "evil.example"))
        assert reply.status == 403 and "mjq-overview" not in foreign.content()
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.set_default_timeout(30_000)
        page.goto(url)
        row = page.locator(".mjq-overview-row", has_text="emails")
        expect(row).to_be_visible(timeout=45_000)
        mine = {kernel.pid for kernel in _kernels(process)} - before
        assert len(mine) == 1  # the page's own kernel, and no other (none for the foreign)
        time.sleep(20)  # past the 15 s a kernel no page uses is kept: this one has a page
        assert mine <= {kernel.pid for kernel in _kernels(process)}
        JobQueue(db.client[DB], "emails").pub({"to": "b@example.com"})
        expect(row).to_contain_text("waiting 2", timeout=5_000)  # still live
        page.close()  # the page's websocket closes: its kernel goes
        wait_for(lambda: not mine & {k.pid for k in _kernels(process)}, 40, "the kernel gone")
        browser.close()
