"""Stop on SIGINT/SIGTERM for the length of a block, then put the old handlers back.

Used by the long-running commands (``mjq serve``, ``tail``, ``metrics``) and a worker's
``run()``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def handling_stop_signals(handler: Callable[[int, Any], Any]) -> Iterator[None]:
    """``handler(signum, frame)`` runs on SIGINT and SIGTERM inside the block. Only the main
    thread can take signals; elsewhere the block runs with the handlers as they are."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


class StopFlag:
    """Set by a stop signal's handler, waited on by the main thread, with no lock: an
    ``Event.set()`` in a handler deadlocks when the signal lands while the main thread holds
    that Event's own lock, inside its ``wait()`` (it happened to ``mjq serve`` under load)."""

    STEP_S = 0.1  # how soon a wait sees the flag set

    def __init__(self) -> None:
        self._set = False

    def set(self, *_: Any) -> None:
        """Set it (also as a handler: ``handling_stop_signals(flag.set)``)."""
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """Sleep until set or ``timeout`` seconds; whether it is set."""
        end = time.monotonic() + timeout
        while not self._set and (left := end - time.monotonic()) > 0:
            time.sleep(min(self.STEP_S, left))
        return self._set
