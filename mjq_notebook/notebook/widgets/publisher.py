"""The publish form: a JSON editor with live validation, job options, a number of copies and
one Publish button whose label says how many it publishes.

Built from ipywidgets core controls only, so it works wherever ipywidgets does. Everything
runs on the kernel's own thread (observers and button clicks); no background thread. A
publish goes through the form's ``Steering`` (recorded in the queue's audit, with who); a
read-only viewer's form is not built at all: it shows only why.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ...core.audit import Actor, Steering
from ...core.job import stored_size
from ...errors import InvalidQueueError, PublishError, ReadOnlyError
from ...text import format_bytes, jobs_text
from ..display import escape
from ..markup import wrap
from .acting import actor_or_here, read_only_html, refused
from .lifecycle import Lifecycle
from .notice import Notice

if TYPE_CHECKING:
    from bson import ObjectId

    from ...core.queue import JobQueue

log = logging.getLogger("mjq_notebook")

EXAMPLE = {"message": "hello world!"}
MAX_COPIES = 10_000
SHOWN_IDS = 3  # ids listed after a publish; the rest are counted
_INVALID = object()  # the editor holds no publishable value

# Monospace editor text; error and success colours follow JupyterLab's theme variables.
_STYLE = (
    "<style>.mjq-editor textarea{font-family:var(--jp-code-font-family,monospace);"
    "font-size:var(--jp-code-font-size,13px)}</style>"
)
_ERROR = "color:var(--jp-error-color1,#d32f2f)"
_OK = "color:var(--jp-success-color1,#388e3c)"
_MUTED = "color:var(--jp-ui-font-color2,#757575)"


def check_json(text: str) -> tuple[Any, str]:
    """``(value, "")`` when ``text`` is JSON that MongoDB can store as job data, else
    ``(_INVALID, message)``; the message is plain text (callers escape it)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return _INVALID, _json_error(text, exc)
    except RecursionError:
        return _INVALID, "the JSON is nested too deeply to read"
    try:
        stored_size({"data": value}, "this data")
    except PublishError as exc:
        return _INVALID, str(exc).removesuffix("; nothing was written")
    return value, ""


def _json_error(text: str, exc: json.JSONDecodeError) -> str:
    """The parser's complaint with its line and column, and the line with a caret under it."""
    if not text.strip():
        return 'the editor is empty: enter a JSON value, e.g. {"message": "hi"}'
    line = text.splitlines()[exc.lineno - 1] if text.splitlines() else ""
    start = max(0, exc.colno - 40)
    snippet = line[start : start + 80]
    caret = " " * (exc.colno - 1 - start) + "^"
    return f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})\n{snippet}\n{caret}"


class Publisher(Lifecycle, widgets.VBox):
    """A form that publishes jobs to ``queue``: JSON data, priority, delay, max attempts.

    Bad JSON or data MongoDB can't store is reported under the editor as you type, and the
    publish button stays disabled until it is fixed; a failed publish is reported there too
    and never raises into the notebook. ``on_publish(callback)`` is told the new ids.
    ``actor`` (None: this notebook's user) is who publishes; a read-only one gets no form
    (its controls are None) and a note saying so.
    """

    def __init__(
        self, queue: JobQueue, data: Any = EXAMPLE, *, actor: Actor | None = None, **kwargs: Any
    ) -> None:
        self.queue = queue
        self.actor = actor_or_here(actor)
        self.steering = Steering(queue, self.actor)
        self._data: Any = _INVALID
        self._problem = ""
        self._busy = False
        self._callbacks: list[Callable[[list[ObjectId]], None]] = []
        layout = kwargs.pop("layout", widgets.Layout(width="100%", max_width="1000px"))
        if self.actor.read_only:
            self._read_only(layout, **kwargs)
            return
        self.editor = widgets.Textarea(
            value=_pretty(data)[0],
            placeholder='{"message": "hello world!"}',
            description="data",
            tooltip="The job's data as JSON: any JSON value (an object, a list, a string…)",
            rows=8,
            continuous_update=True,
            layout=widgets.Layout(width="auto", align_self="stretch"),  # as message, below
        )
        self.editor.add_class("mjq-editor")
        self.priority = widgets.IntText(
            value=0,
            description="priority",
            tooltip="Jobs with a higher priority are claimed first (default 0)",
            layout=widgets.Layout(width="170px"),
            style={"description_width": "55px"},
        )
        self.delay = widgets.FloatText(
            value=0.0,
            description="delay (s)",
            tooltip="Seconds before a worker may claim the job (0: at once)",
            layout=widgets.Layout(width="170px"),
            style={"description_width": "65px"},
        )
        self.max_attempts = widgets.BoundedIntText(
            value=queue.max_attempts,
            min=1,
            max=max(1000, queue.max_attempts),
            description="attempts",
            tooltip="How many times a worker may try the job before it is marked failed",
            layout=widgets.Layout(width="150px"),
            style={"description_width": "60px"},
        )
        self.copies = widgets.BoundedIntText(
            value=1,
            min=1,
            max=MAX_COPIES,
            description="copies",
            tooltip=f"How many identical jobs Publish creates (1 to {MAX_COPIES:,})",
            layout=widgets.Layout(width="150px"),
            style={"description_width": "50px"},
        )
        # One button for any number of copies, its label saying how many (see _on_copies): a
        # "Publish" beside a "Publish 3 copies" read as if both published three.
        self.publish_button = widgets.Button(
            button_style="primary", icon="paper-plane", layout=widgets.Layout(width="auto")
        )
        # stretched, not width 100%: 100% plus the widget's 2 px margins overflowed the form
        # (a 957 px box in a 953 px output, with a scrollbar under it)
        self.message = widgets.HTML(layout=widgets.Layout(align_self="stretch"))
        self.notice = Notice(self.message)  # "published 3 jobs" goes after a while, or on an edit
        self._style = widgets.HTML(_STYLE, layout=widgets.Layout(height="0px", margin="0"))
        self.editor.observe(self._validate, names="value")
        for control in (self.priority, self.delay, self.max_attempts):
            control.observe(self._validate, names="value")
        self.copies.observe(self._on_copies, names="value")
        self._on_copies({"new": self.copies.value})
        self.publish_button.on_click(lambda _: self.publish(self.copies.value))
        options = widgets.HBox(
            [self.priority, self.delay, self.max_attempts],
            layout=widgets.Layout(flex_flow="row wrap"),
        )
        buttons = widgets.HBox(
            [self.copies, self.publish_button],
            layout=widgets.Layout(flex_flow="row wrap", align_items="center"),
        )
        super().__init__(
            [self._style, self.editor, options, buttons, self.message], layout=layout, **kwargs
        )
        self._validate()
        self._opened()

    def _read_only(self, layout: widgets.Layout, **kwargs: Any) -> None:
        """A viewer's form: no control at all, only the note saying why."""
        self.editor = self.priority = self.delay = self.max_attempts = self.copies = None
        self.publish_button = self._style = None
        self._problem = "read-only"
        self.message = widgets.HTML(wrap(read_only_html(self.actor)))
        self.notice = Notice(self.message)
        super().__init__([self.message], layout=layout, **kwargs)
        self._opened()

    # -- state -------------------------------------------------------------------------------

    @property
    def valid(self) -> bool:
        """True when the editor and the options hold something publishable."""
        return self._data is not _INVALID and not self._problem

    def _validate(self, _change: Any = None) -> None:
        """Parse and check the editor and options; show the problem, or clear it."""
        self._data, problem = check_json(self.editor.value)
        if not problem:
            problem = self._option_problem()
        self._problem = problem
        with self.hold_sync():
            self._set_buttons()
            if problem:
                self._show(problem, _ERROR)
            elif self.message.value.startswith("<div data-kind='error'"):
                self.notice.say("")  # fixed: the stale complaint goes
            self.notice.tick()  # an edit is this form's tick

    def _option_problem(self) -> str:
        delay = self.delay.value
        if delay is None or not delay >= 0:  # also NaN
            return "delay must be 0 or more seconds"
        return ""

    @property
    def publish_copies_button(self) -> widgets.Button:
        """The publish button (its former name, when copies had a button of their own)."""
        return self.publish_button

    def _on_copies(self, change: Any) -> None:
        """Label the button with what it does: "Publish" for one job, "Publish 3 copies"."""
        n = change["new"]
        with self.publish_button.hold_sync():
            if n == 1:
                self.publish_button.description = "Publish"
                self.publish_button.tooltip = "Publish one job with this data"
            else:
                self.publish_button.description = f"Publish {n:,} copies"
                self.publish_button.tooltip = (
                    f"Publish {n:,} identical jobs with this data, in one round trip"
                )

    def _set_buttons(self) -> None:
        self.publish_button.disabled = self._busy or not self.valid

    def _show(self, text: str, style: str, kind: str = "error") -> None:
        """A complaint (or "publishing…") stays until the input changes; what was published
        goes after a few seconds, or once the form holds other data."""
        body = escape(text)
        html = (
            f"<div data-kind='{kind}' style='{style};white-space:pre-wrap;"
            f"font-family:var(--jp-code-font-family,monospace);font-size:12px'>{body}</div>"
        )
        if kind != "ok" or self.editor is None:
            self.notice.say(html, lasting=True)
            return
        sent = self.editor.value
        self.notice.say(html, until=lambda: self.editor is None or self.editor.value != sent)

    # -- actions -----------------------------------------------------------------------------

    def publish(self, copies: int = 1) -> list[ObjectId]:
        """Publish ``copies`` identical jobs from the form; returns their ids ([] on failure).

        Never raises: the outcome is shown in ``message``.
        """
        if self.editor is None:  # read-only: no form, and the steering would refuse
            self._show(refused("publish"), _ERROR)
            return []
        self._validate()
        if not self.valid:
            return []
        copies = max(1, min(int(copies), MAX_COPIES))
        options: dict[str, Any] = {
            "priority": int(self.priority.value),
            "delay": float(self.delay.value),
            "max_attempts": int(self.max_attempts.value),
        }
        self._busy = True
        self._set_buttons()
        self._show("publishing…", _MUTED, kind="busy")
        try:
            if self._too_big(copies):
                return []
            ids = self.steering.pub_many([self._data] * copies, **options)
        except ReadOnlyError:
            self._show(refused("publish"), _ERROR)
            return []
        except (PublishError, InvalidQueueError) as exc:
            self._show(str(exc), _ERROR)
            return []
        except Exception as exc:  # a server error: shown here, never raised into the notebook
            self._show(
                f"publishing failed: {type(exc).__name__}: {exc}\n"
                "check the queue before trying again: the server may have stored the job(s)",
                _ERROR,
            )
            return []
        finally:
            self._busy = False
            self._set_buttons()
        self._show(_published(ids), _OK, kind="ok")
        for callback in list(self._callbacks):
            try:
                callback(ids)
            except Exception:  # a listener's bug must not look like a failed publish
                log.exception("on_publish callback failed")
        return ids

    def _too_big(self, copies: int) -> bool:
        """Show that ``copies`` jobs can't all fit in the queue's ring, as big as the server
        has it (the publish would evict them), before building them."""
        limits = self.queue.limits()
        total = copies * stored_size({"data": self._data}, "this data")
        if limits.fit(copies, total):
            return False
        are = "is" if copies == 1 else "are"
        self._show(
            f"{jobs_text(copies)} of this data {are} {format_bytes(total)}: more than this "
            f"queue's ring holds (at most {limits}); nothing was published. Publish fewer, "
            "or grow the ring: q.resize(...) or `mjq resize`",
            _ERROR,
        )
        return True

    def load(self, data: Any) -> None:
        """Fill the editor with ``data`` as indented JSON (the tail's "copy to publish form").

        Values JSON can't hold (dates, ObjectIds) become their text, and the message says so.
        """
        if self.editor is None:  # read-only: no form to fill
            return
        text, converted = _pretty(data)
        self.editor.value = text
        if converted and self.valid:
            self._show(
                "loaded; values JSON can't hold (dates, ids) were turned into text",
                _MUTED,
                kind="note",
            )

    def on_publish(self, callback: Callable[[list[ObjectId]], None], remove: bool = False) -> None:
        """Call ``callback(ids)`` after every successful publish (``remove=True`` to stop)."""
        if remove:
            self._callbacks.remove(callback)
        else:
            self._callbacks.append(callback)

    def _halt(self) -> None:
        """On ``close()``, before the controls close: forget the listeners."""
        self._callbacks.clear()

    def __repr__(self) -> str:
        state = "valid" if self.valid else f"invalid: {self._problem.splitlines()[0]}"
        return f"<Publisher {self.queue.db.name}.{self.queue.name} ({state})>"


def _pretty(data: Any) -> tuple[str, bool]:
    """``data`` as indented JSON, and whether some values had to be turned into text."""
    converted = False

    def as_text(value: Any) -> str:
        nonlocal converted
        converted = True
        return str(value)

    return json.dumps(data, indent=2, ensure_ascii=False, default=as_text), converted


def _published(ids: list[ObjectId]) -> str:
    shown = ", ".join(str(i) for i in ids[:SHOWN_IDS])
    more = f" and {len(ids) - SHOWN_IDS:,} more" if len(ids) > SHOWN_IDS else ""
    return f"published {len(ids):,} job{'s' if len(ids) != 1 else ''}: {shown}{more}"
