"""Figures of a job history frame; matplotlib is imported on first use.

Each function returns the matplotlib Figure, so users can restyle it or save it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .timing import PERCENTILES, throughput

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

FLOOR_S = 1e-3  # BSON dates have millisecond precision: shorter times show as 1 ms
_STAGE_LABELS = {"wait_s": "waiting for a worker", "run_s": "running"}
_MARKER_STYLES = {"p50": ":", "p90": "--", "p99": "-."}


def plot_latency(
    frame: pd.DataFrame, *, log: bool = True, bins: int = 40, figsize: tuple = (9, 3.2)
) -> Figure:
    """Histograms of wait and run times, with p50/p90/p99 marked.

    ``log=True`` puts seconds on a log axis with log-spaced bins, so a few slow jobs do not
    squash everything else into one bar.
    """
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=figsize, layout="constrained")
    for ax, (stage, label) in zip(axes, _STAGE_LABELS.items(), strict=True):
        values = frame[stage].dropna().to_numpy(dtype=float)
        ax.set_title(f"{label} ({len(values):,} jobs)")
        ax.set_xlabel("seconds")
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
        ax.hist(values, bins=edges, color="#4c78a8", alpha=0.85)
        for name, q in PERCENTILES.items():
            at = float(np.quantile(values, q))
            ax.axvline(
                at,
                color="#e45756",
                linestyle=_MARKER_STYLES[name],
                linewidth=1.3,
                label=f"{name} {_seconds(at)}",
            )
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # whole jobs
        ax.legend(loc="upper right", fontsize=8, framealpha=0.85, edgecolor="none")
    axes[0].set_ylabel("jobs")
    return fig


def plot_timeline(
    frame: pd.DataFrame, freq: str | None = None, *, figsize: tuple = (9, 4.5)
) -> Figure:
    """Jobs created/started/done per interval (top) and backlog and running jobs (bottom).

    ``freq`` defaults to a round interval giving about 60 points over the frame's time span.
    """
    import matplotlib.pyplot as plt
    import pandas as pd

    freq = freq or _auto_freq(frame)
    table = throughput(frame, freq=freq)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=figsize, sharex=True, layout="constrained")
    if table.empty:
        top.text(0.5, 0.5, "no jobs yet", ha="center", va="center", transform=top.transAxes)
        return fig
    # one more point at the end, so the last interval is drawn as wide as the others
    end = table.index[-1] + pd.tseries.frequencies.to_offset(freq)
    table = pd.concat([table, table.iloc[[-1]].set_axis([end])])
    x = table.index.tz_convert(None)  # matplotlib draws naive times; they are UTC
    for column, color in (("created", "#4c78a8"), ("started", "#f58518"), ("done", "#54a24b")):
        top.step(x, table[column], where="post", label=column, color=color)
    top.set_ylabel(f"jobs per {freq}")
    bottom.fill_between(x, table["backlog"], step="post", alpha=0.4, label="backlog (waiting)")
    bottom.step(x, table["running"], where="post", label="running", color="#e45756")
    bottom.set_ylabel("jobs")
    bottom.set_xlabel("time (UTC)")
    for ax in (top, bottom):
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    fig.autofmt_xdate()
    return fig


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


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.3g} s"
