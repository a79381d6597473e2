"""Progress from a running job, written at most about once a second whatever the call rate.

A handler may call ``job.progress(...)`` in a tight loop; the queue sees the newest value
within ``EVERY_S``: a call inside the interval is held, and a timer writes the newest held
value when the interval ends. Each write holds only while this claim owns the job, so a late
worker never writes over a job another worker took over.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from ...errors import LeaseLostError

if TYPE_CHECKING:
    from ..job import Job
    from .owned import OwnedWrites

log = logging.getLogger("mjq_notebook")

EVERY_S = 1.0  # one progress write per job at most this often


class ProgressWriter:
    """Writes one claimed job's progress through ``owned`` (claim-conditional updates)."""

    def __init__(self, owned: OwnedWrites, job: Job) -> None:
        self.owned, self.job = owned, job
        self._lock = threading.Lock()
        self._written_at = float("-inf")  # monotonic
        self._held: dict[str, Any] | None = None
        self._timer: threading.Timer | None = None

    def update(self, value: dict[str, Any]) -> None:
        """Write ``value`` now if the last write is over ``EVERY_S`` old, else hold it for
        the timer, which writes the newest value held when the interval ends."""
        with self._lock:
            if self._timer is not None:
                self._held = value  # the pending timer writes it
                return
            wait = self._written_at + EVERY_S - time.monotonic()
            if wait > 0:
                self._held = value
                self._timer = threading.Timer(wait, self._write_held)
                self._timer.daemon = True
                self._timer.name = "mjq-progress"
                self._timer.start()
                return
            self._written_at = time.monotonic()
        self._write(value)

    def _write_held(self) -> None:
        with self._lock:
            value, self._held, self._timer = self._held, None, None
            self._written_at = time.monotonic()
        if value is not None:
            self._write(value)

    def _write(self, value: dict[str, Any]) -> None:
        if self.job.finished:
            return  # the outcome carries the last value into history
        try:
            self.owned.update(self.job, {"progress": value})
        except LeaseLostError:
            if not self.job.finished:
                log.warning("progress of job %s not saved: the job is no longer held", self.job.id)
        except Exception as exc:  # a progress report must never fail the job
            log.warning("progress of job %s not saved: %s", self.job.id, exc)
