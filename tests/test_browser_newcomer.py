"""What a newcomer tripped over, in a real JupyterLab 4 through Chromium (issue 25, item 8): a
waiting job's wait only grows in the page while other rows change, and the dashboard and a
history plot follow the light and the dark theme (screenshots of both, to look at).

One JupyterLab, one notebook (the dashboard, then a latency plot) for the module.
"""

from __future__ import annotations

import itertools
import re
import threading
import uuid

import pytest

from mjq_notebook import JobQueue

from .support.lab import dashboard_in_lab, expect

pytestmark = pytest.mark.browser
image = pytest.importorskip("matplotlib.image")

_UNITS = {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0}
SAMPLE_MS, SAMPLES = 50, 100  # the shown wait read every 50 ms for 5 s


@pytest.fixture(scope="module")
def lab(tmp_path_factory, client, server_uri):
    db_name = f"mjq_test_{uuid.uuid4().hex[:10]}"
    queue = JobQueue(client[db_name], lease=30)
    for n in range(8):  # a history to plot
        queue.pub({"n": n})
        queue.done(queue.next(timeout=5))
    try:
        plot = "q.history().mjq.plot_latency()"
        with dashboard_in_lab(tmp_path_factory, queue, server_uri, plot) as lab:
            yield lab
    finally:
        client.drop_database(db_name)


def _seconds(text: str) -> float:
    pairs = re.findall(r"([\d.]+) (ms|s|min|h)\b", text)
    assert pairs and text.endswith(" …"), text
    return sum(float(number) * _UNITS[unit] for number, unit in pairs)


def test_a_waiting_jobs_wait_only_grows_in_the_page(lab):
    """Sampled every 50 ms for 5 s while other jobs come (each one sends the rows again), the
    waiting job's wait never goes back."""
    token = f"waits-{uuid.uuid4().hex[:8]}"
    lab.queue.pub({"browser": token})
    cell = lab.row(token).locator("td.mjq-tail-wait")
    expect(cell).to_contain_text("…", timeout=5_000)
    stop = threading.Event()

    def publish() -> None:  # other rows change all along
        while not stop.wait(0.3):
            lab.queue.pub({"browser": "another"})

    others = threading.Thread(target=publish, daemon=True)
    others.start()
    try:
        texts = cell.evaluate(
            """async (td, [every, count]) => {
                const seen = [];
                for (let i = 0; i < count; i++) {
                    seen.push(td.textContent);
                    await new Promise((done) => setTimeout(done, every));
                }
                return seen;
            }""",
            [SAMPLE_MS, SAMPLES],
        )
    finally:
        stop.set()
        others.join(5)
    shown = [_seconds(text) for text in texts]
    back = [(a, b) for a, b in itertools.pairwise(texts) if _seconds(b) < _seconds(a)]
    assert not back, f"the wait went back: {back[:5]}"
    assert shown[-1] - shown[0] >= 3.0, texts[:: SAMPLES // 10]
    assert not lab.errors, lab.errors


def test_the_dashboard_and_a_plot_follow_the_theme(lab, tmp_path):
    """Screenshots in JupyterLab Light and Dark (printed, to look at): the plot is no white
    box in the dark theme, and no black one in the light theme."""
    plot = lab.page.locator(".jp-OutputArea-output img").last
    expect(plot).to_be_visible(timeout=30_000)
    plot.scroll_into_view_if_needed()
    brightness = {}
    for theme, light in (("JupyterLab Light", "true"), ("JupyterLab Dark", "false")):
        lab.run("apputils:change-theme", {"theme": theme})
        lab.page.wait_for_function(f"document.body.dataset.jpThemeLight === '{light}'")
        lab.page.wait_for_timeout(1000)  # the theme's stylesheet loads and applies
        name = "light" if light == "true" else "dark"
        lab.dashboard.screenshot(path=str(tmp_path / f"dashboard-{name}.png"))
        path = tmp_path / f"plot-{name}.png"
        plot.screenshot(path=str(path))
        pixels = image.imread(str(path))[..., :3]
        brightness[name] = float(pixels.mean())
    print(f"\nscreenshots in {tmp_path}; the plot's mean brightness: {brightness}")
    assert brightness["light"] > 0.8, brightness  # white page, a few lines and bars
    assert brightness["dark"] < 0.3, brightness  # the dark page shows through
    lab.run("apputils:change-theme", {"theme": "JupyterLab Light"})
