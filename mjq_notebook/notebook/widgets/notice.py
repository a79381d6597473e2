"""``Notice``: a status message ("published 10 jobs…", "job …f77 is due now") that goes away
once it is no longer true: after ``NOTICE_S`` seconds, or as soon as the state it describes
changed (``until``), whichever comes first. One mechanism for the messages of every widget.

No thread of its own: the page hides the message when its time is up (a CSS animation
delayed by that time, so a quiet queue that sends nothing still loses it), and the widget's
existing tick (the tail's snapshots, the dashboard's chart thread, the form's edits) calls
``tick()``, which clears the value once its time is up or ``until()`` says it changed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as W

NOTICE_S = 8.0  # a message's life at most
# the page's copy of the clock: hidden after its delay (the delay is set per message)
_FADE = "<style>@keyframes mjq-notice-out{to{opacity:0;visibility:hidden;height:0}}</style>"


class Notice:
    """Sets ``widget.value`` (HTML) to messages that expire. Thread-safe: ``say`` runs on the
    kernel's thread, ``tick`` on the watcher's or a widget's own."""

    def __init__(
        self, widget: W.HTML, ttl: float = NOTICE_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.widget, self.ttl, self._clock = widget, ttl, clock
        self._lock = threading.Lock()
        self._until: Callable[[], bool] | None = None
        self._ends = float("inf")  # when the current message goes (monotonic)

    def say(
        self, html: str, *, until: Callable[[], bool] | None = None, lasting: bool = False
    ) -> None:
        """Show ``html`` (already escaped) until ``NOTICE_S`` pass or ``until()`` is true;
        ``lasting``: until replaced (a complaint that stays true until the input changes);
        "" clears."""
        with self._lock:
            timed = bool(html) and not lasting
            self._ends = self._clock() + self.ttl if timed else float("inf")
            self._until = until if html else None
            style = f"animation:mjq-notice-out 0.3s linear {self.ttl:g}s forwards"
            value = html
            if timed:
                value = f'{_FADE}<div class="mjq-notice" style="{style}">{html}</div>'
            if self.widget.value != value:
                self.widget.value = value

    def tick(self) -> None:
        """Clear the message once its time is up or the state it describes changed."""
        with self._lock:
            if not self.widget.value:
                return
            gone = self._clock() >= self._ends
            if not gone and self._until is not None:
                try:
                    gone = self._until()
                except Exception:  # a check that fails says nothing more is known: keep it
                    gone = False
            if gone:
                self._until, self._ends = None, float("inf")
                self.widget.value = ""


def left(state: Callable[[], Any], value: Any) -> Callable[[], bool]:
    """An ``until`` for a message about a state just reached ("job … is waiting again"): true
    once ``state()`` was ``value`` and then is something else (it may still read as before
    until the next refresh)."""
    seen = False

    def changed() -> bool:
        nonlocal seen
        now = state()
        seen = seen or now == value
        return seen and now != value

    return changed
