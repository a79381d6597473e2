"""Run a handler over a queue's jobs in threads, with lease heartbeats and clean stops."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymongo.errors import ConnectionFailure

from .errors import Empty, LeaseLostError, PublishError, ServerUnavailable
from .job import Job
from .outage import Backoff
from .queue import JobQueue
from .signals import handling_stop_signals

log = logging.getLogger("mjq_notebook.worker")

Handler = Callable[[Job], Any]
LOSS_CHECK_INTERVAL = 30.0  # seconds between looks for jobs lost to eviction
# The server is away: JobQueue's public methods say so as ServerUnavailable; a raw
# ConnectionFailure is still caught in case one comes from elsewhere.
AWAY = (ConnectionFailure, ServerUnavailable)


@dataclass
class WorkerStats:
    """What a worker did: jobs done, jobs failed for good (attempts used up), failed attempts
    that will be retried, and jobs released back to waiting by a hard stop."""

    done: int = 0
    failed: int = 0
    retried: int = 0
    released: int = 0


class Worker:
    """Run ``handler(job)`` over ``queue`` in ``concurrency`` threads.

    The handler's return value is stored as the job's result; an exception fails the job
    (retried while attempts remain). Leases of running jobs are extended in the background.
    ``stop()`` (or SIGINT/SIGTERM under ``run()``) stops taking jobs and lets running ones
    finish; a second signal releases them back to waiting and returns at once.
    """

    def __init__(
        self, queue: JobQueue, handler: Handler, concurrency: int = 1, *, poll: float = 1.0
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.queue = queue
        self.handler = handler
        self.concurrency = concurrency
        self.poll = poll
        self.stats = WorkerStats()
        self._stopping = threading.Event()
        self._running: dict[Any, Job] = {}  # job id -> job, for heartbeats and hard stops
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._halt = threading.Event()  # set once the worker threads have ended
        self._beat: threading.Thread | None = None  # the heartbeat thread, once started
        self._lost_logged = 0

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, *, drain: bool = False, max_jobs: int | None = None) -> Worker:
        """Start the threads and return; ``drain`` stops when the queue has nothing left."""
        self._stopping.clear()
        self._halt.clear()
        self._budget = max_jobs
        self._threads = []
        for i in range(self.concurrency):
            thread = threading.Thread(
                target=self._loop, args=(drain,), name=f"mjq-worker-{i}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self._beat = threading.Thread(target=self._heartbeat, name="mjq-heartbeat", daemon=True)
        self._beat.start()
        return self

    def stop(self) -> None:
        """Stop taking jobs; running ones finish."""
        self._stopping.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the threads; True when all have ended (at once when never started)."""
        if self._beat is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            return False
        self._halt.set()
        self._beat.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not self._beat.is_alive()

    def release_running(self) -> None:
        """Hand every running job back to the queue (a hard stop)."""
        with self._lock:
            jobs = list(self._running.values())
        for job in jobs:
            try:
                self.queue.release(job)
                self._count("released")
            except Exception as exc:
                log.warning("could not release job %s: %s", job.id, exc)

    def run(self, *, drain: bool = False, max_jobs: int | None = None) -> WorkerStats:
        """Work in the foreground until stopped (SIGINT/SIGTERM), drained, or ``max_jobs``."""
        signals = 0

        def on_signal(signum: int, frame: Any) -> None:
            nonlocal signals
            signals += 1
            self.stop()
            if signals == 1:
                log.warning("stopping: finishing running jobs (signal again to release them)")
            else:
                self.release_running()
                raise KeyboardInterrupt

        with handling_stop_signals(on_signal):
            self.start(drain=drain, max_jobs=max_jobs)
            while not self.join(timeout=0.2):
                pass
        return self.stats

    # -- threads -------------------------------------------------------------------------

    def _take_budget(self) -> bool:
        with self._lock:
            if self._budget is None:
                return True
            if self._budget <= 0:
                return False
            self._budget -= 1
            return True

    def _loop(self, drain: bool) -> None:
        while not self._stopping.is_set():
            if not self._take_budget():
                self.stop()
                return
            try:
                job = self.queue.next(timeout=self.poll)
            except (Empty, *AWAY) as exc:
                self._give_back_budget()
                if isinstance(exc, AWAY):
                    self.queue.outage.away(exc, "claiming")
                elif drain and self._drained():
                    self.stop()
                continue
            self._run_one(job)

    def _give_back_budget(self) -> None:
        with self._lock:
            if self._budget is not None:
                self._budget += 1

    def _drained(self) -> bool:
        try:
            counts = self.queue.counts(warn=False)  # _check_losses logs losses
        except AWAY:
            return False
        with self._lock:
            mine = len(self._running)
        return counts["waiting"] == 0 and counts["working"] == 0 and mine == 0

    def _run_one(self, job: Job) -> None:
        with self._lock:
            self._running[job.id] = job
        try:
            try:
                result = self.handler(job)
            except Exception as exc:
                log.info("job %s failed: %s: %s", job.id, type(exc).__name__, exc)
                self._fail(job, exc)
                return
            try:
                self._persist(self.queue.done, job, result)
                self._count("done")
            except PublishError as exc:  # the result can't be stored: that is the job failing
                self._fail(job, exc)
        except LeaseLostError as exc:
            log.warning("%s", exc)
        finally:
            with self._lock:
                self._running.pop(job.id, None)

    def _check_losses(self) -> None:
        """Say so in the log when the capped collection evicted jobs before they finished."""
        try:
            lost = self.queue.counts(warn=False)["lost"]  # logged instead, below
        except AWAY:
            return
        if lost > self._lost_logged:
            self._lost_logged = lost
            log.warning(
                "%d job(s) of %s were evicted from the capped collection before they finished; "
                "make the queue larger (max_jobs/size_bytes)",
                lost,
                self.queue.name,
            )

    def _count(self, outcome: str) -> None:
        with self._lock:
            setattr(self.stats, outcome, getattr(self.stats, outcome) + 1)

    def _fail(self, job: Job, exc: Exception) -> None:
        retried = self._persist(self.queue.fail, job, exc)
        self._count("retried" if retried else "failed")

    def _persist(self, finish: Callable[[Job, Any], Any], job: Job, arg: Any) -> Any:
        """Record a job's outcome, riding out a server that is briefly away."""
        backoff = Backoff()
        while True:
            try:
                outcome = finish(job, arg)
            except AWAY as exc:
                self.queue.outage.away(exc, f"saving job {job.id}")
                backoff.wait()
                continue
            self.queue.outage.back()
            return outcome

    def _heartbeat(self) -> None:
        """Extend running jobs' leases; now and then, look for jobs lost to eviction."""
        every = max(self.queue.lease / 3, 0.05)
        next_loss_check = time.monotonic()
        next_touch = next_loss_check + every
        while True:
            # each on its own clock: a long lease must not hold the look for losses back
            if time.monotonic() >= next_loss_check:
                next_loss_check = time.monotonic() + LOSS_CHECK_INTERVAL
                self._check_losses()
            if time.monotonic() >= next_touch:
                next_touch = time.monotonic() + every
                self._touch_running()
            if self._halt.wait(max(0.0, min(next_touch, next_loss_check) - time.monotonic())):
                return

    def _touch_running(self) -> None:
        with self._lock:
            jobs = list(self._running.values())
        for job in jobs:
            try:
                self.queue.touch(job)
            except AWAY as exc:
                self.queue.outage.away(exc, "extending leases")
            except LeaseLostError as exc:
                if not job.finished:  # else it just finished: nothing to extend
                    log.warning("heartbeat for job %s: %s", job.id, exc)
