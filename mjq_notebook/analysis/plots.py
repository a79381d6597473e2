"""Figures of a job history frame; matplotlib is imported on first use.

Each function returns a new matplotlib Figure, so users can restyle it or save it. Figures
are built with matplotlib's object API, never through pyplot: a pyplot figure stays open in
pyplot, and Jupyter's inline backend then shows it a second time at the end of the cell.
A Figure made this way is only shown by Jupyter if the inline backend registered its figure
formatter (it does once pyplot was used in the kernel), so ``HistoryFigure`` also has a
``_repr_png_``: the figure shows exactly once either way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ..text import format_seconds
from .timing import FLOOR_S, PERCENTILES, throughput

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_STAGE_LABELS = {"wait_s": "waiting for a worker", "run_s": "running"}
_MARKER_STYLES = {"p50": ":", "p90": "--", "p99": "-."}
# Points; the figure is shown at 100 dpi or so, where matplotlib's 8 pt legends read small.
TITLE_SIZE, LABEL_SIZE, LEGEND_SIZE = 11, 10, 9
_BAR = "#4c78a8"
_MARK = "#d62728"
# The figures follow the notebook's theme: no box of their own (transparent figure and axes,
# also in the PNG), and text, ticks and spines in a mid grey that reads on white and on
# JupyterLab Dark's #111 alike (contrast about 4.4:1 and 4.2:1).
INK = "#777777"
THEME: dict[str, Any] = {
    "figure.facecolor": "none", "axes.facecolor": "none", "savefig.facecolor": "none",
    "text.color": INK, "axes.labelcolor": INK, "axes.edgecolor": INK, "axes.titlecolor": INK,
    "xtick.color": INK, "ytick.color": INK, "grid.color": INK, "legend.labelcolor": INK,
}  # fmt: skip
_Draw = TypeVar("_Draw", bound=Callable[..., Any])


def themed(draw: _Draw) -> _Draw:
    """Draw in ``THEME`` (matplotlib reads its settings as artists are made)."""

    @functools.wraps(draw)
    def drawn(*args: Any, **kwargs: Any) -> Any:
        import matplotlib

        with matplotlib.rc_context(THEME):  # type: ignore[arg-type]  # names as rcParams has them
            return draw(*args, **kwargs)

    return drawn  # type: ignore[return-value]


@themed
def plot_latency(
    frame: pd.DataFrame, *, log: bool = True, bins: int = 40, figsize: tuple = (9, 3.4)
) -> Figure:
    """Histograms of wait and run times, with p50/p90/p99 marked.

    ``log=True`` puts durations on a log axis with log-spaced bins, so a few slow jobs do not
    squash everything else into one bar. The legend (the percentiles' values) sits above
    each plot, clear of the bars and the lines.
    """
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    from .ticks import duration_axis

    fig = new_figure(figsize=figsize)
    axes = fig.subplots(1, 2)
    legends = {}
    for ax, (stage, label) in zip(axes, _STAGE_LABELS.items(), strict=True):
        values = frame[stage].dropna().to_numpy(dtype=float)
        ax.set_title(f"{label} ({len(values):,} jobs)", pad=8, fontsize=TITLE_SIZE)
        ax.set_xlabel("duration", fontsize=LABEL_SIZE)
        ax.tick_params(labelsize=LABEL_SIZE)
        if not len(values):
            ax.text(0.5, 0.5, "no jobs yet", ha="center", va="center", transform=ax.transAxes)
            continue
        if log:
            values = np.maximum(values, FLOOR_S)
            low, high = values.min(), max(values.max(), values.min() * 10)
            edges = np.geomspace(low, high, bins + 1)
            ax.set_xscale("log")
        else:
            edges = np.linspace(values.min(), values.max() or 1.0, bins + 1)
        ax.hist(values, bins=edges, color=_BAR, alpha=0.85)
        lines = []
        for name, q in PERCENTILES.items():
            at = float(np.quantile(values, q))
            text, style = f"{name} {format_seconds(at)}", _MARKER_STYLES[name]
            lines.append(ax.axvline(at, color=_MARK, linestyle=style, linewidth=1.3, label=text))
        legends[ax] = lines
        duration_axis(ax.xaxis)  # round durations, labels that never touch
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # whole jobs
    # The legends above the plots, so they never cover the bars or the percentile lines; in
    # two rows where one would reach into the other plot's ("p50 9 min 12 s   p90 …").
    widest = max((_legend_width([line.get_label() for line in lines])
                  for lines in legends.values()), default=0.0)  # fmt: skip
    rows = 1 if widest <= figsize[0] * 72 / 2 - 24 else 2
    for ax, lines in legends.items():
        if rows == 2:  # filled column by column: this order reads p50 p90 / p99
            lines = [lines[0], lines[2], lines[1]]
        ax.legend(handles=lines, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=4 - rows,
                  fontsize=LEGEND_SIZE, frameon=False, borderaxespad=0.2, handlelength=1.8,
                  columnspacing=1.0)  # fmt: skip
        ax.set_title(ax.get_title(), pad=6 + rows * LEGEND_SIZE * 1.9, fontsize=TITLE_SIZE)
    axes[0].set_ylabel("jobs", fontsize=LABEL_SIZE)
    return fig


@themed
def plot_timeline(
    frame: pd.DataFrame, freq: str | None = None, *, figsize: tuple = (9, 4.5)
) -> Figure:
    """Jobs created/started/done per interval (top), and backlog and running jobs (bottom).

    The bottom panel draws, for each interval, the most jobs that were waiting (backlog) or
    running at any moment in it (``throughput``'s ``peak_*`` columns): a burst shorter than
    an interval still shows at its full height. ``freq`` defaults to a round interval giving
    about 60 points over the frame's time span.
    """
    import pandas as pd

    freq = freq or _auto_freq(frame)
    table = throughput(frame, freq=freq)
    fig = new_figure(figsize=figsize)
    top, bottom = fig.subplots(2, 1, sharex=True)
    if table.empty:
        top.text(0.5, 0.5, "no jobs yet", ha="center", va="center", transform=top.transAxes)
        return fig
    # one more point at the end, so the last interval is drawn as wide as the others
    end = table.index[-1] + pd.tseries.frequencies.to_offset(freq)
    table = pd.concat([table, table.iloc[[-1]].set_axis([end])])
    x = table.index.tz_convert(None).to_pydatetime()  # matplotlib draws naive times; UTC
    for column, color in (("created", "#4c78a8"), ("started", "#f58518"), ("done", "#54a24b")):
        top.step(x, table[column], where="post", label=column, color=color)
    top.set_ylabel(f"jobs per {freq}")
    bottom.fill_between(x, table["peak_backlog"], step="post", alpha=0.4,
                        label="backlog (waiting)", color="#4c78a8", linewidth=0)  # fmt: skip
    bottom.step(x, table["peak_running"], where="post", label="running", color="#e45756")
    bottom.set_ylabel("jobs (peak)")
    bottom.set_xlabel("time (UTC)")
    for ax in (top, bottom):
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=LEGEND_SIZE, frameon=False)
    _time_axis(bottom)
    return fig


def new_figure(**kwargs: Any) -> Figure:
    """A ``HistoryFigure`` (constrained layout), not registered with pyplot."""
    from .figure import HistoryFigure

    return HistoryFigure(layout="constrained", **kwargs)


def _time_axis(ax: Axes) -> None:
    """Ticks at round times, labelled as times ("12:26:30"), the date once in the corner."""
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(minticks=4, maxticks=9)
    formatter = mdates.ConciseDateFormatter(locator)
    # seconds-level ticks as full times, not the bare "30" ConciseDateFormatter shows
    formatter.formats[-1] = "%H:%M:%S.%f"
    formatter.zero_formats[-1] = "%H:%M:%S"
    formatter.offset_formats = ["", "%Y", "%Y-%m", "%Y-%m-%d", "%Y-%m-%d", "%Y-%m-%d"]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(formatter)


def _legend_width(labels: list[str]) -> float:
    """About how wide (points) a one-row legend of these labels is: handle, text, spacing."""
    ems = sum(1.8 + 0.8 + 0.6 * len(label) for label in labels) + 1.0 * (len(labels) - 1)
    return ems * LEGEND_SIZE


def _auto_freq(frame: pd.DataFrame, points: int = 60) -> str:
    """A round interval ("1s", "5min", …) splitting the frame's time span into ~``points``."""
    import pandas as pd

    columns = frame[["created", "started", "done"]]
    span = (columns.max().max() - columns.min().min()).total_seconds()
    if pd.isna(span):
        return _ROUND_INTERVALS[0][1]
    for seconds, name in _ROUND_INTERVALS:
        if span / seconds <= points:
            return name
    return _ROUND_INTERVALS[-1][1]


_ROUND_INTERVALS = [
    (1, "1s"), (5, "5s"), (10, "10s"), (30, "30s"), (60, "1min"), (300, "5min"),
    (600, "10min"), (1800, "30min"), (3600, "1h"), (6 * 3600, "6h"), (86400, "1D"),
]  # fmt: skip
