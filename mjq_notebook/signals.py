"""Stop on SIGINT/SIGTERM for the length of a block, then put the old handlers back.

Used by the two long-running commands: ``mjq serve`` and a worker's ``run()``.
"""

from __future__ import annotations

import contextlib
import signal
import threading
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
