"""The figure of a ``q.metrics()`` frame: throughput and error rate, wait and run p50/p90/p99,
and the oldest waiting job's age, over time. Drawn as the history plots are (``plots.py``):
matplotlib's object API, the notebook's theme, shown once by Jupyter."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .plots import LABEL_SIZE, LEGEND_SIZE, TITLE_SIZE, _time_axis, new_figure, themed

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

_STYLES = {"p50": ":", "p90": "--", "p99": "-"}
_COLORS = {"wait": "#4c78a8", "run": "#f58518", "done": "#54a24b", "failed": "#e45756"}


@themed
def plot_metrics(frame: pd.DataFrame, *, figsize: tuple = (9, 6.5)) -> Figure:
    """Three panels sharing the time axis: jobs done and failed per period with the error
    rate; wait and run p50/p90/p99 (log scale); the oldest waiting job's age."""
    import pandas as pd

    fig = new_figure(figsize=figsize)
    top, middle, bottom = fig.subplots(3, 1, sharex=True)
    if frame.empty:
        top.text(0.5, 0.5, "no metrics yet", ha="center", va="center", transform=top.transAxes)
        return fig
    index = pd.DatetimeIndex(frame.index)
    step = index[1] - index[0] if len(index) > 1 else pd.Timedelta(minutes=1)
    x = index.tz_convert(None).to_pydatetime() if index.tz is not None else index.to_pydatetime()
    width = step.total_seconds() / 86_400 * 0.9  # matplotlib's dates are in days
    top.bar(x, frame["done"], width=width, align="edge", color=_COLORS["done"], label="done")
    top.bar(x, frame["failed"], width=width, align="edge", bottom=frame["done"],
            color=_COLORS["failed"], label="failed")  # fmt: skip
    top.set_ylabel("jobs per period", fontsize=LABEL_SIZE)
    rate = top.twinx()
    rate.plot(x, frame["error_rate"] * 100, color=_COLORS["failed"], linewidth=1, label="error %")
    rate.set_ylabel("error rate (%)", fontsize=LABEL_SIZE)
    rate.set_ylim(bottom=0)
    drawn = False
    for stage in ("wait", "run"):
        for name, style in _STYLES.items():
            values = frame[f"{stage}_{name}"]
            if values.notna().any():
                drawn = True
            middle.plot(x, values, linestyle=style, color=_COLORS[stage], label=f"{stage} {name}")
    if drawn:
        middle.set_yscale("log")
    middle.set_ylabel("seconds", fontsize=LABEL_SIZE)
    bottom.plot(x, frame["oldest_wait_s"], color=_COLORS["wait"], label="oldest waiting job")
    bottom.set_ylabel("age (s)", fontsize=LABEL_SIZE)
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("time (UTC)", fontsize=LABEL_SIZE)
    top.set_title("finished jobs, error rate", fontsize=TITLE_SIZE)
    middle.set_title("wait and run percentiles", fontsize=TITLE_SIZE)
    bottom.set_title("the oldest waiting job's age", fontsize=TITLE_SIZE)
    for ax in (top, middle, bottom):
        ax.tick_params(labelsize=LABEL_SIZE)
        ax.legend(loc="upper left", bbox_to_anchor=(1.08, 1.0), fontsize=LEGEND_SIZE, frameon=False)
    _time_axis(bottom)
    return fig
