"""The overview: every queue of a database live, one row each, a click opens its dashboard.

``mjq_notebook.overview(db)`` (and the page ``mjq dashboard`` serves). One background thread,
``mjq-overview-<db>``, reads ``queues(db)`` (see ``mjq_notebook.core.catalog`` for what one read
costs) at most ``1 / READ_EVERY_S`` times a second, and never spends more than a third of its
time reading (it waits twice as long as the last read took), so a database with many queues
is read less often, not harder. It only assigns widget traits. A queue created meanwhile
appears at the next read; a queue dropped goes. The sparkline of each row is the jobs finished
per ``SPARK_STEP_S`` seconds, from the difference of successive reads of the counts.

Clicking a queue's name opens its ``Dashboard`` below the table (one at a time): opening
another, or Close, closes the one open with its threads. While the server is away the rows
stay, dimmed, under "reconnecting…"; the thread backs off and tries again.

``actor`` (None: this notebook's user; a page passes ``Actor.page()``) is handed to every
dashboard it opens: their actions are recorded with it, and a read-only one's dashboards
show everything with no action control; the heading then says "read-only".
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import pymongo
from pymongo.errors import PyMongoError

from ...core.catalog import HEADS, queue_cells, queues
from ...core.outage import Backoff, failure_reason
from ...errors import JobQueueError
from ...text import printable
from .. import display
from ..display import escape
from .acting import actor_or_here, read_only_html
from .charts import SUCCESS
from .lifecycle import Lifecycle

if TYPE_CHECKING:
    from pymongo.database import Database

    from ...core.audit import Actor
    from .dashboard import Dashboard

log = logging.getLogger("mjq_notebook")

READ_EVERY_S = 0.5  # at most two reads of the catalog a second
READ_TIMEOUT_S = 5.0  # one read gives up after this (then "reconnecting…")
SPARK_STEP_S = 10.0  # the sparkline: jobs finished per 10 s ...
SPARK_STEPS = 30  # ... over the last 5 minutes
MAX_ROWS = 200  # rows shown; more are counted in a line under the table
NAME_WIDTH = "200px"
SPARK_WIDTH = 120
FINISHED = ("done", "failed", "cancelled")


class FinishedRate:
    """Jobs finished per ``step`` seconds over the last ``steps`` steps, from successive
    reads of a queue's counts (the difference of done + failed + cancelled)."""

    def __init__(self, step: float = SPARK_STEP_S, steps: int = SPARK_STEPS) -> None:
        self.step = step
        self.counts: deque[int] = deque([0] * steps, maxlen=steps)
        self._total: int | None = None
        self._bucket: int | None = None

    def add(self, row: Mapping[str, Any], now: float) -> None:
        total = sum(int(row.get(name) or 0) for name in FINISHED)
        bucket = int(now // self.step)
        if self._bucket is not None:
            for _ in range(min(max(bucket - self._bucket, 0), self.counts.maxlen or 0)):
                self.counts.append(0)
        if self._total is not None and total > self._total:
            self.counts[-1] += total - self._total
        self._total, self._bucket = total, bucket


def spark_svg(counts: Sequence[int], width: int = SPARK_WIDTH, height: int = 22) -> str:
    """A small line of ``counts`` (oldest first) scaled to its peak, with a title."""
    peak = max(counts, default=0)
    n = max(len(counts) - 1, 1)
    points = " ".join(
        f"{i * width / n:.1f},{height - 2 - (c / peak if peak else 0) * (height - 4):.1f}"
        for i, c in enumerate(counts)
    )
    title = (
        f"jobs finished per {SPARK_STEP_S:g} s over the last "
        f"{SPARK_STEP_S * len(counts) / 60:g} min (peak {peak:,})"
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'role="img" style="display:block">'
        f"<title>{escape(title)}</title>"
        f'<polyline points="{points}" style="fill:none;stroke:{SUCCESS};stroke-width:1.5"/>'
        "</svg>"
    )


def row_html(row: Mapping[str, Any]) -> str:
    """A queue's counters: status badges, finished in 10 min, oldest waiting, paused,
    workers (every value escaped)."""
    cells = queue_cells(row)
    counts = {name: row.get(name) or 0 for name in ("waiting", "working", "done", "failed")}
    counts.update({n: row.get(n) or 0 for n in ("cancelled", "lost") if row.get(n)})
    paused = '<span class="mjq-badge mjq-s-waiting">paused</span> ' if row.get("paused") else ""
    facts = " · ".join(
        f"{HEADS.get(name, name)}{':' * (name == 'workers')} {cells[name]}"
        for name in ("finished_10min", "oldest_waiting_s", "workers")
    )  # "workers: 0 running, 1 lost"
    return _wrap(
        f"{paused}{display.counts_html(counts)}"
        f'<div class="mjq-dim" style="font-size:11px">{escape(facts)}</div>'
    )


class Overview(Lifecycle, widgets.VBox):
    """Every queue of ``db`` live; ``select(name)`` (or a click on its name) opens its
    dashboard below, ``unselect()`` (or Close) closes it. ``close()`` stops everything.

    ``.rows`` maps queue names to their row widgets; ``.dashboard`` is the open ``Dashboard``
    (or None) and ``.selected`` its queue's name; ``.actor`` acts in the dashboards.
    """

    def __init__(
        self,
        db: Database,
        *,
        queue: str | None = None,
        actor: Actor | None = None,
        **kwargs: Any,
    ) -> None:
        self.db = db
        self.actor = actor_or_here(actor)
        self.rows: dict[str, _Row] = {}
        self.rates: dict[str, FinishedRate] = {}
        self.dashboard: Dashboard | None = None
        self.selected: str | None = None
        self._lock = threading.Lock()  # the rows: the thread adds them, clicks read them
        self._poller: _Poller | None = None
        self._read_at = 0.0  # when the rows were last read (epoch seconds)
        self.state = widgets.HTML(_caption("reading the queues…"))
        self.table = widgets.VBox()
        self.more = widgets.HTML()
        self.detail_title = widgets.HTML()
        self.close_button = widgets.Button(
            description="Close",
            icon="times",
            tooltip="close this dashboard (its threads stop)",
            layout={"width": "auto", "display": "none"},
        )
        self.close_button.on_click(lambda _b: self.unselect())
        self.detail = widgets.VBox()
        note = f"<div>{read_only_html(self.actor)}</div>" if self.actor.read_only else ""
        heading = widgets.HTML(
            display.stylesheet()
            + _wrap(f"<div class='mjq-h'>Queues in <code>{escape(printable(db.name))}</code></div>")
            + (_wrap(note) if note else "")
        )
        super().__init__(
            [heading, self.state, self.table, self.more,
             widgets.HBox([self.detail_title, self.close_button]), self.detail],
            layout=kwargs.pop("layout", widgets.Layout(width="100%", max_width="1000px")),
            **kwargs,
        )  # fmt: skip
        self.add_class("mjq-overview")  # the dashboard page widens it (cli/web/page's template)
        self._follow_views()
        self._opened()
        self._start()
        if queue is not None:
            self.select(queue)

    # -- life --------------------------------------------------------------------------------

    def _start(self) -> None:
        if self._poller is None and not self._closed:
            self._poller = _Poller(self)

    def _stop(self) -> None:
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.stop()

    def _no_longer_shown(self) -> None:
        self._stop()

    def _shown_again(self) -> None:
        self._start()

    def _halt(self) -> None:
        self._stop()
        self.unselect()

    # -- the open dashboard ------------------------------------------------------------------

    def select(self, name: str) -> None:
        """Open the dashboard of queue ``name`` below the table (closing the one open)."""
        from ...core.queue import JobQueue
        from .dashboard import Dashboard

        if self._closed or (name == self.selected and self.dashboard is not None):
            return
        self.unselect()
        try:
            board = Dashboard(JobQueue.open(self.db, name), actor=self.actor)
        except (JobQueueError, PyMongoError) as exc:  # dropped meanwhile, or the server away
            self.detail_title.value = _caption(
                f"can't open {printable(name)}: {failure_reason(exc)}"
            )
            return
        self.dashboard, self.selected = board, name
        self.detail_title.value = _wrap(
            f"<div class='mjq-h'>Dashboard of <code>{escape(printable(name))}</code></div>"
        )
        self.close_button.layout.display = None
        self.detail.children = [board]
        self._mark_selected()

    def unselect(self) -> None:
        """Close the open dashboard, if any (its subscription and threads stop)."""
        board, self.dashboard, self.selected = self.dashboard, None, None
        self.detail.children = []
        self.detail_title.value = ""
        self.close_button.layout.display = "none"
        if board is not None:
            board.close()
        self._mark_selected()

    def _mark_selected(self) -> None:
        with self._lock:
            rows = dict(self.rows)
        for name, row in rows.items():
            row.button.button_style = "info" if name == self.selected else ""

    # -- drawing (on the poller's thread) ----------------------------------------------------

    def _show(self, rows: Sequence[Mapping[str, Any]], now: float) -> None:
        """A fresh read: update the rows that changed, add new queues, drop gone ones."""
        names = [row["queue"] for row in rows]
        self._read_at = now
        with self._lock:
            for row in rows[:MAX_ROWS]:
                name = row["queue"]
                self.rates.setdefault(name, FinishedRate()).add(row, now)
                if name not in self.rows:
                    self.rows[name] = _Row(self, name)
                self.rows[name].update(row, self.rates[name])
            for gone in set(self.rows) - set(names[:MAX_ROWS]):
                self.rows.pop(gone).close()
                self.rates.pop(gone, None)
            children = tuple(self.rows[name].widget for name in names[:MAX_ROWS])
        with self.hold_sync():
            if children != self.table.children:
                self.table.children = children
                self._mark_selected()
            self.table.layout.opacity = None
            more = len(names) - MAX_ROWS
            self.more.value = _caption(f"and {more:,} more queues") if more > 0 else ""
            state = "no queues yet: `mjq pub --queue NAME` or JobQueue(db, NAME) makes one"
            self._set_state(_caption(state) if not names else "")

    def _show_outage(self, reason: str) -> None:
        read = time.strftime("%H:%M:%S", time.gmtime(self._read_at)) if self._read_at else ""
        self.table.layout.opacity = "0.45"
        stale = f"<span class='mjq-dim' style='font-size:11px'>as of {read} UTC</span>" * bool(read)
        self._set_state(
            _wrap(f"<div class='mjq-warn'>reconnecting…: {escape(reason)}</div>{stale}")
        )

    def _set_state(self, value: str) -> None:
        if self.state.value != value:
            self.state.value = value

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self.rows)} queues"
        return f"<Overview {printable(self.db.name)} ({state})>"


class _Row:
    """One queue's row: its name (a button that opens its dashboard), counters, sparkline."""

    def __init__(self, overview: Overview, name: str) -> None:
        shown = printable(name)
        self.button = widgets.Button(
            description=shown if len(shown) <= 28 else shown[:27] + "…",
            tooltip=f"open the dashboard of {shown}",
            layout=widgets.Layout(width=NAME_WIDTH, flex="0 0 auto"),
        )
        ref = weakref.ref(overview)  # the overview holds its rows: no cycle through a click
        self.button.on_click(lambda _b: _select(ref, name))
        self.counters = widgets.HTML(layout=widgets.Layout(flex="1 1 auto", min_width="0"))
        self.spark = widgets.HTML(layout=widgets.Layout(flex="0 0 auto"))
        self.widget = widgets.HBox(
            [self.button, self.counters, self.spark],
            layout=widgets.Layout(align_items="center", border_bottom="1px solid #8884"),
        )
        self.widget.add_class("mjq-overview-row")

    def update(self, row: Mapping[str, Any], rate: FinishedRate) -> None:
        counters, spark = row_html(row), _wrap(spark_svg(list(rate.counts)))
        if counters != self.counters.value:
            self.counters.value = counters
        if spark != self.spark.value:
            self.spark.value = spark

    def close(self) -> None:
        for part in (self.button, self.counters, self.spark, self.widget):
            part.close()


def _select(ref: weakref.ref, name: str) -> None:
    overview = ref()
    if overview is not None:
        overview.select(name)


class _Poller:
    """The overview's thread: reads the catalog and hands it over; holds the widget weakly,
    so an overview dropped without ``close()`` can still be collected (the thread then
    ends)."""

    def __init__(self, overview: Overview) -> None:
        self._overview = weakref.ref(overview)
        self._db = overview.db
        self._stop = threading.Event()
        self._backoff = Backoff(first=0.25, cap=5.0)
        name = f"mjq-overview-{overview.db.name}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(READ_TIMEOUT_S + 2)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                with pymongo.timeout(READ_TIMEOUT_S):
                    rows = queues(self._db)
                error = None
            except (PyMongoError, JobQueueError) as exc:  # + ServerUnavailable
                rows, error = None, failure_reason(exc)
            except Exception as exc:  # a bug of ours: say so, and don't spin
                log.exception("mjq: the overview of %s failed", self._db.name)
                rows, error = None, failure_reason(exc)
            overview = self._overview()
            if overview is None or self._stop.is_set():
                return
            try:
                if rows is None:
                    overview._show_outage(error or "unreachable")
                else:
                    overview._show(rows, time.time())
            except Exception:  # drawing must never kill the thread or reach the notebook
                log.exception("mjq: the overview of %s failed to draw", self._db.name)
            del overview
            if rows is None:
                self._backoff.wait(self._stop)
            else:
                self._backoff.reset()
                self._stop.wait(max(READ_EVERY_S, 2 * (time.monotonic() - started)))


def _caption(text: str) -> str:
    return _wrap(f"<span class='mjq-dim' style='font-size:11px'>{escape(text)}</span>")


def _wrap(body: str) -> str:
    return f'<div class="mjq" style="font-variant-numeric:tabular-nums">{body}</div>'
