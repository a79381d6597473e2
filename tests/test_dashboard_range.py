"""The dashboard's range picker and "Oldest waiting" (notebook/widgets/ranges.py): a longer
range is drawn from the rollups only (the commands sent show it), its lines are the metrics
frame's values, and the oldest waiting age follows the queue, for a read-only viewer too."""

from __future__ import annotations

import math
import re
import threading
import time
import xml.etree.ElementTree as ET

import pandas as pd
import pytest
from pymongo import monitoring

from mjq_notebook import JobQueue
from mjq_notebook.core import metrics as rollups
from mjq_notebook.core.audit import Actor
from mjq_notebook.notebook.widgets.dashboard import Dashboard
from mjq_notebook.notebook.widgets.ranges import CHART_WIDTH, RANGES
from mjq_notebook.server.client import client_for

from .support.waiting import mjq_threads, wait_for

SVG = "{http://www.w3.org/2000/svg}"


# A connection's own handshake (a thread that finds none free in the pool opens one): no read
HANDSHAKE = {"hello", "ismaster", "isMaster", "saslStart", "saslContinue", "authenticate"}


class _Commands(monitoring.CommandListener):
    """Every command a client sends but its connections' handshakes: (thread, command name,
    collection, command)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, dict]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in HANDSHAKE:
            return
        command = dict(event.command)
        target = command.get(event.command_name)
        if event.command_name == "getMore":
            target = command.get("collection")
        thread = threading.current_thread().name
        self.sent.append((thread, event.command_name, str(target), command))

    def succeeded(self, event: object) -> None: ...

    def failed(self, event: object) -> None: ...


def _work(queue: JobQueue) -> None:
    """Three jobs done, one failed, one left waiting."""
    queue.pub_many([{"n": i} for i in range(4)], max_attempts=1)
    for i in range(4):
        job = queue.next(timeout=5)
        if i == 3:
            queue.fail(job, ValueError("bad row"))
        else:
            queue.done(job)
    queue.pub({"n": "waits"})


def _svgs(value: str) -> list[ET.Element]:
    return [ET.fromstring(svg) for svg in re.findall(r"<svg.*?</svg>", value, re.S)]


def _xs(lines: list[ET.Element]) -> set[str]:
    return {p.split(",")[0] for line in lines for p in line.get("points").split()}


def _lines(svg: ET.Element, name: str) -> list[ET.Element]:
    """The polylines of the line whose tooltip starts with ``name`` (a line with gaps is a
    group of them, the tooltip the group's)."""
    for part in [*svg.iter(f"{SVG}polyline"), *svg.iter(f"{SVG}g")]:
        title = part.find(f"{SVG}title")
        if title is not None and title.text.startswith(f"{name}:"):
            return [part] if part.tag == f"{SVG}polyline" else part.findall(f"{SVG}polyline")
    return []


def test_choosing_7_days_draws_from_the_rollups_only(queue, server_uri):
    _work(queue)
    rollups.roll(queue)  # as a worker does every 30 s
    listener = _Commands()
    client = client_for(server_uri, event_listeners=[listener])
    board = Dashboard(JobQueue(client[queue.db.name], name=queue.name, lease=30))
    name = queue.name
    try:
        wait_for(lambda: "via " in board.counters.value, 10, "the watcher going live")
        wait_for(lambda: "Oldest waiting: <b>" in board.ranges.oldest.value, 5, "the age")
        assert "Oldest waiting: <b>none" not in board.ranges.oldest.value
        status = board.errors_panel.status
        wait_for(lambda: "in 1 group" in status.value, 10, "the errors panel's first look")
        assert board.ranges.charts.layout.display == "none"  # the live view: its own charts
        listener.sent.clear()
        start = time.monotonic()
        board.ranges.picker.value = "7 d"
        assert listener.sent == []  # choosing reads nothing on the kernel's thread
        assert board.sparkline.layout.display == "none" and board.histogram.layout.display == "none"
        wait_for(lambda: "last 7 d" in board.ranges.charts.value, 10, "the 7-day charts")
        chart_thread = f"mjq-dashboard-{name}"

        def oldest_finds() -> int:
            return sum(1 for t, _, coll, _ in listener.sent if t == chart_thread and coll == name)

        wait_for(lambda: oldest_finds() >= 6, 10, "a few more ticks of the chart thread")
        sent, elapsed = list(listener.sent), time.monotonic() - start
    finally:
        board.close()
        client.close()
    assert mjq_threads() == []
    # The range is read on the chart thread (the watcher's thread goes on feeding the tail
    # and the live counts as in the 10-minute view): from the rollups, once, and nothing
    # else of the queue but the oldest waiting job (and the audit panel's look every 5 s).
    # A week's whole hours are hour documents, the partial hours at its edges minutes, after
    # a look at the rollups' state.
    ours = [(c, coll, cmd) for t, c, coll, cmd in sent if t == chart_thread]
    rollup_reads = [(c, coll) for c, coll, _ in ours if coll.startswith(f"{name}.metrics")]
    assert rollup_reads.count(("find", f"{name}.metrics_hours")) == 1, rollup_reads
    assert 1 <= rollup_reads.count(("find", f"{name}.metrics")) <= 2, rollup_reads
    assert len(rollup_reads) <= 3, rollup_reads
    assert [cmd for c, coll, cmd in ours if coll == f"{name}.history"] == []  # no job history
    for command, coll, body in ours:
        if coll == name:  # the oldest waiting age: finds of waiting jobs on the claim's index
            assert command == "find" and body["filter"]["status"] == "waiting", body
        else:
            rollups_ = (f"{name}.metrics", f"{name}.metrics_hours", f"{name}.meta")
            assert coll in (*rollups_, f"{name}.audit"), (command, coll)
    assert [
        t for t, *_ in sent if t not in (chart_thread, f"mjq-watch-{queue.db.name}.{name}")
    ] == []
    assert [coll for t, _, coll, _ in sent if coll == f"{name}.metrics" and t != chart_thread] == []
    # The oldest age is read at most once a second (a call is a find per priority and one
    # more to find there is no lower one).
    assert sum(1 for _, coll, _ in ours if coll == name) <= 3 * (elapsed + 1)

    # The lines are the metrics frame's values: the frame read equals the rollups' own
    # frame of the same periods, and each line draws its column.
    frame, series = board.ranges.frame, board.ranges.series
    every = RANGES["7 d"][1]
    assert len(frame) in (168, 169)  # a point an hour
    again = queue.metrics(
        since=frame.index[0], until=frame.index[-1] + pd.Timedelta(every), every=every, roll=False
    )
    pd.testing.assert_frame_equal(frame, again)
    assert series["finished"] == (frame["done"] + frame["failed"]).astype(float).tolist()
    assert sum(series["finished"]) == 4 and frame["failed"].sum() == 1
    for column in ("error_rate", "oldest_wait_s", "wait_p50", "wait_p99", "run_p90"):
        assert series[column] == pytest.approx(frame[column].tolist(), nan_ok=True)
    assert series["error_rate"][-1] == pytest.approx(0.25)
    assert series["oldest_wait_s"][-1] > 0  # the waiting job, sampled by the roll

    throughput, latency, oldest = _svgs(board.ranges.charts.value)
    n = len(frame)
    xs = [f"{CHART_WIDTH * (i + 0.5) / n:.1f}" for i in range(n)]
    [finished] = _lines(throughput, "finished")
    points = [p.split(",") for p in finished.get("points").split()]
    assert [x for x, _ in points] == xs  # a point every hour, none missing
    baseline = max(float(y) for _, y in points)
    raised = [i for i, (_, y) in enumerate(points) if float(y) < baseline]
    assert raised == [i for i, v in enumerate(series["finished"]) if v > 0]
    for kind, column in (("wait p50", "wait_p50"), ("run p99", "run_p99")):
        drawn = _xs(_lines(latency, kind))
        assert drawn == {xs[i] for i, v in enumerate(series[column]) if not math.isnan(v)}
    drawn = _xs(_lines(oldest, "oldest waiting"))
    assert drawn == {xs[i] for i, v in enumerate(series["oldest_wait_s"]) if not math.isnan(v)}
    texts = " ".join("".join(t.itertext()) for t in throughput.iter(f"{SVG}text"))
    assert "finished · peak 4 per 1 h" in texts and "error rate · peak 25%" in texts
    assert "-7 d" in texts and "-3.5 d" in texts and "now" in texts


def _oldest_text(board: Dashboard) -> str | None:
    found = re.search(r"Oldest waiting: <b>(.*?)</b>", board.ranges.oldest.value)
    return found.group(1) if found else None


def _seconds(text: str | None) -> float | None:
    """ "850 ms", "1.23 s" as seconds (the ages of a short test)."""
    found = re.fullmatch(r"([\d.]+) (ms|s)", text or "")
    if not found:
        return None
    return float(found.group(1)) / (1000 if found.group(2) == "ms" else 1)


def test_the_oldest_waiting_age_grows_while_a_job_waits_and_goes_when_claimed(queue):
    board = Dashboard(queue, actor=Actor.page({}))  # a read-only viewer sees it all
    assert board.actor.read_only and board.publisher is None
    try:
        wait_for(lambda: _oldest_text(board) == "none", 5, "no job waiting")
        shown: list[float] = []
        board.ranges.oldest.observe(lambda _change: shown.append(time.monotonic()), "value")
        start = time.monotonic()
        queue.pub({"n": 1})
        wait_for(lambda: _seconds(_oldest_text(board)) is not None, 3, "the age shown")
        first = _seconds(_oldest_text(board))
        wait_for(lambda: (_seconds(_oldest_text(board)) or 0) >= first + 1.5, 5, "the age growing")
        assert queue.next(timeout=2) is not None
        wait_for(lambda: _oldest_text(board) == "none", 3, "the age gone once claimed")
        elapsed = time.monotonic() - start
        assert len(shown) <= elapsed + 2  # read (and sent) at most once a second
        board.ranges.picker.value = "1 h"  # a viewer's picker works too
        wait_for(lambda: "last 1 h" in board.ranges.charts.value, 10, "the hour's charts")
        assert "none in this range yet" in board.ranges.charts.value  # nothing rolled up yet
        board.ranges.picker.value = "10 min"  # back to the live charts
        assert board.sparkline.layout.display is None and board.ranges.charts.layout.display
    finally:
        board.close()


def test_a_line_with_gaps_is_drawn_in_runs_and_a_lone_value_as_a_dot():
    from mjq_notebook.notebook.widgets.charts import BRAND, Line, Panel, series_svg

    nan = math.nan
    wait = Line("p50", [1.0, nan, 2.0, 3.0, nan, nan, 40.0], BRAND)
    empty = Line("p99", [nan] * 7, BRAND)
    svg = ET.fromstring(
        series_svg(
            [Panel("wait", (wait,), str, log=True), Panel("run", (empty,), str)],
            window=86400.0,
            middle=True,
        )
    )
    runs = [[p for p in line.get("points").split()] for line in _lines(svg, "wait p50")]
    assert [len(run) for run in runs] == [2, 2, 2]  # [1], [2, 3], [40]: a lone one twice
    assert runs[0][0] == runs[0][1] and runs[2][0] == runs[2][1]
    assert _lines(svg, "run p99") == []
    texts = ["".join(t.itertext()) for t in svg.iter(f"{SVG}text")]
    assert "wait p50 · 1.0 to 40.0 (log)" in texts and "run p99 · none in this time" in texts
    assert texts[-3:] == ["-24 h", "-12 h", "now"]
