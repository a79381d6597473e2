"""History figures: drawn once (never left in pyplot), time axes that read as times, legends
clear of the data, and backlog/running bursts shorter than one interval still visible."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import re

import numpy as np
import pandas as pd
import pytest
from bson import ObjectId

from mjq_notebook.analysis.history import plot_latency, throughput
from mjq_notebook.text import format_seconds

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from mjq_notebook.analysis.ticks import DurationLocator, parse_duration  # noqa: E402

T0 = dt.datetime(2026, 3, 1, 12, 26, 0, tzinfo=dt.timezone.utc)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def finished(created: float, started: float, done: float, kind: str = "a") -> dict:
    return {
        "_id": ObjectId(), "status": "done", "attempts": 1, "max_attempts": 3, "priority": 0,
        "data": {"kind": kind}, "ts": {"created": at(created), "started": at(started),
                                       "done": at(done)},
    }  # fmt: skip


@pytest.fixture
def frame(queue):
    """A job every 2 s for 40 s (0.2 s wait, 0.2 s run), and a burst at 20.1-21.1 s, over
    before the next 10 s boundary: five jobs that wait about 0.5 s and run 0.3 s."""
    docs = [finished(i, i + 0.2, i + 0.4) for i in range(0, 40, 2)]
    docs += [finished(20.1 + i / 10, 20.6 + i / 20, 20.9 + i / 20, "burst") for i in range(5)]
    queue.history_collection.insert_many(docs)
    return queue.history()


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    plt.close("all")
    yield
    assert plt.get_fignums() == []  # nothing a plot made is left open in pyplot


def test_each_plot_is_one_new_figure_never_registered_with_pyplot(frame):
    for plot in (frame.mjq.plot_latency, frame.mjq.plot_timeline):
        figure = plot()
        assert isinstance(figure, Figure) and plt.get_fignums() == []
        png = figure._repr_png_()  # how Jupyter shows it without pyplot's formatter
        assert png.startswith(b"\x89PNG")
        figure.savefig(io.BytesIO(), format="png")


def test_latency_legend_sits_above_the_bars_and_lines(frame):
    figure = frame.mjq.plot_latency()
    figure.draw_without_rendering()
    for ax in figure.axes:
        legend, plot = ax.get_legend().get_window_extent(), ax.get_window_extent()
        assert legend.y0 >= plot.y1 - 1  # entirely above the plotting area
        assert [t.get_text().split()[0] for t in ax.get_legend().get_texts()] == [
            "p50", "p90", "p99"]  # fmt: skip
        labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        assert labels and all(label.split()[-1] in ("ms", "s", "min", "h") for label in labels)
    [p50, *_] = figure.axes[1].get_legend().get_texts()
    assert p50.get_text() == f"p50 {format_seconds(frame['run_s'].median())}" == "p50 200 ms"


ROUND = re.compile(r"[1-9][0-9]* (ms|s|min|h|d)")  # "200 ms", "1 min", "6 h": one unit, whole


def drawn(figure: Figure) -> Figure:
    FigureCanvasAgg(figure)  # a canvas that really renders, so text has its real size
    figure.canvas.draw()
    return figure


def shown_ticks(ax) -> list:
    """The x tick labels drawn inside the axis' view, left to right."""
    low, high = sorted(ax.get_xlim())
    pairs = zip(ax.get_xticks(), ax.get_xticklabels(), strict=True)
    return [(at, label) for at, label in pairs if low <= at <= high and label.get_text()]


@pytest.mark.parametrize(
    ("low", "high"),
    [(1, 180), (0.002, 0.006), (0.05, 7200), (55, 110), (600, 3 * 86400), (0.001, 40 * 86400)],
    ids=["seconds-to-minutes", "milliseconds", "ms-to-hours", "one-minute", "hours", "all"],
)
def test_latency_duration_ticks_are_round_distinct_and_never_overlap(low, high):
    """Today's wait axis over 1 s-3 min read "10 s", "1 min", "1.67 min" with the last two
    touching: each label now a round duration in one unit, none closer than a space."""
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"wait_s": np.geomspace(low, high, 300),
                          "run_s": rng.lognormal(np.log(0.2), 1.5, 300)})  # fmt: skip
    for log in (True, False):
        figure = drawn(plot_latency(frame, log=log))
        renderer = figure.canvas.get_renderer()
        for ax in figure.axes:
            ticks = shown_ticks(ax)
            texts = [label.get_text() for _, label in ticks]
            assert len(ticks) >= 2, texts
            assert len(set(texts)) == len(texts), texts
            for at, label in ticks:
                assert label.get_text() in ("0", format_seconds(at)), (at, texts)
                assert label.get_fontsize() >= 10
                if log:
                    assert ROUND.fullmatch(label.get_text()), texts
                else:  # evenly spaced: "1 min 15 s" is fine, as long as it says the value
                    assert at == 0 or parse_duration(label.get_text()) == pytest.approx(at)
            boxes = [label.get_window_extent(renderer) for _, label in ticks]
            space = 0.3 * ticks[0][1].get_fontsize() * figure.dpi / 72
            for left, right in itertools.pairwise(boxes):
                assert left.x1 + space <= right.x0, texts
        # the percentile legends stay clear of each other, whatever their values' lengths
        first, second = (ax.get_legend().get_window_extent(renderer) for ax in figure.axes)
        assert first.x1 < second.x0
        plt.close(figure)


def test_duration_locator_alone_gives_round_ticks():
    assert DurationLocator(max_ticks=6).tick_values(0, 300) == [0, 60, 120, 180, 240, 300]
    assert DurationLocator().tick_values(0, 0.004) == [0, 0.001, 0.002, 0.003, 0.004]


def test_duration_locator_on_a_dummy_axis_ticks_as_on_a_linear_one():
    # a locator used alone gets matplotlib's dummy axis: a view interval, but no scale or size
    locator = DurationLocator(max_ticks=6)
    locator.create_dummy_axis()
    locator.axis.set_view_interval(0, 300)
    assert locator() == [0, 60, 120, 180, 240, 300]


def test_timeline_axes_read_as_times_and_legends_sit_outside(frame):
    figure = frame.mjq.plot_timeline(freq="10s")
    figure.draw_without_rendering()
    top, bottom = figure.axes
    labels = [t.get_text() for t in bottom.get_xticklabels() if t.get_text()]
    assert len(labels) >= 3
    for label in labels:  # "12:26:10", not "26:10.000000"
        dt.datetime.strptime(label, "%H:%M:%S")
    assert bottom.xaxis.get_major_formatter().get_offset() == "2026-03-01"
    assert bottom.get_xlabel() == "time (UTC)"
    for ax in (top, bottom):
        legend, plot = ax.get_legend().get_window_extent(), ax.get_window_extent()
        assert legend.x0 >= plot.x1 - 1  # to the right of the plotting area


def test_a_burst_shorter_than_one_interval_shows_in_backlog_and_running(frame):
    table = throughput(frame, freq="10s")
    burst = table.loc[pd.Timestamp(at(20))]
    # at the 10 s boundaries nothing waits: the end-of-interval counts miss the burst
    assert burst["backlog"] == 0 and burst["running"] == 0
    # the peaks don't: at 20.5 s all five burst jobs wait, at 20.8 s all five run
    assert burst["peak_backlog"] == 5 and burst["peak_running"] == 5
    assert table["peak_backlog"].drop(pd.Timestamp(at(20))).max() <= 1
    figure = frame.mjq.plot_timeline(freq="10s")
    bottom = figure.axes[1]
    backlog = bottom.collections[0].get_paths()[0].vertices[:, 1]
    running = bottom.get_lines()[0].get_ydata()
    assert backlog.max() == 5 and max(running) == 5


def test_throughput_peaks_count_events_at_the_same_millisecond_together(queue):
    # created and started in the same millisecond: it never waited
    queue.history_collection.insert_many([finished(0, 0, 0.5), finished(3, 3, 3)])
    table = throughput(queue.history(), freq="1s")
    assert table["peak_backlog"].max() == 0
    assert table["peak_running"].tolist() == [1, 0, 0, 0]


def test_plots_show_exactly_once_in_a_real_kernel(frame, tmp_path):
    """The figure is the cell's only output, before and after pyplot was used in the kernel
    (once it was, matplotlib's inline formatter shows Figures; before, ``_repr_png_`` does)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    path = tmp_path / "frame.pkl"
    frame.to_pickle(path)
    cells = [
        "import pandas as pd, mjq_notebook.analysis.history\n"
        f"frame = pd.read_pickle({str(path)!r})",
        "frame.mjq.plot_latency()",
        "import matplotlib.pyplot as plt\nfigure, axes = plt.subplots()\nplt.close(figure)",
        "frame.mjq.plot_timeline()",
        "print(plt.get_fignums())",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(notebook, timeout=60, kernel_name="python3").execute()
    outputs = [cell.outputs for cell in notebook.cells]
    for index in (1, 3):
        [output] = outputs[index]
        assert output.output_type == "execute_result" and "image/png" in output.data
    assert outputs[4][0].text == "[]\n"
