"""Run a handler over the jobs of one queue, or of several in order, in threads, with lease
heartbeats, a record in each queue's worker registry, and clean stops."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from pymongo.errors import ConnectionFailure

from ..errors import Empty, LeaseLostError, ServerUnavailable, WorkerCrashed
from ..signals import handling_stop_signals
from .job import Job
from .metrics import ROLL_EVERY_S, Roller
from .outage import Backoff
from .queue import JobQueue
from .registry import HEARTBEAT_S, State, WorkerRecords, new_worker_id
from .wakeup import AnyWakeup

log = logging.getLogger("mjq_notebook.worker")

Handler = Callable[[Job], Any]
LOSS_CHECK_INTERVAL = 30.0  # seconds between looks for jobs lost to eviction
# The server is away: JobQueue's public methods say so as ServerUnavailable; a raw
# ConnectionFailure is still caught in case one comes from elsewhere.
AWAY = (ConnectionFailure, ServerUnavailable)


@dataclass
class WorkerStats:
    """What a worker did: jobs done, jobs failed for good (attempts used up), failed attempts
    that will be retried, jobs released back to waiting by a hard stop, and the seconds its
    threads spent in finished jobs."""

    done: int = 0
    failed: int = 0
    retried: int = 0
    released: int = 0
    busy_s: float = 0.0


class Running(NamedTuple):
    """A job a thread of the worker runs now: from which of its queues, since when."""

    queue_index: int  # into Worker.queues (a field named index would hide tuple.index)
    job: Job
    since: float  # monotonic


class Worker:
    """Run ``handler(job)`` over ``queue`` in ``concurrency`` threads.

    ``queue`` may be a list of queues: each claim takes from the first one that has a due job,
    in the order given (as RQ workers do), and an idle worker wakes within milliseconds of a
    publish to any of them. The handler's return value is stored as the job's result; an
    exception fails the job (retried while attempts remain). Leases of running jobs are
    extended in the background, and every ``heartbeat`` seconds the worker's record in each
    queue's registry (``q.workers()``) says it is alive and what it runs.
    ``stop()`` (or SIGINT/SIGTERM under ``run()``) stops taking jobs and lets running ones
    finish; a second signal releases them back to waiting and returns at once.

    The worker claims under its own id (``worker.id``, written into each job it claims), not
    the queue object's, so the registry can tell which worker runs which job. ``metrics``:
    roll up the queues' per-minute metrics every 30 s on a thread of its own (``metrics.py``).
    """

    def __init__(
        self,
        queue: JobQueue | Sequence[JobQueue],
        handler: Handler,
        concurrency: int = 1,
        *,
        poll: float = 1.0,
        heartbeat: float = HEARTBEAT_S,
        name: str | None = None,
        metrics: bool = True,
    ) -> None:
        queues = [queue] if isinstance(queue, JobQueue) else list(queue)
        if not queues:
            raise ValueError("give at least one queue")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if heartbeat <= 0:
            raise ValueError("heartbeat must be a positive number of seconds")
        self.queues = queues
        self.queue = queues[0]
        self.handler = handler
        self.concurrency = concurrency
        self.poll = poll
        self.heartbeat = float(heartbeat)
        self.id = new_worker_id()
        self.name = name or self.id
        self.stats = WorkerStats()
        self._per_queue = [WorkerStats() for _ in queues]
        self._any = AnyWakeup(queues) if len(queues) > 1 else None
        self._records: WorkerRecords | None = None
        self._stopping = threading.Event()
        self._running: dict[Any, Running] = {}  # job id -> job, for heartbeats and hard stops
        self._last: list[Job | None] = [None for _ in queues]  # per queue: the job taken last
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._halt = threading.Event()  # set once the worker threads have ended
        self._poke = threading.Event()  # wakes the heartbeat thread: a stop, or the halt
        self._beat: threading.Thread | None = None  # the heartbeat thread, once started
        self._lost_logged = [0 for _ in queues]
        self._roller = Roller(queues) if metrics else None
        self.crashed: BaseException | None = None  # what killed a thread, if one died

    def _guarded(self, target: Callable[..., None], *args: Any) -> None:
        """Run a thread's loop; if anything escapes it, say so, stop the worker and keep the
        reason (``run()`` raises WorkerCrashed with it, ``mjq work`` exits non-zero)."""
        try:
            target(*args)
        except BaseException as exc:
            name = threading.current_thread().name
            log.critical("worker thread %s died: %s: %s", name, type(exc).__name__, exc)
            self.crashed = self.crashed or exc
            self.stop()
            if target == self._heartbeat:  # the registry still hears that it stopped
                self._beat_registry_safely()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self, *, drain: bool = False, max_jobs: int | None = None) -> Worker:
        """Start the threads and return; ``drain`` stops when the queues have nothing left."""
        self._stopping.clear()
        self._halt.clear()
        self.crashed = None
        self._poke.clear()
        self._budget = max_jobs
        self._records = WorkerRecords(  # a fresh record in each queue's registry: running
            self.queues, self.id, self.name, self.concurrency, self.heartbeat
        )
        self._beat_registry()
        if self._any is not None:
            self._any.start()
        self._threads = []
        for i in range(self.concurrency):
            thread = threading.Thread(
                target=self._guarded, args=(self._loop, drain), name=f"mjq-worker-{i}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self._beat = threading.Thread(
            target=self._guarded, args=(self._heartbeat,), name="mjq-heartbeat", daemon=True
        )
        self._beat.start()
        return self

    def stop(self) -> None:
        """Stop taking jobs; running ones finish."""
        self._stopping.set()
        self._poke.set()  # the registry hears of it now, not at the next heartbeat

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the threads; True when all have ended (at once when never started)."""
        if self._beat is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            return False
        self._halt_heartbeat()
        self._beat.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not self._beat.is_alive()

    def _halt_heartbeat(self) -> None:
        self._halt.set()
        self._poke.set()
        if self._any is not None:
            self._any.close()

    def release_running(self) -> None:
        """Hand every running job back to the queue (a hard stop)."""
        with self._lock:
            running = list(self._running.values())
        for index, job, _ in running:
            self._release(index, job)

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
            try:
                while not self.join(timeout=0.2):
                    pass
            except KeyboardInterrupt:  # a hard stop: still say "stopped" in the registry
                self._halt_heartbeat()
                if self._beat is not None:
                    self._beat.join(5)
                raise
        if self.crashed is not None:
            raise WorkerCrashed(
                f"a thread of worker {self.name} died ({type(self.crashed).__name__}: "
                f"{self.crashed}), so it stopped; its running jobs were released or come "
                "back when their leases end"
            ) from self.crashed
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
        backoff = Backoff()
        while not self._stopping.is_set():
            if not self._take_budget():
                self.stop()
                return
            try:
                index, job = self._next()
            except Exception as exc:
                self._give_back_budget()
                if isinstance(exc, AWAY):
                    self.queue.outage.away(exc, "claiming")
                    if self._any is not None:  # its claims don't wait out an outage
                        backoff.wait(self._stopping)
                elif not isinstance(exc, Empty):  # the server refused a claim: say so, go on
                    log.error("claiming a job failed: %s: %s", type(exc).__name__, exc)
                    backoff.wait(self._stopping)
                elif drain and self._drained():
                    self.stop()
                continue
            backoff.reset()
            self._run_one(index, job)

    def _next(self) -> tuple[int, Job]:
        """Claim the next job: (index of its queue, job). Raises ``Empty`` after waiting up to
        ``poll`` seconds for a job to claim."""
        if self._any is None:
            return 0, self.queue._next_as(self.id, self.poll)
        seen = self._any.count()  # before the claims: an insert during them still wakes us
        for index, queue in enumerate(self.queues):
            try:
                return index, queue._next_as(self.id, 0)
            except Empty:
                continue
        self._any.wait(seen, min([self.poll, *(q.idle_wait() for q in self.queues)]))
        raise Empty("no job due in any of the worker's queues")

    def _give_back_budget(self) -> None:
        with self._lock:
            if self._budget is not None:
                self._budget += 1

    def _drained(self) -> bool:
        try:
            # _check_losses logs losses
            counts = [queue.counts(warn=False) for queue in self.queues]
        except Exception:  # away, or refused: not drained as far as we know; look again
            return False
        with self._lock:
            mine = len(self._running)
        idle = all(c["waiting"] == 0 and c["working"] == 0 for c in counts)
        return idle and mine == 0

    def _run_one(self, index: int, job: Job) -> None:
        queue = self.queues[index]
        began = time.monotonic()
        with self._lock:
            self._running[job.id] = Running(index, job, began)
            self._last[index] = job
        try:
            try:
                result = self.handler(job)
            except Exception as exc:
                log.info("job %s failed: %s: %s", job.id, type(exc).__name__, exc)
                self._fail(index, job, exc)
                return
            except BaseException:  # SystemExit and the like: hand the job back, then die
                self._release(index, job)
                raise
            try:
                self._persist(queue, queue.done, job, result)
                self._count(index, "done")
            except LeaseLostError:
                raise
            except Exception as exc:  # the result can't be stored (PublishError), or the
                self._fail(index, job, exc)  # server refused the finish: the job fails with why
        except LeaseLostError as exc:
            log.warning("%s", exc)
        finally:
            with self._lock:
                self._running.pop(job.id, None)
                for stats in (self.stats, self._per_queue[index]):
                    stats.busy_s += time.monotonic() - began

    def _check_losses(self) -> None:
        """Say so in the log when the capped collection evicted jobs before they finished."""
        for index, queue in enumerate(self.queues):
            try:
                lost = queue.counts(warn=False)["lost"]  # logged instead, below
            except AWAY:
                return
            if lost > self._lost_logged[index]:
                self._lost_logged[index] = lost
                log.warning(
                    "%d job(s) of %s were evicted from the capped collection before they "
                    "finished; make the queue larger (q.resize(), `mjq resize`)",
                    lost,
                    queue.name,
                )

    def _count(self, index: int, outcome: str) -> None:
        with self._lock:
            for stats in (self.stats, self._per_queue[index]):
                setattr(stats, outcome, getattr(stats, outcome) + 1)

    def _fail(self, index: int, job: Job, exc: Exception) -> None:
        """Record the failure; if even that is refused, the job comes back when its lease
        ends (said in the log), and the worker goes on."""
        queue = self.queues[index]
        try:
            retried = self._persist(queue, queue.fail, job, exc)
        except LeaseLostError:
            raise
        except Exception as error:
            log.error(
                "could not record the failure of job %s (%s: %s); it comes back when its "
                "lease ends",
                job.id,
                type(error).__name__,
                error,
            )
            return
        self._count(index, "retried" if retried else "failed")

    def _release(self, index: int, job: Job) -> None:
        try:
            self.queues[index].release(job)
            self._count(index, "released")
        except Exception as exc:
            log.warning("could not release job %s: %s", job.id, exc)

    def _persist(
        self, queue: JobQueue, finish: Callable[[Job, Any], Any], job: Job, arg: Any
    ) -> Any:
        """Record a job's outcome, riding out a server that is briefly away."""
        backoff = Backoff()
        while True:
            try:
                outcome = finish(job, arg)
            except AWAY as exc:
                queue.outage.away(exc, f"saving job {job.id}")
                backoff.wait()
                continue
            queue.outage.back()
            return outcome

    # -- the heartbeat thread ------------------------------------------------------------

    def _heartbeat(self) -> None:
        """Extend running jobs' leases, beat in the registry, and now and then look for jobs
        lost to eviction, each on its own clock: a long lease must hold neither of the others
        back. A stop is told to the registry at once; the halt writes "stopped" and ends."""
        touch = max(min(q.lease for q in self.queues) / 3, 0.05)
        now = time.monotonic()
        clocks: list[list[Any]] = [  # [when next, how often, what]
            [now, lambda: LOSS_CHECK_INTERVAL, self._check_losses],
            [now + touch, lambda: touch, self._touch_running],
            [now + self.heartbeat, lambda: self.heartbeat, self._beat_registry],
        ]
        if self._roller is not None:  # its passes run on a thread of their own
            clocks.append([now, lambda: ROLL_EVERY_S, self._roller.kick])
        while True:
            for clock in clocks:
                if time.monotonic() >= clock[0]:
                    clock[0] = time.monotonic() + clock[1]()
                    _logged(clock[2])
            if self._poke.wait(max(0.0, min(c[0] for c in clocks) - time.monotonic())):
                self._poke.clear()
                if self._halt.is_set():
                    self._beat_registry_safely()
                    return
                self._beat_registry_safely()  # stopping: say so now

    def _touch_running(self) -> None:
        with self._lock:
            running = list(self._running.values())
        for index, job, _ in running:
            queue = self.queues[index]
            try:
                queue.touch(job)
            except AWAY as exc:
                queue.outage.away(exc, "extending leases")
            except LeaseLostError as exc:
                if not job.finished:  # else it just finished: nothing to extend
                    log.warning("heartbeat for job %s: %s", job.id, exc)

    # -- the registry --------------------------------------------------------------------

    def _beat_registry_safely(self) -> None:
        _logged(self._beat_registry)

    def _beat_registry(self) -> None:
        """Write each queue's record: state, the jobs running now, the counts so far."""
        if self._records is None:
            return
        if self._halt.is_set():
            state = State.STOPPED
        else:
            state = State.STOPPING if self._stopping.is_set() else State.RUNNING
        with self._lock:
            running = list(self._running.values())
            counts = [vars(stats).copy() for stats in self._per_queue]
            last = list(self._last)
        self._records.write(state, running, counts, last)


def _logged(step: Callable[[], None]) -> None:
    """Run one step of the heartbeat thread; an error is logged and waits for the next turn,
    so a refused write never stops the leases being extended."""
    try:
        step()
    except Exception as exc:
        log.error("%s failed: %s: %s", step.__name__.strip("_"), type(exc).__name__, exc)
