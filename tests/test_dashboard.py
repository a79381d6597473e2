"""The dashboard (live header over the tail and the publish form) and its SVG charts."""

from __future__ import annotations

import html
import json
import math
import re
import threading
import time
import xml.etree.ElementTree as ET

import pytest

from mjq_notebook.live.activity import SPAN_S, Activity
from mjq_notebook.notebook.widgets.charts import histogram_svg, quantile, rebin, sparkline_svg

from .support.waiting import mjq_threads, wait_for
from .support.xss import XSS, assert_escaped

SVG = "{http://www.w3.org/2000/svg}"

# -- charts: pure functions ------------------------------------------------------------------


def _svg(text: str) -> ET.Element:
    root = ET.fromstring(text)  # well-formed XML, or this raises
    assert root.tag == f"{SVG}svg"
    return root


def test_rebin_sums_seconds_into_steps_and_slides_with_the_clock():
    per_second = [0] * 600
    per_second[0] = 2  # the second 400 (the counts end before 1000)
    per_second[-1] = 3  # the second 999
    counts = rebin(per_second, end=1000, now=1000.0, window=600, step=10)
    assert len(counts) == 60 and counts[0] == 2 and counts[-1] == 3 and sum(counts) == 5
    # 30 s later with nothing new: everything moves left, the oldest second drops out
    later = rebin(per_second, end=1000, now=1030.0, window=600, step=10)
    assert later[-4] == 3 and sum(later) == 3 and later[-3:] == [0, 0, 0]
    assert sum(rebin(per_second, end=1000, now=1000.0, window=10, step=1)) == 3


def test_sparkline_draws_created_and_finished_per_step():
    made = [0] * 56 + [10, 10, 10, 0]  # 30 jobs in the last 35 s
    done = [0] * 59 + [4]
    root = _svg(sparkline_svg(made, done, window=600, step=10))
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2
    for line in lines:
        points = [tuple(map(float, p.split(","))) for p in line.get("points").split()]
        assert len(points) == 60
        assert all(math.isfinite(x) and math.isfinite(y) for x, y in points)
    created_y = [float(p.split(",")[1]) for p in lines[0].get("points").split()]
    assert created_y[-2] < created_y[0]  # the recent bucket is higher (smaller y) than old ones
    assert "var(--jp-brand-color1" in lines[0].get("style")
    assert "var(--jp-success-color1" in lines[1].get("style")
    empty = sparkline_svg([0] * 60, [0] * 60)
    assert empty != sparkline_svg(made, done)
    labels = " ".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))
    assert "created · peak 10 per 10 s" in labels and "finished · peak 4 per 10 s" in labels
    empty_labels = " ".join("".join(t.itertext()) for t in _svg(empty).iter(f"{SVG}text"))
    assert "none in this time" in empty_labels and "peak" not in empty_labels


def _ys(line: ET.Element) -> list[float]:
    return [float(p.split(",")[1]) for p in line.get("points").split()]


def test_each_sparkline_has_its_own_scale_so_few_finishes_beside_a_burst_show():
    """On one shared scale 3 finished jobs beside a burst of 500 created lay flat on the
    axis; each line now spans its own height, its peak named in its label."""
    made = [0] * 50 + [500] + [0] * 9
    done = [0] * 55 + [3] + [0] * 4
    created, finished = (
        _ys(line) for line in _svg(sparkline_svg(made, done)).iter(f"{SVG}polyline")
    )
    for ys in (created, finished):
        assert max(ys) - min(ys) > 15  # a visible peak, in pixels (the chart is 96 high)
    assert max(created) - min(created) == pytest.approx(max(finished) - min(finished))


def test_chart_labels_are_at_least_11px():
    texts = [
        *_svg(sparkline_svg([1, 2, 3], [0, 1, 0])).iter(f"{SVG}text"),
        *_svg(histogram_svg([0.1, 0.2, 3.0], [1.0, 2.0])).iter(f"{SVG}text"),
    ]
    assert texts
    for text in texts:
        size = re.search(r"font-size:([\d.]+)px", text.get("style"))
        assert size and float(size.group(1)) >= 11, text.get("style")
        assert "tabular-nums" in text.get("style")


def _activity(end: int, seconds_ago: list[int]) -> Activity:
    created = [0] * SPAN_S
    for ago in seconds_ago:
        created[SPAN_S - 1 - ago] += 1
    return Activity(end, tuple(created), (0,) * SPAN_S, (), ())


def test_the_sparkline_spans_as_far_back_as_the_jobs_go():
    from mjq_notebook.notebook.widgets.dashboard import spark_window

    now = 10_000.0
    assert spark_window(_activity(10_000, []), now) == 60
    assert spark_window(_activity(10_000, [30, 5]), now) == 60  # started 30 s ago: 1 min
    assert spark_window(_activity(10_000, [90]), now) == 120
    assert spark_window(_activity(10_000, [200]), now) == 300
    assert spark_window(_activity(10_000, [599]), now) == 600
    assert spark_window(_activity(9_000, [0]), now) == 600  # the longest, however old


def test_histogram_marks_percentiles_on_log_bins():
    wait = [0.001 * 1.2**i for i in range(60)]
    run = [2.0, 3.0, None, float("nan"), 0.0]
    text = histogram_svg(wait, run, bins=20)
    root = _svg(text)
    bars = root.findall(f"{SVG}rect")
    assert 0 < len(bars) <= 40
    marks = [line for line in root.findall(f"{SVG}line") if "dasharray" in line.get("style")]
    assert len(marks) == 4  # p50 and p90 in each panel
    labels = " ".join(t.text for t in root.iter(f"{SVG}text"))
    assert "wait · 60 jobs" in labels and "run · 3 jobs" in labels  # None and NaN skipped
    assert "p50" in labels and "p90" in labels
    assert "1 ms" in labels  # the 0.0 run time counts as BSON's 1 ms floor
    empty = _svg(histogram_svg([], []))
    assert "no jobs yet" in " ".join(t.text for t in empty.iter(f"{SVG}text"))


def test_quantile_matches_numpy():
    np = pytest.importorskip("numpy")
    values = sorted([0.3, 5.0, 1.0, 2.5, 0.01, 7.0, 7.0])
    for q in (0, 0.5, 0.9, 1):
        assert quantile(values, q) == pytest.approx(float(np.quantile(values, q)))
    assert math.isnan(quantile([], 0.5))


# -- the dashboard against the server --------------------------------------------------------


def _threads() -> int:
    """``threading.active_count()`` less the embedded test server's own threads (it serves
    each new connection on a thread of this process; a real mongod has none here)."""
    server = [t for t in threading.enumerate() if t.name.startswith("secantus")]
    return threading.active_count() - len(server)


@pytest.fixture
def dashboard(queue):
    from mjq_notebook.notebook.widgets.dashboard import Dashboard

    board = Dashboard(queue)
    yield board
    board.close()
    assert mjq_threads() == []


def _row_ids(board) -> set[str]:
    return {row["id"] for row in board.tail.table.rows}


def test_a_job_from_another_client_shows_within_a_second(other, dashboard):
    wait_for(lambda: "via " in dashboard.counters.value, 5, "the watcher going live")
    read = time.monotonic()
    other.counts()  # what one read of the counts takes on this server now
    read = time.monotonic() - read
    job_id = other.pub({"kind": "from-elsewhere"})
    start = time.monotonic()
    wait_for(lambda: str(job_id) in _row_ids(dashboard), 3, "the job showing in the tail")
    assert time.monotonic() - start < 1.0
    wait_for(lambda: "waiting 1" in dashboard.counters.value, 3, "the counters")
    # The watcher re-reads counts at most once a second and the header takes 2 snapshots a
    # second: just after the watcher started (its counts fresh) that is up to 1.5 s, plus
    # the read itself (twice what it just took: a loaded machine's server is slower).
    assert time.monotonic() - start < 1.5 + 2 * read + 0.1, f"one read of counts: {read:.3f} s"


def test_finishing_jobs_updates_the_histogram_and_sparkline(other, dashboard):
    wait_for(lambda: "via " in dashboard.counters.value, 5, "the watcher going live")
    histogram, sparkline = dashboard.histogram.value, dashboard.sparkline.value
    assert "no jobs yet" in histogram
    other.pub_many([{"n": i} for i in range(3)])
    for _ in range(3):
        other.done(other.next(timeout=2))
    wait_for(lambda: "done 3" in dashboard.counters.value, 3, "the counters saying done 3")
    wait_for(lambda: "run · 3 jobs" in dashboard.histogram.value, 3, "the histogram")
    assert dashboard.sparkline.value != sparkline
    _svg(_only_svg(dashboard.histogram.value))
    _svg(_only_svg(dashboard.sparkline.value))


def _only_svg(value: str) -> str:
    return value[value.index("<svg") : value.index("</svg>") + len("</svg>")]


def test_publisher_and_tail_are_wired(dashboard, queue):
    dashboard.publisher.editor.value = '{"kind": "mine"}'
    dashboard.publisher.publish_button.click()
    [job] = queue.jobs()
    wait_for(lambda: str(job.id) in _row_ids(dashboard), 3, "the published job in the tail")
    dashboard.publisher.editor.value = "{}"
    dashboard.tail.select(job.id)
    dashboard.tail.copy_button.click()
    assert json.loads(dashboard.publisher.editor.value) == {"kind": "mine"}


def test_close_leaves_no_thread(queue):
    from mjq_notebook.notebook.widgets.dashboard import Dashboard

    warm = Dashboard(queue)  # the client's pool grows to what a dashboard needs
    wait_for(lambda: "via " in warm.counters.value, 5, "the watcher going live")
    warm.close()
    before, ours = _threads(), set(mjq_threads())
    board = Dashboard(queue)
    try:
        wait_for(lambda: "via " in board.counters.value, 5, "the watcher going live")
        started = set(mjq_threads()) - ours  # by name: pymongo's own threads come and go under load
        assert started == {
            f"mjq-watch-{queue.db.name}.{queue.name}",
            f"mjq-dashboard-{queue.name}",
        }
    finally:
        board.close()  # a failure here must not leave its threads to every later test
    board.close()  # idempotent
    assert set(mjq_threads()) <= ours
    assert _threads() <= before  # nothing else it started (a client, a monitor) lingers


def test_stops_when_no_longer_shown_and_resumes_when_shown(other, dashboard):
    before = mjq_threads()
    assert len(before) == 2  # the queue's watcher and the dashboard's chart thread
    dashboard._view_count = 1  # what the front end reports for a displayed widget
    dashboard._view_count = 0  # its cell re-run or cleared
    assert dashboard._subscription is None and dashboard._charts is None
    assert len(mjq_threads()) == 1  # the tail (shown apart from the header) still follows
    dashboard._view_count = 1  # shown again
    assert sorted(mjq_threads()) == sorted(before)
    job_id = other.pub({"n": 1})
    wait_for(lambda: "waiting 1" in dashboard.counters.value, 3, "the counters again")
    wait_for(lambda: str(job_id) in _row_ids(dashboard), 3, "the job in the tail again")


def test_stop_freezes_it_on_screen_and_start_resumes(other, dashboard):
    wait_for(lambda: "via " in dashboard.counters.value, 5, "the watcher going live")
    other.pub({"n": 1})
    wait_for(lambda: "waiting 1" in dashboard.counters.value, 3, "the counters")
    dashboard.stop()
    assert mjq_threads() == []  # no watcher, no chart thread: nothing follows the queue
    assert dashboard.comm is not None and dashboard.tail.table.comm is not None  # still shown
    assert "stopped" in dashboard.counters.value and "waiting 1" in dashboard.counters.value
    assert dashboard.tail.table.state == "paused"
    dashboard._view_count = 1  # shown again (say, in another output): it stays stopped
    assert mjq_threads() == []
    other.pub({"n": 2})
    time.sleep(0.5)
    assert "waiting 1" in dashboard.counters.value  # frozen
    dashboard.start()
    wait_for(lambda: "waiting 2" in dashboard.counters.value, 3, "the counters again")
    assert "stopped" not in dashboard.counters.value and dashboard.tail.table.state != "paused"


@pytest.mark.parametrize("payload", XSS)
def test_payloads_in_jobs_are_escaped_everywhere(other, dashboard, payload):
    job_id = other.pub({payload: payload, "kind": payload})
    other.fail(other.next(timeout=2), RuntimeError(payload))
    wait_for(lambda: str(job_id) in _row_ids(dashboard), 3, "the job in the tail")
    dashboard.tail.select(job_id)
    dashboard.tail.copy_button.click()  # the payload goes into the form (a value, not HTML)
    dashboard.publisher.publish_button.click()
    dashboard.publisher.editor.value = payload + "{"  # and into its error message
    time.sleep(0.3)
    assert_escaped(dashboard)
    assert html.escape(payload) in dashboard.publisher.message.value
