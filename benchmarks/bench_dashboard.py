"""``mjq dashboard``'s first load: from Chromium's navigation to the overview's first row shown.

Each round starts ``mjq dashboard`` afresh (one queue with a job in a scratch database), opens
the printed address in a new Chromium context and times ``page.goto`` until the row of that
queue is visible; the start of Voilà itself is not counted (it happens before the address is
printed). Needs the web and dev extras and a Chromium (``$MJQ_CHROMIUM``, else ``chromium``
on the PATH).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

import pymongo
from _common import package_commit, parser, run_bench, scratch_database, smoke
from playwright.sync_api import expect, sync_playwright

from mjq_notebook import JobQueue

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def first_load(uri: str, db: str, browser) -> float:
    """Seconds from navigation to the first overview row, on a dashboard just started."""
    env = {**os.environ, "MJQ_MONGODB_URI": uri}
    env.pop("MJQ_DASHBOARD_TOKEN", None)
    command = [sys.executable, "-m", "mjq_notebook.cli", "dashboard", "--db", db,
               "--port", str(free_port())]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        for line in process.stdout:
            if match := re.search(r"(http://\S+/\S*)", line):
                break
        else:
            raise SystemExit(f"mjq dashboard ended ({process.wait()}) without an address")
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        started = time.perf_counter()
        page.goto(match.group(1))
        expect(page.locator(".mjq-overview-row").first).to_be_visible(timeout=120_000)
        seconds = time.perf_counter() - started
        context.close()
        return seconds
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def bench(uri: str, args) -> None:
    chromium = os.environ.get("MJQ_CHROMIUM") or shutil.which("chromium")
    with scratch_database(pymongo.MongoClient(uri)) as db, sync_playwright() as playwright:
        JobQueue(db, "emails").pub({"to": "a@example.com"})
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        figures = [first_load(uri, db.name, browser) for _ in range(args.rounds)]
        browser.close()
    shown = ", ".join(f"{f:.2f}" for f in figures)
    print(f"first load (navigation -> first overview row): {shown} s; "
          f"median {statistics.median(figures):.2f} s; commit {package_commit()}")  # fmt: skip


if __name__ == "__main__":
    p = parser(__doc__)
    p.add_argument("--rounds", type=int, default=3, help="dashboards started (default 3)")
    run_bench(bench, smoke(p.parse_args(), rounds=1))
