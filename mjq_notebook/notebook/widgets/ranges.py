"""The dashboard's range picker (10 min, 1 h, 24 h, 7 d, 90 d) and "Oldest waiting: …".

10 min is the live view (the sparkline and histogram the watcher feeds); a longer range hides
them and draws, from the queue's per-minute rollups (``q.metrics``, never its jobs),
throughput and error rate, the p50/p90/p99 wait and run times and the age of the oldest
waiting job, one point per period (60 to 300 of them). Nothing here runs a thread: the
dashboard's chart thread calls ``tick()``, which reads the oldest waiting age (a find or two
on the claim's index) at most once a second, and the chosen range's rollups when chosen, then
every 30 s (1 h, 24 h) or 5 min (7 d, 90 d): rollups change at most once a minute. It reads
them as they are (``roll=False``; the workers roll them up every 30 s) and writes nothing, so
read-only viewers have it all.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
from pymongo.errors import PyMongoError

from ...errors import ServerUnavailable
from ...text import format_seconds
from ..markup import escape
from .charts import ACCENT, BRAND, MARK, SUCCESS, Line, Panel, series_svg, span_label

if TYPE_CHECKING:
    import pandas as pd

    from ...core.queue import JobQueue

log = logging.getLogger("mjq_notebook")

LIVE = "10 min"
# range -> (seconds, period of q.metrics, seconds between reads of it)
RANGES: dict[str, tuple[float, str, float]] = {
    LIVE: (600.0, "", 0.0),  # the live charts
    "1 h": (3600.0, "1min", 30.0),  # 60 points
    "24 h": (86400.0, "5min", 30.0),  # 288
    "7 d": (7 * 86400.0, "1h", 300.0),  # 168
    "90 d": (90 * 86400.0, "12h", 300.0),  # 180
}
RETRY_S = 5.0  # a failed read of the rollups is tried again this soon
OLDEST_EVERY_S = 1.0  # the oldest waiting age is read at most this often
CHART_WIDTH = 300
CHART_HEIGHT = 110
COUNTS = ("created", "started", "done", "failed", "cancelled", "retried")
PERCENTILES = ("p50", "p90", "p99")
_LINE_COLOURS = (BRAND, ACCENT, MARK)  # p50, p90, p99
_CAPTION = "class='mjq-dim' style='font-size:11px'"


class RangeCharts:
    """The picker (``.picker``) and "Oldest waiting" (``.oldest``) on one line (``.bar``);
    the chosen range's charts (``.charts``, hidden in the live view, which hides ``live``
    instead). ``.frame`` is the ``q.metrics`` frame last drawn and ``.series`` the values
    each line was drawn from. ``on_pick`` is called when a range is chosen (the dashboard
    wakes its chart thread, which then calls ``tick()``)."""

    def __init__(
        self, queue: JobQueue, live: Sequence[widgets.Widget], on_pick: Callable[[], None]
    ) -> None:
        self.queue = queue
        self._live = tuple(live)
        self._on_pick = on_pick
        self.picker = widgets.ToggleButtons(
            options=list(RANGES),
            value=LIVE,
            tooltips=["live: every job of the last 10 minutes"]
            + [f"from the per-minute rollups: the last {name}" for name in list(RANGES)[1:]],
            style={"button_width": "auto"},
            layout=widgets.Layout(width="auto"),
        )
        self.oldest = widgets.HTML(layout=widgets.Layout(margin="0 0 0 12px"))
        self.bar = widgets.HBox(
            [self.picker, self.oldest],
            layout=widgets.Layout(align_items="center", flex_flow="row wrap"),
        )
        self.charts = widgets.HTML(layout=widgets.Layout(display="none", max_width="100%"))
        self.frame: pd.DataFrame | None = None
        self.series: dict[str, list[float]] = {}
        self._drawn: str = LIVE  # the range whose charts are shown
        self._asked: str = LIVE  # the range last read (or tried)
        self._read_at = -math.inf  # monotonic time of the last read of the rollups
        self._oldest_at = -math.inf
        self.picker.observe(self._picked, "value")

    def _picked(self, change: dict[str, Any]) -> None:
        live = change["new"] == LIVE
        for part in self._live:
            part.layout.display = None if live else "none"
        self.charts.layout.display = "none" if live else None
        self._on_pick()

    @property
    def live(self) -> bool:
        return self.picker.value == LIVE

    def tick(self) -> None:
        """On the chart thread (or the kernel's, while the dashboard is stopped): the oldest
        waiting age when a second has passed; the chosen range's rollups when due."""
        now = time.monotonic()
        if now - self._oldest_at >= OLDEST_EVERY_S:
            self._oldest_at = now
            self._read_oldest()
        choice = self.picker.value
        if choice == LIVE:
            self._asked = self._drawn = LIVE
            return
        every = RANGES[choice][2] if choice == self._drawn else RETRY_S  # after a failed read
        if choice != self._asked or now >= self._read_at + every:
            self._asked, self._read_at = choice, now
            self._read_range(choice)

    def _read_oldest(self) -> None:
        from ...core import metrics

        try:
            age = metrics.oldest_waiting_age(self.queue)
        except (PyMongoError, ServerUnavailable):
            return  # the header says the server is away; the last age stays
        value = oldest_html(age)
        if value != self.oldest.value:
            self.oldest.value = value

    def _read_range(self, choice: str) -> None:
        seconds, every, _ = RANGES[choice]
        until = dt.datetime.now(dt.timezone.utc)
        since = until - dt.timedelta(seconds=seconds)
        try:
            frame = self.queue.metrics(since=since, every=every, roll=False)  # reads only
        except (PyMongoError, ServerUnavailable) as exc:
            self._drawn = ""  # tried again in RETRY_S
            self.charts.value = _wrap(
                f"<span {_CAPTION}>could not read the rollups: {escape(type(exc).__name__)}"
                " (tried again soon)</span>"
            )
            return
        if self.picker.value != choice:  # chosen again meanwhile: the next tick reads that
            return
        series = range_series(frame, since=since, until=until, every=every)
        self.frame, self.series, self._drawn = frame, series, choice
        self.charts.value = range_html(series, window=seconds, every=every, read=until)


def oldest_html(age: float | None) -> str:
    """ "Oldest waiting: 2 min 47 s" ("none" while no job waits)."""
    said = "none" if age is None else format_seconds(age)
    tip = "how long the job waiting longest has waited (a stalled queue shows here first)"
    return _wrap(f"<span title='{escape(tip)}'>Oldest waiting: <b>{escape(said)}</b></span>")


def range_series(
    frame: pd.DataFrame, *, since: dt.datetime, until: dt.datetime, every: str
) -> dict[str, list[float]]:
    """The lines' values, one per period from the one holding ``since`` to the last before
    ``until`` (a period without a row: no jobs counted, no times (a gap)): ``finished``
    (done and failed), ``error_rate``, ``wait_p50`` … ``run_p99`` and ``oldest_wait_s``."""
    import pandas as pd

    step = pd.Timedelta(every)
    grid = pd.date_range(
        pd.Timestamp(since).floor(step), pd.Timestamp(until), freq=step, inclusive="left"
    )
    index = pd.DatetimeIndex(frame.index)
    if index.tz is None:
        index = index.tz_localize("UTC")
    frame = frame.set_axis(index.tz_convert("UTC")).reindex(grid)
    counts = frame[list(COUNTS)].fillna(0)
    series = {"finished": (counts["done"] + counts["failed"]).astype(float).tolist()}
    times = [f"{kind}_{p}" for kind in ("wait", "run") for p in PERCENTILES]
    for name in ("error_rate", "oldest_wait_s", *times):
        series[name] = frame[name].astype(float).tolist()
    return series


def range_html(
    series: dict[str, list[float]], *, window: float, every: str, read: dt.datetime
) -> str:
    """Three charts over ``window`` seconds, one point per ``every``: finished jobs and the
    error rate, the wait and run percentiles (log scale), the oldest waiting age."""
    import pandas as pd

    per = f"per {span_label(pd.Timedelta(every).total_seconds())}"
    finished = sum(series["finished"])

    def jobs(n: float) -> str:
        return f"{n:,.0f} {per}"

    panels = [
        [
            Panel("finished", (Line("", series["finished"], SUCCESS),), jobs),
            Panel("error rate", (Line("", series["error_rate"], MARK),), _percent),
        ],
        [
            Panel(kind, _percentile_lines(series, kind), format_seconds, log=True)
            for kind in ("wait", "run")
        ],
        [Panel("oldest waiting", (Line("", series["oldest_wait_s"], BRAND),), format_seconds)],
    ]
    titles = [
        f"jobs finished {per} and the share that failed, last {span_label(window)}",
        f"p50, p90 and p99 of wait and run times {per} (log scale), last {span_label(window)}",
        f"age of the oldest waiting job {per} (its greatest), last {span_label(window)}",
    ]
    size = {"width": CHART_WIDTH, "height": CHART_HEIGHT}
    svgs = "".join(
        "<div style='flex:0 0 auto;max-width:100%'>"
        + series_svg(rows, window=window, title=title, middle=True, **size)
        + "</div>"
        for rows, title in zip(panels, titles, strict=True)
    )
    stamp = read.strftime("%H:%M UTC")
    caption = (
        f"last {span_label(window)} · {per} · {finished:,.0f} finished · "
        f"from the per-minute rollups (rolled up by the workers), read {stamp}"
    )
    if not finished and all(math.isnan(v) for v in series["oldest_wait_s"]):
        caption += (
            " · none in this range yet: each Worker rolls up every 30 s, and q.metrics() "
            "rolls up to now"
        )
    return _wrap(
        f"<div {_CAPTION}>{escape(caption)}</div>"
        f"<div style='display:flex;flex-flow:row wrap;gap:4px 16px'>{svgs}</div>"
    )


def _percentile_lines(series: dict[str, list[float]], kind: str) -> tuple[Line, ...]:
    return tuple(
        Line(p, series[f"{kind}_{p}"], colour)
        for p, colour in zip(PERCENTILES, _LINE_COLOURS, strict=True)
    )


def _percent(share: float) -> str:
    return f"{share * 100:.3g}%"


def _wrap(body: str) -> str:
    return f'<div class="mjq" style="font-variant-numeric:tabular-nums">{body}</div>'
