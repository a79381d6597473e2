"""The tail's actions on every job its search query matches: "Retry all matches", "Cancel all
matches" and "Run all now" (``q.retry_all``, ``cancel_all``, ``promote_all`` through the
tail's ``Steering``: one audit entry each, with the query).

They show while the search box holds a query. A click counts the jobs the action would change
and asks ("Retry 37 failed jobs matching `data.customer:42`?"); confirming acts on a thread of
its own (the kernel stays free; it only assigns traits), with a progress bar for long runs,
then says how many changed. That message goes when the query changes or another action is
asked. A read-only viewer gets none of it (``box`` and every control are None).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as W

from ...core.job import ACTS_ON
from ...errors import QuerySyntaxError, ReadOnlyError
from ..markup import escape
from .acting import refused

if TYPE_CHECKING:
    from ...core.audit import Steering

log = logging.getLogger("mjq_notebook")

_FIT = {"width": "auto"}  # buttons are 148 px by default: the labels would be cut
LONG = 100  # from this many jobs on, a run shows a progress bar
PROGRESS_EVERY_S = 0.1  # at most ~10 updates of the bar a second
# per action: its button, the question's verb, the confirming button, what the report says
WORDING = {
    "retry": ("Retry all matches", "Retry", "Retry them", "retried"),
    "cancel": ("Cancel all matches", "Cancel", "Cancel them", "cancelled"),
    "promote": ("Run all now", "Run now", "Run them now", "made due now"),
}
TIPS = {
    "retry": "every failed job the search matches back to waiting (asks first)",
    "cancel": "every waiting job the search matches cancelled: final, never run (asks first)",
    "promote": "every delayed job the search matches due now (asks first)",
}


class BulkActions:
    """The bulk buttons (``buttons``), the confirmation row, the progress bar and the last
    outcome (``message``), in ``box``; ``search`` is the text widget holding the query,
    ``changed()`` follows an action that changed jobs."""

    def __init__(self, steering: Steering, search: W.Widget, changed: Callable[[], None]) -> None:
        self.steering, self.queue, self.search = steering, steering.queue, search
        self._changed = changed
        self._pending: tuple[str, str] | None = None  # (action, query) being asked about
        self._running: threading.Thread | None = None
        self._shown_at = 0.0  # when the progress bar was last assigned
        self.box: W.VBox | None = None
        self.buttons: dict[str, W.Button] = {}
        self.button_row = self.confirm_box = self.label = self.yes = self.no = None
        self.progress: W.IntProgress | None = None
        self.message: W.HTML | None = None
        if steering.read_only:
            return
        for action, (text, *_) in WORDING.items():
            self.buttons[action] = W.Button(description=text, tooltip=TIPS[action], layout=_FIT)
            self.buttons[action].on_click(lambda _b, action=action: self.ask(action))
        self.button_row = W.HBox(list(self.buttons.values()), layout={"display": "none"})
        self.label = W.HTML()
        self.yes = W.Button(button_style="danger", layout=_FIT)
        self.no = W.Button(description="Don't", layout=_FIT)
        self.confirm_box = W.HBox([self.label, self.yes, self.no], layout={"display": "none"})
        self.progress = W.IntProgress(min=0, max=1, layout={"display": "none"})
        self.message = W.HTML()
        self.yes.on_click(self.confirm)
        self.no.on_click(lambda _b: self.drop())
        self.box = W.VBox([self.button_row, self.confirm_box, self.progress, self.message])
        search.observe(self._query_changed, "value")
        self._query_changed()

    def query(self) -> str:
        return str(self.search.value).strip()

    def ask(self, action: str) -> None:
        """Count what ``action`` would change for the query now, and ask to confirm."""
        self.drop()
        text = self.query()
        if self.label is None or self.confirm_box is None or self.yes is None:
            self._tell(refused(WORDING[action][0].lower()))  # read-only: nothing was made
            return
        noun = ACTS_ON[action]
        try:
            count = self.queue.count_matches(text, action)
        except QuerySyntaxError as exc:
            self._tell(f"the search is no query: {exc}")
            return
        except Exception as exc:  # shown, never raised into the notebook
            self._tell(f"could not count the matches: {type(exc).__name__}")
            return
        if not count:
            self._tell(f"no {noun} jobs match {text}")
            return
        verb, yes = WORDING[action][1], WORDING[action][2]
        jobs = f"{count:,} {noun} job{'s' * (count != 1)}"
        self.label.value = f"<b>{verb} {jobs} matching <code>{escape(text)}</code>?</b>"
        self.yes.description = yes
        self._pending = (action, text)
        self.confirm_box.layout.display = None

    def confirm(self, _button: Any = None) -> None:
        """Act on the matches asked about, on a thread of its own."""
        pending = self._pending
        self.drop()
        if pending is None or (self._running is not None and self._running.is_alive()):
            return
        for button in self.buttons.values():
            button.disabled = True
        self._running = threading.Thread(
            target=self._run, args=pending, name="mjq-bulk-action", daemon=True
        )
        self._running.start()

    def drop(self) -> None:
        """Hide the confirmation row (the query changed, or "Don't")."""
        self._pending = None
        if self.confirm_box is not None:
            self.confirm_box.layout.display = "none"

    def wait(self, timeout: float | None = None) -> None:
        """Until the running action (if any) has finished."""
        if self._running is not None:
            self._running.join(timeout)

    # -- the thread of a run -------------------------------------------------------------

    def _run(self, action: str, text: str) -> None:
        call = {"retry": self.steering.retry_all, "cancel": self.steering.cancel_all,
                "promote": self.steering.promote_all}[action]  # fmt: skip
        try:
            count = call(text, progress=self._progressed)
        except ReadOnlyError:
            outcome = refused(WORDING[action][0].lower())
        except Exception as exc:  # shown, never raised into the notebook
            log.info("mjq: %s of %r failed: %r", action, text, exc)
            outcome = f"{WORDING[action][0].lower()} failed: {type(exc).__name__}"
        else:
            noun = ACTS_ON[action]
            plural = "s" * (count != 1)
            outcome = f"{WORDING[action][3]} {count:,} {noun} job{plural} matching {text}"
            if count:
                try:
                    self._changed()
                except Exception:
                    log.exception("mjq: after a bulk action")
        if self.progress is not None:
            self.progress.layout.display = "none"
        for button in self.buttons.values():
            button.disabled = False
        self._tell(outcome)

    def _progressed(self, done: int, total: int) -> None:
        """The bar for ``done`` of ``total``: shown for long runs, ~10 updates a second."""
        bar = self.progress
        now = time.monotonic()
        if (
            bar is None
            or total < LONG
            or (now - self._shown_at < PROGRESS_EVERY_S and 0 < done < total)
        ):
            return
        self._shown_at = now
        with bar.hold_sync():
            bar.max, bar.value = total, min(done, total)
            bar.description = f"{done:,}/{total:,}"
            bar.layout.display = None

    def _tell(self, text: str) -> None:
        if self.message is not None:
            self.message.value = f'<span class="mjq-dim">{escape(text)}</span>' if text else ""

    def _query_changed(self, _change: Any = None) -> None:
        """Buttons while the search holds a query; a new query drops the question and the
        last outcome (about another query)."""
        self.drop()
        self._tell("")
        if self.button_row is not None:
            self.button_row.layout.display = None if self.query() else "none"
