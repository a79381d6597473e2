"""The dashboard's audit panel: the newest ``AUDIT_ROWS`` entries of the queue's audit (who
did what, ``mjq_notebook.core.audit``) as the table ``q.audit()`` shows.

It runs no thread of its own: the dashboard's chart thread calls ``refresh()`` on its tick,
and the panel looks at the audit every ``AUDIT_EVERY_S`` (or at once after an action of the
dashboard, ``due()``). A look costs one count of the audit collection (its metadata); the
newest entries are read only when that count moved or an action was just taken. In between,
the same entries are drawn again so their "ago" column keeps up; an unchanged text sends
nothing. Shown to viewers too: it only reads.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import ipywidgets as W
import pymongo
from pymongo.errors import PyMongoError

from ...core.audit import audit_collection, read
from ...errors import JobQueueError
from ..audit_table import audit_html
from ..markup import stylesheet

if TYPE_CHECKING:
    from ...core.queue import JobQueue

log = logging.getLogger("mjq_notebook")

AUDIT_ROWS = 20  # entries shown
AUDIT_EVERY_S = 5.0  # a look at the audit at most this often, but after an action
READ_TIMEOUT_S = 3.0  # one look gives up after this (the watcher reports an outage)
AUDIT_TIP = f"who did what to this queue, the newest {AUDIT_ROWS} actions first"


class AuditPanel:
    """An HTML widget (``widget``) showing ``queue``'s newest audit entries; ``refresh()``
    from one thread at a time is the intent, and a lock makes a second caller wait."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self.widget = W.HTML(_dim("reading the audit…"))
        self._lock = threading.Lock()
        self._due = True  # the first tick reads
        self._looked = 0.0  # monotonic time of the last look
        self._count: int | None = None
        self._entries: list[dict[str, Any]] | None = None

    def due(self) -> None:
        """An action was just taken: the next ``refresh()`` reads the entries."""
        self._due = True

    def refresh(self, *, force: bool = False) -> None:
        """Look at the audit if an action was taken (``due``, ``force``) or ``AUDIT_EVERY_S``
        passed, and draw what it holds; else nothing."""
        now = time.monotonic()
        with self._lock:
            due, self._due = self._due or force, False
            if not due and now - self._looked < AUDIT_EVERY_S:
                return
            self._looked = now
            try:
                with pymongo.timeout(READ_TIMEOUT_S):
                    count = audit_collection(self.queue).estimated_document_count()
                    if due or count != self._count or self._entries is None:
                        self._entries = list(read(self.queue, AUDIT_ROWS))
                        self._count = count
            except (PyMongoError, JobQueueError) as exc:  # the server away: keep what shows
                log.debug("mjq: the audit of %s could not be read: %r", self.queue.name, exc)
                self._due = self._due or due
                return
            # the stylesheet comes with the dashboard's headings; each update stays small
            html = audit_html(self._entries).replace(stylesheet(), "", 1)
            if html != self.widget.value:
                self.widget.value = html


def _dim(text: str) -> str:
    return f"<div class='mjq'><span class='mjq-dim' style='font-size:11px'>{text}</span></div>"
