"""The dashboard's Errors panel: the queue's failures grouped by error (``q.errors()``), one
row per group (type, pattern, count, last seen, per-hour sparkline, workers), the newest
failures first. A group's button opens its jobs in the tail (the tail's search becomes
``group:<key>``) and offers "Retry all N" and "Cancel all N" for that group, each after a
confirmation that shows how many jobs it would change.

As the audit panel, it runs no thread of its own: the dashboard's chart thread calls
``refresh()`` on its tick; it looks every ``ERRORS_EVERY_S`` at most (or at once after an
action, ``due()``). A look costs nothing but the dashboard's count of failed jobs (as its
watcher last read it); the groups are aggregated again only when it moved. Row widgets are
made once and only their traits change. Its actions go through the dashboard's Steering
(recorded in the audit); a read-only viewer gets no action button (it can still open a group
in the tail).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import ipywidgets as W
import pymongo
from pymongo.errors import PyMongoError

from ...errors import JobQueueError, ReadOnlyError
from ...text import format_ago, jobs_text
from ..errors_table import sparkline, workers_text
from ..markup import escape, wrap
from .acting import refused

if TYPE_CHECKING:
    from ...core.audit import Steering

log = logging.getLogger("mjq_notebook")

ERROR_ROWS = 10  # groups shown
ERRORS_EVERY_S = 5.0  # a look at the counts at most this often, but after an action
READ_TIMEOUT_S = 5.0  # one look gives up after this (the watcher reports an outage)
ERRORS_TIP = f"failed jobs grouped by error, the {ERROR_ROWS} with the newest failures first"
_FIT = {"width": "auto"}


class ErrorsPanel:
    """``widget``: the groups of ``steering.queue``'s failures; ``open(key)`` (a group's
    button) calls ``show_query("group:<key>")`` and offers the group's actions.
    ``acted()`` is called after an action changed jobs. ``moved()`` returns something cheap
    that changes when failures may have (the dashboard's count of failed jobs; by default
    the collections' document counts); None means unknown: group again."""

    def __init__(
        self,
        steering: Steering,
        show_query: Callable[[str], None],
        acted: Callable[[], None],
        moved: Callable[[], Any] | None = None,
    ) -> None:
        self.steering = steering
        self.queue = steering.queue
        self._show_query = show_query
        self._acted = acted
        self._lock = threading.Lock()
        self._due = True
        self._looked = 0.0
        self._counts: Any = None
        self._moved = moved or self._documents
        self.groups: list[dict[str, Any]] = []
        self.selected: dict[str, Any] | None = None
        self._pending: str | None = None  # "retry" or "cancel" awaiting its confirmation
        self._pending_count = 0
        self.status = W.HTML(_dim("reading the errors…"))
        self.buttons = [W.Button(layout=dict(_FIT), button_style="") for _ in range(ERROR_ROWS)]
        self.cells = [W.HTML() for _ in range(ERROR_ROWS)]
        self.rows = [
            W.HBox([button, cell], layout={"display": "none", "align_items": "center"})
            for button, cell in zip(self.buttons, self.cells, strict=True)
        ]
        for index, button in enumerate(self.buttons):
            button.on_click(lambda _b, index=index: self._open_row(index))
        self.chosen = W.HTML()
        self.message = W.HTML()
        self.retry_button = self.cancel_button = self.confirm_button = self.keep_button = None
        actions: list[W.Widget] = []
        if not steering.read_only:
            hidden = {"display": "none", **_FIT}
            self.retry_button = W.Button(icon="redo", layout=dict(hidden))
            self.cancel_button = W.Button(icon="ban", layout=dict(hidden))
            self.confirm_button = W.Button(button_style="warning", layout=dict(hidden))
            self.keep_button = W.Button(description="Don't", layout=dict(hidden))
            self.retry_button.on_click(lambda _b: self._ask("retry"))
            self.cancel_button.on_click(lambda _b: self._ask("cancel"))
            self.confirm_button.on_click(lambda _b: self._confirm())
            self.keep_button.on_click(lambda _b: self._ask(None))
            actions = [self.retry_button, self.cancel_button, self.confirm_button, self.keep_button]
        self.actions = W.HBox([self.chosen, *actions], layout={"align_items": "center"})
        self.widget = W.VBox([self.status, *self.rows, self.actions, self.message])
        self.widget.add_class("mjq-errors")

    # -- reading -----------------------------------------------------------------------------

    def due(self) -> None:
        """An action was just taken: the next ``refresh()`` aggregates again."""
        self._due = True

    def refresh(self, *, force: bool = False) -> None:
        """Look at the counts if an action was taken or ``ERRORS_EVERY_S`` passed; aggregate
        the groups again when they moved, and draw them."""
        now = time.monotonic()
        with self._lock:
            due, self._due = self._due or force, False
            if not due and now - self._looked < ERRORS_EVERY_S:
                return
            self._looked = now
            try:
                with pymongo.timeout(READ_TIMEOUT_S):
                    counts = self._moved()
                    if due or counts != self._counts or counts is None:
                        self.groups = list(self.queue.errors())
                        self._counts = counts
            except (PyMongoError, JobQueueError) as exc:  # the server away: keep what shows
                log.debug("mjq: the errors of %s could not be read: %r", self.queue.name, exc)
                self._due = self._due or due
                return
            if self.selected is not None:  # the selection follows its group's new count
                key = self.selected["group"]
                self.selected = next((g for g in self.groups if g["group"] == key), None)
            self._draw()

    def _documents(self) -> tuple[int, int]:
        """What moves when a job fails, by default: the documents of history and the ring
        (their collections' metadata)."""
        return (
            self.queue.history_collection.estimated_document_count(),
            self.queue.collection.estimated_document_count(),
        )

    # -- drawing -----------------------------------------------------------------------------

    def _draw(self) -> None:
        shown = self.groups[:ERROR_ROWS]
        more = len(self.groups) - len(shown)
        total = sum(int(g.get("count") or 0) for g in self.groups)
        text = (
            "no failed jobs"
            if not self.groups
            else f"{jobs_text(total)} failed, in {len(self.groups):,} group(s)"
            + (f"; the {ERROR_ROWS} with the newest failures shown" if more else "")
            + " · a group's button shows its jobs in the tail"
        )
        _set(self.status, _dim(text))
        for index, row in enumerate(self.rows):
            button, cell = self.buttons[index], self.cells[index]
            group = shown[index] if index < len(shown) else None
            _set(row.layout, "none" if group is None else "flex", "display")
            if group is None:
                continue
            _set(button, _cut(str(group.get("type") or "Error"), 28), "description")
            _set(button, f"show the {group['count']:,} job(s) of this group in the tail", "tooltip")
            selected = self.selected is not None and self.selected["group"] == group["group"]
            _set(button, "info" if selected else "", "button_style")
            _set(cell, _row_html(group))
        self._draw_actions()

    def _draw_actions(self) -> None:
        group = self.selected
        if group is None:
            _set(self.chosen, "")
            for button in (self.retry_button, self.cancel_button, self.confirm_button,
                           self.keep_button):  # fmt: skip
                _visible(button, False)
            return
        chosen = f"{group.get('type')}: {group.get('pattern')} · {jobs_text(group['count'])}"
        _set(self.chosen, wrap(f"<span class='mjq-dim'>group {escape(group['group'])}</span> "
                               f"{escape(_cut(chosen, 90))}"))  # fmt: skip
        if self.retry_button is None:
            return
        asking = self._pending is not None
        _visible(self.retry_button, not asking)
        _visible(self.cancel_button, not asking)
        _visible(self.confirm_button, asking)
        _visible(self.keep_button, asking)
        _set(self.retry_button, f"Retry all {group['count']:,}", "description")
        _set(self.retry_button, "the failed jobs of this group back to waiting (asks first)",
             "tooltip")  # fmt: skip
        _set(self.cancel_button, "Cancel all…", "description")
        _set(self.cancel_button, "cancel the jobs of this group waiting for a retry (asks first)",
             "tooltip")  # fmt: skip
        if asking:
            verb = "Retry" if self._pending == "retry" else "Cancel"
            _set(self.confirm_button, f"Confirm: {verb.lower()} {jobs_text(self._pending_count)}",
                 "description")  # fmt: skip

    # -- acting (on the kernel's thread: button clicks) --------------------------------------

    def open(self, key: str) -> None:
        """Select group ``key``: the tail shows its jobs, the actions are offered."""
        group = next((g for g in self.groups if g["group"] == key), None)
        self.selected, self._pending = group, None
        _set(self.message, "")
        if group is not None:
            self._show_query(group["query"])
        self._draw()

    def _open_row(self, index: int) -> None:
        shown = self.groups[:ERROR_ROWS]
        if index < len(shown):
            self.open(shown[index]["group"])

    def _ask(self, action: str | None) -> None:
        """Show the confirmation for ``action`` with how many jobs it would change now."""
        group = self.selected
        self._pending, self._pending_count = None, 0
        if action is not None and group is not None:
            try:
                count = self.queue.count_matches(_target(group), action)
            except Exception as exc:  # said, never raised into the notebook
                self._say(f"could not count the jobs: {type(exc).__name__}: {exc}")
                return self._draw_actions()
            if count == 0:
                what = "failed" if action == "retry" else "waiting"
                self._say(f"no {what} job of this group to {action}")
            else:
                self._pending, self._pending_count = action, count
                self._say("")
        self._draw_actions()

    def _confirm(self) -> None:
        group, action = self.selected, self._pending
        self._pending = None
        if group is None or action is None:
            return self._draw_actions()
        act = self.steering.retry_all if action == "retry" else self.steering.cancel_all
        try:
            count = act(_target(group))
        except ReadOnlyError:
            self._say(refused(f"{action} all"))
        except Exception as exc:  # said, never raised into the notebook
            self._say(f"could not {action}: {type(exc).__name__}: {exc}")
        else:
            done = "retried" if action == "retry" else "cancelled"
            self._say(f"{done} {jobs_text(count)} of group {group['group']}")
            self._due = True
            self._acted()
        self._draw_actions()

    def _say(self, text: str) -> None:
        _set(self.message, _dim(text) if text else "")


def _target(group: Mapping[str, Any]) -> Any:
    """What a bulk action of ``group`` acts on: its query (``group:<key>``) when all its
    failures carry their fingerprint, else the filter naming them exactly."""
    members = group["filter"]
    return group["query"] if members.get("error.group") == group["group"] else members


def _row_html(group: Mapping[str, Any]) -> str:
    hours = group.get("hours") or []
    tip = f"failures per hour over the last {len(hours)} hour(s) of this group: " + ", ".join(
        map(str, hours)
    )
    pattern = escape(_cut(str(group.get("pattern") or ""), 70))
    cells = [
        f"<span title='{escape(group.get('message') or '')}'>{pattern}</span>",
        f"<b>{int(group.get('count') or 0):,}</b>",
        f"<span class='mjq-dim'>{escape(format_ago(group.get('last')))}</span>",
        f"<span style='white-space:pre' title='{escape(tip)}'>{escape(sparkline(hours))}</span>",
        f"<span class='mjq-dim'>{escape(workers_text(group))}</span>",
    ]
    return wrap(" · ".join(cells))


def _cut(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _set(widget: Any, value: Any, name: str = "value") -> None:
    """Assign a trait only when it changes: an unchanged value sends nothing."""
    if getattr(widget, name) != value:
        setattr(widget, name, value)


def _visible(button: W.Button | None, visible: bool) -> None:
    if button is not None:
        _set(button.layout, None if visible else "none", "display")


def _dim(text: str) -> str:
    return (
        f"<div class='mjq'><span class='mjq-dim' style='font-size:11px'>{escape(text)}</span></div>"
    )
