"""The dashboard: counters (with "paused" and Pause queue / Resume queue), a throughput
sparkline and a latency histogram (or, for a range above 10 min, charts from the rollups:
``ranges.py``, with "Oldest waiting"), the workers panel, over the live tail, the publish form,
the errors panel (failures grouped by error, ``errors_panel.py``) and the audit panel (who
did what, ``audit_panel.py``), in one layout that fits a notebook cell.

One subscription to the queue's shared ``Watcher`` feeds the header and the workers panel (the
tail subscribes to the same watcher); it asks for the pause flag and the workers, which the
watcher then reads on its clock. Two writers, each owning its widgets: the watcher's callback
sets the counters, the pause button and the workers; a small chart thread of this dashboard
redraws the SVG charts when the data changed (the histogram at most once a second) and slides
the sparkline's time axis while the queue is idle, and on its tick looks at the errors and
the audit. Both
stop on ``close()`` or when the dashboard is no longer shown anywhere.

Its actions, and those of its tail and form, go through its ``actor``'s Steering (recorded in
the audit); a read-only actor's dashboard has no Pause/Resume button and no publish form.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
from pymongo.errors import PyMongoError

from ...core.audit import Actor, Steering
from ...errors import ReadOnlyError, ServerUnavailable
from ...live.activity import Activity
from ...live.watch import Snapshot, Watcher
from .. import display
from ..display import escape
from .acting import actor_or_here, read_only_html, refused
from .audit_panel import AUDIT_TIP, AuditPanel
from .charts import histogram_svg, rebin, sparkline_svg
from .errors_panel import ERRORS_TIP, ErrorsPanel
from .lifecycle import Lifecycle
from .publisher import Publisher
from .ranges import RangeCharts
from .workers import WorkersView

if TYPE_CHECKING:
    from ...core.queue import JobQueue
    from ...live.watch import Subscription

log = logging.getLogger("mjq_notebook")

# The sparkline's span: the shortest of these that holds the jobs it knows of (so a queue
# that started a minute ago fills the picture), in 60 steps.
SPARK_WINDOWS_S = (60.0, 120.0, 300.0, 600.0)
SPARK_STEPS = 60
RATE_S = 60.0  # "jobs/s" in the caption: finished in the last minute
TICK_S = 1.0  # the chart thread looks at least this often (for the sparkline's time axis)
HEADER_RATE = 2.0  # snapshots a second for the header
PAUSE = ("Pause queue", "pause", "stop every worker taking jobs from this queue (running jobs "
         "finish; publishing goes on)")  # fmt: skip
RESUME = ("Resume queue", "play", "let workers take jobs again")
PAUSED_TEXT = "no worker takes a job from it (running ones finish; publishing goes on)"


class Dashboard(Lifecycle, widgets.VBox):
    """Counters, throughput and latency of ``queue`` live, over its tail and a publish form.

    ``.counters``, ``.sparkline`` and ``.histogram`` are HTML widgets (the charts inline SVG);
    ``.tail`` is a ``Tail`` and ``.publisher`` a ``Publisher`` (the tail's "copy to publish
    form" fills it; None for a read-only ``actor``), ``.errors_panel``
    the failures grouped by error (an ``ErrorsPanel``), ``.audit_panel`` the audit's newest
    entries. ``actor`` (None: this notebook's user) is who acts, passed on to the tail and the
    form. ``stop()`` freezes it on screen and ``start()`` resumes; ``close()`` stops
    everything it started and removes it.
    """

    def __init__(
        self, queue: JobQueue, *, actor: Actor | None = None, limit: int = 50, **kwargs: Any
    ) -> None:
        from .tail import Tail  # the tail's module needs anywidget: import it with the widget

        self.queue = queue
        self.actor = actor_or_here(actor)
        self.steering = Steering(queue, self.actor)  # Pause/Resume queue goes through it
        read_only = self.actor.read_only
        self.watcher = Watcher.of(queue)
        self._audit = AuditPanel(queue)
        self._subscription: Subscription | None = None
        self._charts: _ChartThread | None = None
        self._stopped = False  # stop() called: stay still even when shown again
        self._histogram_of: tuple = ()  # the latency sample last drawn
        # The charts keep their drawn size (their labels stay 11 px) and wrap onto a line of
        # their own where the output is narrow; the counters take what is left, their badges
        # wrapping inside it. At 953 px all three fit on one line.
        self.counters = widgets.HTML(layout=widgets.Layout(flex="1 1 240px", min_width="0"))
        self.sparkline = widgets.HTML(
            layout=widgets.Layout(flex="0 0 auto", max_width="100%", margin="2px 16px 2px 2px")
        )
        self.histogram = widgets.HTML(layout=widgets.Layout(flex="0 0 auto", max_width="100%"))
        # the range picker and "Oldest waiting" above them; a range above 10 min hides them
        self.ranges = RangeCharts(queue, (self.sparkline, self.histogram), self._range_picked)
        # Pause queue stops the queue for every process; the tail's "Freeze view" only its
        # table. A viewer gets neither the button nor the publish form: a note says why.
        self.pause_queue_button: widgets.Button | None = None
        self.steer_message = widgets.HTML(_wrap(read_only_html(self.actor)) if read_only else "")
        if not read_only:
            self.pause_queue_button = widgets.Button(
                description=PAUSE[0], icon=PAUSE[1], tooltip=PAUSE[2], layout={"width": "auto"}
            )
            self.pause_queue_button.on_click(self._toggle_queue_pause)
        self.workers = WorkersView(styled=False)  # the stylesheet comes with the heading
        self.workers_panel = self.workers.widget
        self.tail = Tail(  # the header shows the counters, and that it is read-only
            queue, limit=limit, counters=False, actor=self.actor, read_only_note=False
        )
        self.tail.on_action(self._acted)
        self.publisher: Publisher | None = None
        if not read_only:
            self.publisher = Publisher(queue, actor=self.actor)
            self.tail.on_copy(self.publisher.load)
            self.publisher.on_publish(lambda _ids: self._acted())
        steer = [self.pause_queue_button, self.steer_message]
        left = widgets.VBox(
            [self.counters, widgets.HBox([part for part in steer if part is not None])],
            layout=widgets.Layout(flex="1 1 240px", min_width="0"),
        )
        self.counters.layout = widgets.Layout(min_width="0")
        header = widgets.HBox(
            [left, self.sparkline, self.histogram],
            layout=widgets.Layout(
                flex_flow="row wrap", align_items="flex-start", justify_content="space-between"
            ),
        )
        header = widgets.VBox([self.ranges.bar, header, self.ranges.charts])
        # The stylesheet goes once, in a widget that never changes; the live parts only
        # carry their classes, so each update is small.
        workers = widgets.HTML(display.stylesheet() + _heading("Workers"))
        self._render_charts(self.watcher.snapshot, force=True)
        self._render_counters(self.watcher.snapshot)
        self.workers.render(self.watcher.snapshot)
        self.audit_panel = self._audit.widget
        audit = widgets.HTML(_heading("Audit", AUDIT_TIP))
        self.errors_panel = ErrorsPanel(
            self.steering, self._show_query, self._acted, moved=self._failed_count
        )
        errors = [widgets.HTML(_heading("Errors", ERRORS_TIP)), self.errors_panel.widget]
        form = [] if self.publisher is None else [
            widgets.HTML(_heading("Publish a job")), self.publisher
        ]  # fmt: skip
        super().__init__(
            [
                header,
                workers,
                self.workers_panel,
                self.tail,
                *form,
                *errors,
                audit,
                self.audit_panel,
            ],
            layout=kwargs.pop(
                "layout", widgets.Layout(width="100%", max_width="1000px", overflow="hidden")
            ),
            **kwargs,
        )
        self.add_class("mjq-dashboard")  # the dashboard page widens it (cli/web/page's template)
        self._follow_views()
        self._opened()
        self._start()

    # -- life --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop following the queue and keep its state at this moment on screen, marked
        "stopped" (the queue's watcher thread ends with its last subscriber); ``start()``
        resumes."""
        if self._closed:
            return
        self._stopped = True
        self._stop()
        self.tail.pause_button.value = True  # the tail unsubscribes and says "paused"
        snapshot = self.watcher.snapshot
        try:  # the counts of this moment, not of the last refresh
            counts = self.queue.counts(warn=False)
        except (PyMongoError, ServerUnavailable):
            counts = None
        self._render_charts(snapshot, force=True)
        self.counters.value = counters_html(snapshot, stopped=True, counts=counts)

    def start(self) -> None:
        """Follow the queue again after ``stop()``."""
        if self._closed:
            return
        self._stopped = False
        self.tail.pause_button.value = False
        self._start()

    def _start(self) -> None:
        if self._subscription is None and not self._closed and not self._stopped:
            self._charts = _ChartThread(self)
            self._subscription = self.watcher.subscribe(self._on_snapshot, rate=HEADER_RATE)
            self._subscription.want(paused=True, workers=True)

    def _stop(self) -> None:
        subscription, self._subscription = self._subscription, None
        charts, self._charts = self._charts, None
        if subscription is not None:
            subscription.close()
        if charts is not None:
            charts.stop()

    def _no_longer_shown(self) -> None:
        """The last view went (its cell re-run or cleared): stop; ``_shown_again`` resumes."""
        self._stop()

    def _shown_again(self) -> None:
        self._start()

    def _snapshot_html(self) -> str:
        return display.queue_html(self.queue)  # the counts and newest jobs, as q shows them

    def _halt(self) -> None:
        """On ``close()``: stop the header's subscription and chart thread (the tail and the
        form close as parts of the dashboard)."""
        self._stop()

    # -- drawing -----------------------------------------------------------------------------

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        """On the watcher's thread: counters and workers now, the charts on the chart
        thread."""
        self._render_counters(snapshot)
        self.workers.render(snapshot)
        charts = self._charts
        if charts is not None:
            charts.wake()

    def _render_counters(self, snapshot: Snapshot) -> None:
        value = counters_html(snapshot)
        if value != self.counters.value:
            self.counters.value = value
        if snapshot.paused is not None and self.pause_queue_button is not None:
            description, icon, tip = RESUME if snapshot.paused else PAUSE
            if self.pause_queue_button.description != description:
                button = self.pause_queue_button
                button.description, button.icon, button.tooltip = description, icon, tip

    def _toggle_queue_pause(self, _button: Any = None) -> None:
        """Pause queue / Resume queue, as the button says now (what the user saw)."""
        button = self.pause_queue_button
        pausing = not self.watcher.snapshot.paused if button is None else (
            button.description == PAUSE[0]
        )  # fmt: skip
        action = "pause" if pausing else "resume"
        try:
            self.steering.pause() if pausing else self.steering.resume()
        except ReadOnlyError:
            self.steer_message.value = _caption(refused(action))
            return
        except Exception as exc:  # shown, never raised into the notebook
            self.steer_message.value = _caption(f"could not {action}: {type(exc).__name__}")
            return
        self.steer_message.value = ""
        self.watcher.poke("paused")  # the badge and the button follow the flag as read
        self._acted()

    def _acted(self) -> None:
        """After an action from this dashboard: the counts and the audit panel follow."""
        self.watcher.poke()
        charts = self._charts
        if charts is not None:
            self._audit.due()
            self.errors_panel.due()
            charts.wake()
        elif not self._closed:  # stopped: no thread to do it, so here on the kernel's
            self._audit.refresh(force=True)
            self.errors_panel.refresh(force=True)

    def _range_picked(self) -> None:
        """A range was chosen: the chart thread reads it now (stopped: read here)."""
        if self._charts is not None:
            self._charts.wake()
        else:
            self.ranges.tick()

    def _failed_count(self) -> int | None:
        """The failed jobs, as the watcher last counted them (the errors panel regroups when
        this moved)."""
        counts = self.watcher.snapshot.counts
        return counts.get("failed") if counts else None

    def _show_query(self, query: str) -> None:
        """The tail shows the jobs of ``query`` (an error group's, from the errors panel)."""
        self.tail.search.value = query

    def _render_charts(self, snapshot: Snapshot, *, force: bool = False) -> None:
        """Redraw what changed: the sparkline when its text differs (its time axis slides
        with the clock), the histogram when the latency sample did; neither while a longer
        range hides them."""
        if not (self.ranges.live or force):
            return
        spark = sparkline_html(snapshot.activity, time.time())
        if spark != self.sparkline.value:
            self.sparkline.value = spark
        latency = (snapshot.activity.wait_s, snapshot.activity.run_s)
        if force or latency != self._histogram_of:
            self._histogram_of = latency
            self.histogram.value = histogram_html(snapshot.activity)

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.watcher.snapshot.state
        return f"<Dashboard {self.queue.db.name}.{self.queue.name} ({state})>"


class _ChartThread:
    """Redraws a dashboard's charts off the watcher's thread; holds it only weakly, so a
    dashboard dropped without ``close()`` can still be collected (the thread then ends)."""

    def __init__(self, dashboard: Dashboard) -> None:
        self._dashboard = weakref.ref(dashboard)
        self._stop = threading.Event()
        self._wake = threading.Event()
        name = f"mjq-dashboard-{dashboard.queue.name}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(TICK_S)
            self._wake.clear()
            dashboard = self._dashboard()
            if dashboard is None or self._stop.is_set():
                return
            try:
                dashboard._render_charts(dashboard.watcher.snapshot)
                dashboard._audit.refresh()
                dashboard.errors_panel.refresh()
                for part in (dashboard.tail, dashboard.publisher):  # messages go on time
                    if part is not None:
                        part.notice.tick()
                dashboard.ranges.tick()  # the oldest waiting age; a longer range's rollups
            except Exception:  # drawing must never kill the thread or reach the notebook
                log.exception("mjq: the dashboard's charts failed")
            del dashboard


# -- HTML of the header (plain functions of a snapshot, so they are easy to test) ------------


def counters_html(
    snapshot: Snapshot, *, stopped: bool = False, counts: dict[str, int] | None = None
) -> str:
    """Status badges (``counts``, else the snapshot's), and the watcher's state when it is
    not simply live (or that the dashboard was stopped). While reconnecting the badges are
    dimmed and say when they were read."""
    counts = snapshot.counts if counts is None else counts
    badges = display.counts_html(counts) if counts else "<span class='mjq-dim'>counting…</span>"
    if snapshot.paused:
        paused = f"<span class='mjq-badge mjq-s-paused' title='{escape(PAUSED_TEXT)}'>paused</span>"
        badges = f"<div>{paused} <span {_CAPTION}>{escape(PAUSED_TEXT)}</span></div>{badges}"
    small = _CAPTION
    if stopped:
        state = f"<span {small}>stopped: start() resumes</span>"
    elif snapshot.state == "live":  # the tail below says so; here only how it follows
        state = f"<span {small}>via {escape(snapshot.mode)}</span>"
    elif snapshot.state == "reconnecting":
        reason = f": {snapshot.message}" if snapshot.message else ""
        state = f"<div class='mjq-warn'>reconnecting…{escape(reason)}</div>"
        if counts and snapshot.counts_at:
            read = time.strftime("%H:%M:%S", time.gmtime(snapshot.counts_at))
            badges = (
                f"<div class='mjq-stale' style='opacity:.45' title='not current: the server "
                f"is unreachable'>{badges}</div><span {small}>as of {read} UTC</span>"
            )
    else:
        state = f"<span {small}>{escape(snapshot.state)}…</span>"
    return _wrap(f"{badges}<div>{state}</div>")


def spark_window(activity: Activity, now: float) -> float:
    """The shortest of ``SPARK_WINDOWS_S`` that reaches back to the oldest job in
    ``activity`` (created or finished)."""
    first = activity.end - len(activity.created)
    pairs = zip(activity.created, activity.finished, strict=True)
    oldest = next((first + i for i, (a, b) in enumerate(pairs) if a or b), now)
    return next((w for w in SPARK_WINDOWS_S if now - oldest <= w), SPARK_WINDOWS_S[-1])


def sparkline_html(activity: Activity, now: float) -> str:
    """Created and finished jobs per step over the last 1 to 10 minutes (as far back as the
    jobs go), with a caption.

    ``now`` is rounded up to the next step, so the picture (and the message sent to the
    browser) changes only when the data or the step does.
    """
    window = spark_window(activity, now)
    step = window / SPARK_STEPS
    now = math.ceil(now / step) * step
    made = rebin(activity.created, activity.end, now, window, step)
    done = rebin(activity.finished, activity.end, now, window, step)
    svg = sparkline_svg(made, done, window=window, step=step, width=280)
    per_s = sum(rebin(activity.finished, activity.end, now, RATE_S, 1.0)) / RATE_S
    caption = f"last {window / 60:g} min · {per_s:.1f} jobs/s finished (last {RATE_S:g} s)"
    return _wrap(f"<div {_CAPTION}>{escape(caption)}</div>{svg}")


def histogram_html(activity: Activity) -> str:
    """Wait and run times of the newest finished jobs (up to ``LATENCY_JOBS`` of
    ``mjq_notebook.activity``)."""
    svg = histogram_svg(activity.wait_s, activity.run_s, width=330)
    jobs = len(activity.run_s)
    caption = f"latency of the last {jobs:,} finished job{'' if jobs == 1 else 's'}"
    return _wrap(f"<div {_CAPTION}>{escape(caption)}</div>{svg}")


_CAPTION = "class='mjq-dim' style='font-size:11px'"


def _caption(text: str) -> str:
    return _wrap(f"<span {_CAPTION}>{escape(text)}</span>")


def _heading(text: str, caption: str = "") -> str:
    small = f" <span {_CAPTION}>{escape(caption)}</span>" if caption else ""
    return _wrap(f"<div class='mjq-h' style='margin-top:8px'>{escape(text)}{small}</div>")


def _wrap(body: str) -> str:
    # tabular figures: counts and rates keep their width as their digits change
    return f'<div class="mjq" style="font-variant-numeric:tabular-nums">{body}</div>'
