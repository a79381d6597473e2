"""The history explorer: time range, status and group-by controls over ``summary()`` and
the latency plot, refreshed on demand.

Works on a queue (loads ``queue.history(...)``, filtered in MongoDB) or on a history frame
already in hand (``df.mjq.explore()``, filtered in pandas). The figure is made, saved to PNG
and dropped; it is never left open in pyplot, so nothing is drawn twice.
"""

from __future__ import annotations

import io
import sys
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ...core.job import STATUSES
from .. import display
from .lifecycle import Lifecycle

if TYPE_CHECKING:
    import pandas as pd

    from ...core.audit import Actor
    from ...core.queue import JobQueue

# label -> the pandas duration that far back ("all": no bound)
SINCE = {"last 15 min": "15min", "last hour": "1h", "last day": "1D", "all": "all"}
NONE = "none"  # the "don't group" choice of ``by`` (data columns are all "data…")
MAX_GROUP_COLUMNS = 40  # data.* columns offered in ``by``
_ERROR = "color:var(--jp-error-color1,#d32f2f)"
_MUTED = "color:var(--jp-ui-font-color2,#757575)"


class Explorer(Lifecycle, widgets.VBox):
    """Explore job history: pick a time range, statuses and a grouping, press Refresh.

    ``Explorer(queue)`` reads the queue's history; ``Explorer(frame=df)`` works on a history
    frame (``queue.history()``'s shape) without a server. Errors show in ``message``.
    It takes no action, so ``actor`` (accepted as the other widgets take it) changes nothing.
    """

    def __init__(
        self,
        queue: JobQueue | None = None,
        frame: pd.DataFrame | None = None,
        *,
        since: str | None = None,
        actor: Actor | None = None,
        **kwargs: Any,
    ) -> None:
        if (queue is None) == (frame is None):
            raise TypeError("Explorer needs a queue or a history frame (frame=...), not both")
        self.queue = queue
        self.actor = actor  # who looks: it only reads, so a viewer sees the same explorer
        self.source = frame
        self.frame: pd.DataFrame | None = None  # what the last refresh loaded
        since = since or ("last day" if queue is not None else "all")
        self.since = widgets.Dropdown(
            options=list(SINCE),
            value=since,
            description="since",
            tooltip="Only jobs created within this time (by their creation time)",
            layout=widgets.Layout(width="190px"),
            style={"description_width": "40px"},
        )
        self.status = widgets.SelectMultiple(
            options=list(STATUSES),
            value=list(STATUSES),
            rows=len(STATUSES),
            description="status",
            tooltip="Only jobs in these states (ctrl/shift-click for several; none: all)",
            layout=widgets.Layout(width="190px"),
            style={"description_width": "40px"},
        )
        self.by = widgets.Dropdown(
            options=[NONE, "status", "worker"],
            value=NONE,
            description="group by",
            tooltip="One table section per value of this column (data.* columns of the jobs)",
            layout=widgets.Layout(width="260px"),
            style={"description_width": "60px"},
        )
        self.refresh_button = widgets.Button(
            description="Refresh",
            icon="refresh",
            button_style="primary",
            tooltip="Load the history again with these settings",
        )
        self.message = widgets.HTML()
        # stretched, not width 100%: 100% plus the widget's 2 px margins overflowed the
        # explorer (a 957 px box in a 953 px output, with a scrollbar under it)
        self.table = widgets.HTML(layout=widgets.Layout(align_self="stretch", overflow="auto"))
        self.plot = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.refresh_button.on_click(lambda _: self.refresh())
        self.by.observe(lambda _: self._render_table(), names="value")
        left = widgets.VBox([self.since, self.by, self.refresh_button])
        controls = widgets.HBox(
            [left, self.status],
            layout=widgets.Layout(flex_flow="row wrap", align_items="flex-start"),
        )
        super().__init__(
            [controls, self.message, self.table, self.plot],
            layout=kwargs.pop("layout", widgets.Layout(width="100%", max_width="1000px")),
            **kwargs,
        )
        self._opened()
        self.refresh()

    # -- loading -----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Load the history with the current settings, then redraw the table and the plot.

        Never raises: a failure (server away, a frame without the columns) is shown inline.
        """
        self.refresh_button.disabled = True
        self._note("loading…", _MUTED)
        try:
            frame = self._load()
            _check_columns(frame)
        except Exception as exc:
            self._note(f"couldn't load the history: {type(exc).__name__}: {exc}", _ERROR)
            return
        finally:
            self.refresh_button.disabled = False
        self.frame = frame
        with self.hold_sync():
            self._offer_groups(frame)
            self._note(_loaded(frame, self.since.value), _MUTED)
            self._render_table()
            self._render_plot()

    def _statuses(self) -> list[str] | None:
        chosen = list(self.status.value)
        return None if not chosen or len(chosen) == len(STATUSES) else chosen

    def _load(self) -> pd.DataFrame:
        since = SINCE[self.since.value]
        bound = None if since == "all" else since
        statuses = self._statuses()
        if self.queue is not None:
            return self.queue.history(since=bound, status=statuses)
        import pandas as pd

        frame = self.source
        assert frame is not None  # __init__ takes a queue or a frame
        if bound is not None:
            now = pd.Timestamp.now(tz="UTC")
            frame = frame[frame["created"] >= now - pd.Timedelta(bound)]
        if statuses is not None:
            frame = frame[frame["status"].astype(object).isin(statuses)]
        return frame

    def _offer_groups(self, frame: pd.DataFrame) -> None:
        """Offer ``by`` the loaded frame's groupable data columns; keep the choice if it stays."""
        options = [NONE, "status", "worker", *_group_columns(frame)]
        current = self.by.value
        if list(self.by.options) != options:
            with self.by.hold_trait_notifications():
                self.by.options = options
                self.by.value = current if current in options else NONE

    # -- drawing -----------------------------------------------------------------------------

    def _render_table(self) -> None:
        if self.frame is None:
            return
        by = None if self.by.value == NONE else self.by.value
        try:
            from ...analysis.timing import summary

            table = summary(self.frame, by)
            self.table.value = display.summary_html(table)
        except Exception as exc:
            self.table.value = ""
            self._note(f"couldn't summarise by {by}: {type(exc).__name__}: {exc}", _ERROR, True)

    def _render_plot(self) -> None:
        if self.frame is None:
            return
        try:
            self.plot.value = latency_png(self.frame)
        except Exception as exc:
            self.plot.value = b""
            self._note(f"couldn't draw the plot: {type(exc).__name__}: {exc}", _ERROR, True)

    def _note(self, text: str, style: str, append: bool = False) -> None:
        line = f"<div style='{style};font-size:12px'>{display.escape(text)}</div>"
        self.message.value = (self.message.value if append else "") + line

    def __repr__(self) -> str:
        rows = "not loaded" if self.frame is None else f"{len(self.frame):,} jobs"
        where = f"{self.queue.db.name}.{self.queue.name}" if self.queue is not None else "frame"
        return f"<Explorer {where}: {rows}>"


def latency_png(frame: pd.DataFrame) -> bytes:
    """``plot_latency(frame)`` as PNG bytes; the figure is closed, never left in pyplot."""
    from ...analysis.plots import plot_latency

    before = _pyplot_figures()
    try:
        fig = plot_latency(frame)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=96)
        return buffer.getvalue()
    finally:
        # A figure made through pyplot is remembered there (and drawn again at the end of the
        # cell): forget any this call made, also when drawing failed half-way.
        pyplot = sys.modules.get("matplotlib.pyplot")
        if pyplot is not None:
            for number in set(pyplot.get_fignums()) - before:
                pyplot.close(number)


def _pyplot_figures() -> set[int]:
    pyplot = sys.modules.get("matplotlib.pyplot")
    return set() if pyplot is None else set(pyplot.get_fignums())


def _check_columns(frame: pd.DataFrame) -> None:
    from ...analysis.history import HistoryAccessor

    missing = [name for name in HistoryAccessor.required if name not in frame.columns]
    if missing:
        raise ValueError(f"not a job history frame: no column(s) {missing}")


def _group_columns(frame: pd.DataFrame) -> list[str]:
    """data.* columns whose values can form groups (no lists or documents)."""
    columns: list[str] = []
    for name in frame.columns:
        if not str(name).startswith("data") or len(columns) >= MAX_GROUP_COLUMNS:
            continue
        column = frame[name]
        if column.dtype == object and column.map(lambda v: isinstance(v, (list, dict))).any():
            continue
        columns.append(str(name))
    return columns


def _loaded(frame: pd.DataFrame, since: str) -> str:
    what = "jobs" if len(frame) != 1 else "job"
    return f"{len(frame):,} {what} ({since})"
