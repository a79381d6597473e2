"""``Latest``: work on the newest of a stream of items on one background thread, then again
every ``every`` seconds while it stays the newest (a search box's ``group:`` query, resolved
off the kernel's thread and kept current).

Items set while one is being worked on are not queued: the thread takes the newest when it
is free, the ones between are skipped. ``set(None)`` stops the repeats and the thread ends
(nothing runs while there is nothing to keep current); ``close()`` stops it and joins it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger("mjq_notebook")

T = TypeVar("T")


class Latest(Generic[T]):
    """Calls ``work(item)`` on a thread named ``name`` for the newest item ``set``, at once,
    then every ``every`` seconds until another item (or None) is set or ``close()``."""

    def __init__(self, work: Callable[[T], None], every: float, name: str) -> None:
        self.work, self.every, self.name = work, every, name
        self._cond = threading.Condition()
        self._item: T | None = None
        self._new = False  # the item was set since the thread last took it
        self._running = False  # a thread will take the item (it ends only under _cond)
        self._closed = False
        self._threads: list[threading.Thread] = []

    def set(self, item: T | None) -> None:
        """Work on ``item`` as soon as the thread is free (None: stop, the thread ends); the
        item being kept current changes nothing."""
        with self._cond:
            if self._closed or (item is not None and item is self._item):
                return  # the same item: its repeats go on as they were
            self._item, self._new = item, item is not None
            self._cond.notify_all()
            if item is None or self._running:
                return
            self._running = True
            self._threads = [thread for thread in self._threads if thread.is_alive()]
            thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._threads.append(thread)
        thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop, and wait (at most ``timeout`` seconds) for the work under way to end."""
        with self._cond:
            self._closed, self._item = True, None
            self._cond.notify_all()
            threads = list(self._threads)
        deadline = time.monotonic() + timeout
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while True:
            with self._cond:
                due = time.monotonic() + self.every
                while not (self._closed or self._item is None or self._new):
                    left = due - time.monotonic()
                    if left < 0:
                        break
                    self._cond.wait(left)
                item = self._item
                if self._closed or item is None:
                    self._running = False
                    return
                self._new = False
            try:
                self.work(item)
            except Exception:  # the next item (or repeat) may do; never a dead thread
                log.exception("mjq: %s failed", self.name)
