"""Waiting for a condition with a deadline (never a bare sleep), and the threads a test can
find still running."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], object], timeout: float, what: str = "the condition") -> float:
    """Poll ``predicate`` until true; returns the seconds it took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)
    return time.monotonic() - start


def within(seconds: float, call: Callable[[], object], what: str = "the call") -> object:
    """``call()``'s result (or its exception) if it returns within ``seconds``; a failure
    then, not at pytest's 300 s time-out, if it hangs (it goes on in a daemon thread)."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise AssertionError(f"{what} still had not returned after {seconds}s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def mjq_threads() -> list[str]:
    """Threads of this package still running (pymongo's own come and go with its clients)."""
    return [t.name for t in threading.enumerate() if t.name.startswith("mjq-")]


def watcher_threads() -> list[threading.Thread]:
    """The watchers' threads (one a queue followed live)."""
    return [t for t in threading.enumerate() if t.name.startswith("mjq-watch-")]
