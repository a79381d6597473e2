"""``Tail``: the queue's newest jobs as a live table, with filters, detail, the selected job's
actions (retry, cancel, run now, release; ``actions.py``), actions on every match of the
search query (``bulk_actions.py``) and a compact workers panel. A working job whose worker
the registry says is lost reads "working · worker lost" (the watcher's ``lost_workers``,
read while working jobs are in view, panel open or not).

The table is an anywidget (``JobTable``) whose state is a list of rows keyed by job id; its
JavaScript patches rows in place, so the user's scroll and selection survive updates. The
controls are ipywidgets core widgets, so tests drive them headless.

Threads: the queue's shared ``Watcher`` calls ``_on_snapshot`` on its own thread, which is
the only writer of the live parts (rows, state, counters, and the detail of the selected job
while it changes). Button and selection handlers run on the kernel's thread; every write of
both sides goes through ``self._lock``, and a callback of a stale subscription (paused,
closed) writes nothing. Nothing here ever writes to the inputs the user edits.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import pathlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as W
import traitlets
from bson import ObjectId
from pymongo.errors import PyMongoError

from ...core.audit import Actor, Steering
from ...core.job import STATUSES, Job
from ...errors import JobQueueError, ServerUnavailable
from ...live.watch import Snapshot, Subscription, Watcher
from .. import display, markup
from .acting import actor_or_here, read_only_html
from .actions import JobActions, RequeueAll
from .bulk_actions import BulkActions
from .lifecycle import Lifecycle
from .notice import Notice, left
from .rows import RowCache, _as_id, counters_html, in_sight, state_text
from .rows import worker_lost as _worker_lost
from .search import QueryBox
from .workers import WorkersView

try:
    import anywidget
except ImportError as exc:  # pragma: no cover - a dependency; say what to install
    raise ImportError(
        "the live tail needs anywidget (a dependency of mjq-notebook): pip install anywidget"
    ) from exc

if TYPE_CHECKING:
    from ...core.queue import JobQueue

log = logging.getLogger("mjq_notebook")

_STATIC = pathlib.Path(__file__).parent / "_static"
LIVE_RATE = 10.0  # table updates a second at most, rows from the watcher's window
QUERY_RATE = 2.0  # with a status filter or a search, re-reads of the queue a second at most
PREVIEW_WIDTH = 80
FREEZE = ("Freeze view", "pause")  # the view-pause button's label and icon, and frozen:
RESUME = ("Resume view", "play")
FREEZE_TIP = "stops updating this table; the queue keeps running"


class JobTable(anywidget.AnyWidget):
    """The tail's table: ``rows`` (dicts of strings keyed by ``"id"``), ``selected`` (a job
    id, set by a click) and ``state`` ("live", "paused": the view is frozen, "reconnecting…:
    why")."""

    _esm = _STATIC / "tail.js"
    _css = _STATIC / "tail.css"
    rows = traitlets.List(traitlets.Dict()).tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    state = traitlets.Unicode("connecting…").tag(sync=True)
    # the kernel's clock (unix ms) when ``rows`` were sent: the front end counts a row's
    # live cell (a wait or run going on, a delay running out) on from its ``live_from``
    # every second, by this clock, so the table moves while nothing is sent
    now = traitlets.Float(0.0).tag(sync=True)

    def __repr__(self) -> str:
        return f"<JobTable {len(self.rows)} rows, {self.state}>"


class Tail(Lifecycle, W.VBox):
    """The newest ``limit`` jobs of ``queue``, live. See the module docstring.

    Its actions go through one ``Steering`` by ``actor`` (None: this notebook's user): each
    is recorded in the queue's audit. A read-only actor's tail shows everything but has no
    action control, and a note says so (unless ``read_only_note=False``)."""

    def __init__(self, queue: JobQueue, limit: int = 50, *, counters: bool = True,
                 actor: Actor | None = None, read_only_note: bool = True) -> None:  # fmt: skip
        self.queue = queue
        self.actor = actor_or_here(actor)
        self.steering = Steering(queue, self.actor)  # every action goes through it
        self.limit = int(limit)
        self._show_counters = counters  # off in a dashboard, whose header shows them
        self.watcher = Watcher.of(queue)
        self._lock = threading.RLock()
        self._sub: Subscription | None = None
        self._token: object | None = None  # identifies the current subscription's callback
        self._answering = self._again = False  # a filter's answer being read; another wanted
        self._answer: threading.Thread | None = None
        self._status: str | None = None  # the filter and search as the watcher thread reads them
        self._match: dict[str, Any] = {}  # the search's last good query, compiled
        self._shown: dict[str, Job] = {}  # jobs in the rows, by id string
        self._rows = RowCache()
        self._detail_job: Job | None = None
        self._detail_lost = False  # the detail's job runs on a worker the registry says is lost
        self._copy_callbacks: list[Callable[[Any], None]] = []
        self._action_callbacks: list[Callable[[], None]] = []

        self.table = JobTable()
        self.status_filter = W.Dropdown(
            options=["all", *STATUSES], value="all", description="status", layout={"width": "11em"}
        )
        self.status_filter.style.description_width = "auto"
        self.query_box = QueryBox(queue)  # the job query language, its mistakes under it
        self.search = self.query_box.text  # .value: the query's text
        # It freezes this view only: the queue (and the dashboard's counters) keep going,
        # which a bare "Pause" beside a queue's counters does not say.
        self.pause_button = W.ToggleButton(
            description=FREEZE[0], icon=FREEZE[1], tooltip=FREEZE_TIP, layout={"width": "auto"}
        )
        # the compact workers panel, read (every few seconds) only while it is shown
        self.workers_button = W.ToggleButton(
            description="Workers", icon="server", tooltip="show who works this queue",
            layout={"width": "auto"},
        )  # fmt: skip
        self.workers_view = WorkersView(compact=True, display="none")
        self.counters = W.HTML(layout={} if counters else {"display": "none"})
        self.message = W.HTML()
        self.notice = Notice(self.message)  # its messages go after a while, or when untrue
        self.detail = W.HTML()
        # a read-only viewer's tail makes none of the action controls (each is None then)
        read_only = self.actor.read_only
        self.actions = JobActions(self.steering, self._say, self._after_action)
        self.requeue_button = self.actions.requeue_button
        fit = {"width": "auto"}  # buttons are 148 px by default: the labels would be cut
        self.copy_button = None if read_only else W.Button(
            description="Copy to publish form", icon="copy", disabled=True, layout=fit,
            tooltip="load the selected job's data into the publish form",
        )  # fmt: skip
        self.requeue_all = RequeueAll(
            self.steering, self._say, lambda: self.query_box.filter, self._acted
        )
        ra = self.requeue_all  # its parts, as tests and users knew them
        self.requeue_all_button, self.confirm_box = ra.button, ra.confirm_box
        self.confirm_label, self.confirm_button, self.cancel_button = ra.label, ra.yes, ra.no
        self.bulk_actions = BulkActions(self.steering, self.search, self._acted)  # every match
        note = read_only_html(self.actor) if read_only and read_only_note else ""
        self.read_only_note = W.HTML(markup.wrap(note) if note else "")
        parts = [
            W.HBox([self.status_filter, self.query_box, self.pause_button, self.workers_button]),
            self.read_only_note if note else None,
            self.counters,
            self.workers_view.widget,
            self.table,
            None
            if read_only
            else W.HBox([self.actions, self.requeue_all_button, self.copy_button]),
            self.confirm_box,
            self.bulk_actions.box,
            self.message,
            self.actions.panel,  # its note, the edit-and-retry editor
            self.detail,
        ]
        super().__init__([part for part in parts if part is not None])
        self.status_filter.observe(self._filter_changed, "value")
        self.query_box.on_change(self._filter_changed)
        self.pause_button.observe(self._pause_changed, "value")
        self.table.observe(self._selected_changed, "selected")
        self.workers_button.observe(self._workers_toggled, "value")
        if self.copy_button is not None:
            self.copy_button.on_click(self._copy)
        self._follow_views(self.table)
        self._opened()
        self._subscribe()

    # -- public -------------------------------------------------------------------------

    def select(self, job_id: ObjectId | str) -> None:
        """Show the job's detail (as a click on its row does)."""
        self.table.selected = str(job_id)

    def on_copy(self, callback: Callable[[Any], None], remove: bool = False) -> None:
        """Call ``callback(data)`` with the selected job's data on "Copy to publish form"."""
        if remove:
            self._copy_callbacks.remove(callback)
        else:
            self._copy_callbacks.append(callback)

    def on_action(self, callback: Callable[[], None], remove: bool = False) -> None:
        """Call ``callback()`` after each action taken from this tail changed the queue."""
        if remove:
            self._action_callbacks.remove(callback)
        else:
            self._action_callbacks.append(callback)

    def _snapshot_html(self) -> str:
        return display.queue_html(self.queue)  # the counts and newest jobs, as q shows them

    def _halt(self) -> None:
        """On ``close()``: stop following the queue (the watcher's thread ends with its last
        subscriber)."""
        self._unsubscribe()
        if self._answer is not None:
            self._answer.join(timeout=5)  # a read under way (bounded by its maxTimeMS)
        self._copy_callbacks.clear()
        self._action_callbacks.clear()

    def __repr__(self) -> str:
        return f"<Tail {self.queue.db.name}.{self.queue.name}: {self.table!r}>"

    # -- following the queue -------------------------------------------------------------

    def _subscribe(self) -> None:
        if self._closed:
            return
        token = object()
        with self._lock:
            if self._sub is not None:
                return
            self._token = token
            self._status, self._match = self._filter()
        sub = self.watcher.subscribe(
            functools.partial(self._on_snapshot, token), window=self.limit, rate=self._rate()
        )
        with self._lock:
            if self._token is token:
                self._sub = sub
                sub.follow(_as_id(self.table.selected))
                sub.want(lost_workers=True)  # a lost worker's job says so in its row
                self._want_workers()
                return
        sub.close()  # paused or closed meanwhile

    def _unsubscribe(self) -> None:
        with self._lock:
            sub, self._sub, self._token = self._sub, None, None
        if sub is not None:
            sub.close()  # outside the lock: it may wait for a callback that wants the lock

    def _filter(self) -> tuple[str | None, dict[str, Any]]:
        return (None if (s := self.status_filter.value) == "all" else s), self.query_box.filter

    def _rate(self) -> float:
        return LIVE_RATE if self._status is None and not self._match else QUERY_RATE

    def _on_snapshot(self, token: object, snapshot: Snapshot) -> None:
        """On the watcher's thread: the rows, state and counters for ``snapshot``."""
        with self._lock:
            if token is not self._token:
                return
            status, match = self._status, self._match
        jobs = self._jobs_for(snapshot, status, match)
        now = dt.datetime.now(dt.timezone.utc)
        lost = snapshot.lost_workers
        rows = None if jobs is None else self._rows.rows(jobs, now, lost)
        show_counts = self._show_counters and snapshot.counts
        counters = counters_html(snapshot.counts) if show_counts else None
        with self._lock:
            if token is not self._token or (status, match) != (self._status, self._match):
                return  # the filter changed meanwhile: the answer to the new one shows
            with self.table.hold_sync():
                _assign(self.table, "state", state_text(snapshot))
                if rows is not None and rows != self.table.rows:
                    _assign(self.table, "rows", rows)
                    _assign(self.table, "now", now.timestamp() * 1000)
            if counters is not None:
                _assign(self.counters, "value", counters)
            if jobs is not None:
                self._shown = {str(job.id): job for job in jobs}
            if self.workers_button.value:
                self.workers_view.render(snapshot)
            selected = _as_id(self.table.selected)
            current = self._shown.get(self.table.selected) or snapshot.followed.get(selected)  # type: ignore[arg-type]  # None finds none
            gone = _worker_lost(current, lost)
            if current is not None and (current != self._detail_job or gone != self._detail_lost):
                self._show_detail(current, gone)
            elif gone:  # its note as of now: "claimable again from …", then "its lease ended"
                self.actions.show(current, gone)
        self.notice.tick()

    def _jobs_for(self, snapshot: Snapshot, status: str | None, match: dict) -> list[Job] | None:
        """The window, or (filtered, at QUERY_RATE) a read; None leaves the rows as they are."""
        if status is None and not match:
            return in_sight(snapshot.working, snapshot.jobs, self.limit)
        try:
            if not match:
                return list(self.queue.jobs(status=status, limit=self.limit))
            match = {"$and": [match, {"status": status}]} if status else match
            return list(self.queue.find(match, limit=self.limit))
        except (PyMongoError, ServerUnavailable, JobQueueError):
            return None  # the watcher reports an outage; a find stopped for its time, kept

    def _filter_changed(self, _change: Any = None) -> None:
        with self._lock:
            self._status, self._match = self._filter()
            sub = self._sub
        self.requeue_all.filtered(self._status)
        if sub is not None:  # answer now (a watcher awaiting a change may take 0.5 s), and again
            sub.rate = self._rate()
            self._answer_now()
            sub.resend()

    def _answer_now(self) -> None:
        """Answer a new filter at once on one short-lived thread; typing faster than a read
        makes it read once more for the latest filter, never a thread per keystroke."""
        with self._lock:
            self._again = self._answering
            if self._answering:
                return
            self._answering = True

        def answer() -> None:
            again = True
            while again:
                with self._lock:
                    token = self._token
                if token is not None:  # None: closed or frozen meanwhile
                    self._on_snapshot(token, self.watcher.snapshot)
                with self._lock:
                    again = self._again and self._token is not None
                    self._again, self._answering = False, again

        self._answer = threading.Thread(target=answer, name="mjq-tail-answer", daemon=True)
        self._answer.start()

    def _pause_changed(self, change: Any) -> None:
        """Freeze the view (the table shows "paused", the front end words it) or resume."""
        if change["new"]:
            self._unsubscribe()
            self.pause_button.description, self.pause_button.icon = RESUME
            with self._lock:
                _assign(self.table, "state", "paused")
        else:
            self.pause_button.description, self.pause_button.icon = FREEZE
            self._subscribe()

    def _no_longer_shown(self) -> None:
        """A tail no longer shown anywhere stops following the queue..."""
        self._unsubscribe()

    def _shown_again(self) -> None:
        """...and follows it again when shown, unless its view is frozen."""
        if not self.pause_button.value:
            self._subscribe()

    # -- selection and detail ------------------------------------------------------------

    def _selected_changed(self, change: Any) -> None:
        self._say("")  # the last action's message was about the job selected before
        job = self._shown.get(change["new"])
        job_id = _as_id(change["new"])
        if job is None and job_id is not None:
            try:
                job = self.queue.get(job_id)
            except (PyMongoError, ServerUnavailable) as exc:
                self._say(f"could not read job {change['new']}: {type(exc).__name__}")
                return
        with self._lock:
            if self.table.selected == change["new"]:
                self._show_detail(job, _worker_lost(job, self.watcher.snapshot.lost_workers))
            sub = self._sub
        if sub is not None:
            sub.follow(job_id)  # its detail stays live, shown in the rows or not

    def _show_detail(self, job: Job | None, lost: bool = False) -> None:
        """The detail pane and the buttons for ``job`` (None: nothing selected); ``lost``:
        its worker reads as lost. Call with ``self._lock`` held."""
        self._detail_job, self._detail_lost = job, lost
        html = "" if job is None else self.actions.detail_html(job, lost)
        _assign(self.detail, "value", html)
        self.actions.show(job, lost)
        if self.copy_button is not None:
            self.copy_button.disabled = job is None

    def _want_workers(self) -> None:
        """Have the watcher read the workers while the compact panel shows them (whether a
        working job's worker is lost comes with every snapshot: ``lost_workers``)."""
        if self._sub is not None:
            self._sub.want(workers=self.workers_button.value)

    def _workers_toggled(self, change: Any) -> None:
        self.workers_view.widget.layout.display = None if change["new"] else "none"
        with self._lock:
            self._want_workers()
            if change["new"]:
                self.workers_view.render(self.watcher.snapshot)

    def _selected_job(self) -> Job | None:
        with self._lock:
            return self._detail_job

    # -- actions -------------------------------------------------------------------------

    def _after_action(self, job_id: ObjectId) -> None:
        """After an action on the selected job: its detail as it is now, and a re-read."""
        try:
            fresh = self.queue.get(job_id)
        except (PyMongoError, ServerUnavailable):
            fresh = None  # the next snapshot shows it
        with self._lock:
            if fresh is not None and self._detail_job is not None and self._detail_job.id == job_id:
                self._show_detail(fresh, self._detail_lost and fresh.get("status") == "working")
        self._acted()

    def _acted(self) -> None:
        """An action changed the queue: a re-read, and the ``on_action`` listeners."""
        self.watcher.poke()
        _tell(self._action_callbacks)

    def _copy(self, _button: Any = None) -> None:
        job = self._selected_job()
        if job is not None:
            _tell(self._copy_callbacks, job.get("data"))

    def _say(self, text: str, about: tuple[ObjectId, str] | None = None) -> None:
        """The message line (``Notice``); ``about``: a job and the status an action gave it,
        the message going once it leaves that status."""
        until = None
        if about is not None:
            until = left(functools.partial(self._status_of, about[0]), about[1])
        html = f'<span class="mjq-dim">{display.escape(text)}</span>' if text else ""
        self.notice.say(html, until=until)

    def _status_of(self, job_id: ObjectId) -> Any:
        job = self.watcher.snapshot.followed.get(job_id) or self._shown.get(str(job_id))
        return None if job is None else job.get("status")


def _tell(callbacks: list[Callable[..., None]], *args: Any) -> None:
    """Call each of ``callbacks`` with ``args``; one broken callback must not stop the others
    (nor look like a failed action)."""
    for callback in list(callbacks):
        try:
            callback(*args)
        except Exception:
            log.exception("mjq: a %s callback failed", getattr(callback, "__name__", "tail"))


def _assign(widget: W.Widget, name: str, value: Any) -> None:
    """Set a trait only when it changes: an equal value sends nothing to the front end."""
    if getattr(widget, name) != value:
        setattr(widget, name, value)
