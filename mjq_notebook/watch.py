"""Follow a queue live: one background watcher per queue feeds every live view of it.

A ``Watcher`` keeps the queue's newest jobs, its counts and the jobs seen finishing up to
date in a background daemon thread, and hands immutable ``Snapshot``s to subscribers (the
notebook widgets, ``mjq tail``). Five widgets of one queue share one thread and one cursor.

Where the server has change streams (replica sets, SecantusDB) the watcher follows one;
elsewhere (a standalone mongod) it re-reads the newest jobs every half second, woken early by
inserts through a tailable cursor. If the server goes away it says so (state
``"reconnecting"``), backs off and starts again; it never raises into the notebook.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import logging
import queue as queue_module
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bson import ObjectId
from pymongo import DESCENDING
from pymongo.errors import OperationFailure, PyMongoError

from .job import FINISHED, Job
from .outage import failure_reason
from .wakeup import Wakeup

if TYPE_CHECKING:
    from .queue import JobQueue

log = logging.getLogger("mjq_notebook")

RECENT_S = 15 * 60  # how far back `finished` and `created` reach
RECENT_MAX = 5000  # and how many entries each holds at most
HISTORY_SEED = 1000  # finished jobs read from history when the watcher starts
HISTORY_POLL = 200  # polling mode: the newest history rows read each round, for the charts
POLL_S = 0.5  # polling mode: re-read the window at least this often
POLL_EMPTY_S = 0.1  # and this often while the queue is empty
AWAIT_MS = 200  # change-stream mode: longest wait for an event per getMore
RECENT_EVERY_S = 0.25  # finished/created are copied into snapshots at most this often
COUNTS_EVERY_S = 1.0  # counts are re-read at most this often, after a change
POLL_COUNTS_EVERY_S = 2.0  # polling sees no change outside the window: re-read anyway
BACKOFF_S, BACKOFF_MAX_S = 0.25, 5.0  # pauses between attempts while the server is away
JOIN_S = 10.0  # close() waits this long for the thread (a dead server can slow a close)


@dataclass(frozen=True)
class Finished:
    """A job seen finishing: when, how, and how long it waited and ran (seconds)."""

    id: ObjectId
    status: str
    done: float  # epoch seconds
    wait_s: float | None
    run_s: float | None


@dataclass(frozen=True)
class Snapshot:
    """What a watcher knows about its queue at one moment. Never mutate its jobs."""

    jobs: tuple[Job, ...]  # newest first: the newest `window` jobs (max of the subscribers')
    counts: dict[str, int]  # queue.counts(), at most once a second while things change
    finished: tuple[Finished, ...]  # oldest first, last RECENT_S seconds, at most RECENT_MAX
    created: tuple[float, ...]  # epoch seconds of jobs seen created, same bounds, ascending
    state: str  # "connecting" | "live" | "reconnecting" | "stopped"
    message: str  # why it is reconnecting ("" otherwise); never holds a password
    mode: str  # "change stream" | "polling" ("" before the first connection)
    version: int  # bumps on every change


class Subscription:
    """One subscriber's callback; ``close()`` it when the view goes away."""

    def __init__(
        self, watcher: Watcher, callback: Callable[[Snapshot], None], window: int, rate: float
    ) -> None:
        self.watcher = watcher
        self.callback = callback
        self.window = max(1, int(window))
        self.rate = rate
        self.sent_version = -1
        self.sent_at = float("-inf")
        self.closed = False

    @property
    def rate(self) -> float:
        """Callbacks a second at most (0: no limit); may be changed while subscribed."""
        return 1.0 / self.interval if self.interval else 0.0

    @rate.setter
    def rate(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0

    def resend(self) -> None:
        """Call back soon with the current snapshot even if it has not changed (a view's
        filter changed, say)."""
        self.sent_version, self.sent_at = -1, float("-inf")
        self.watcher.poke()

    def close(self) -> None:
        """Stop the callbacks; the last subscription of a watcher stops its thread. Idempotent."""
        self.watcher._unsubscribe(self)


class Watcher:
    """One per (client, database, queue name) in this process: use ``Watcher.of(queue)``."""

    _registry: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
    _registry_lock = threading.Lock()

    @classmethod
    def of(cls, queue: JobQueue) -> Watcher:
        """The process's watcher of ``queue`` (made on first use, shared after)."""
        # The watcher holds the queue and so its client: the client's id can't be reused
        # while the entry lives.
        key = (id(queue.db.client), queue.db.name, queue.name)
        with cls._registry_lock:
            watcher = cls._registry.get(key)
            if watcher is None:
                watcher = cls._registry[key] = cls(queue)
            return watcher

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()  # the subscriber list
        self._lifecycle = threading.Lock()  # starting and stopping the thread
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._poke = threading.Event()
        self._snapshot = Snapshot((), {}, (), (), "stopped", "", "", 0)
        self._mode = ""
        self._reset()

    # -- public -------------------------------------------------------------------------

    def subscribe(
        self, callback: Callable[[Snapshot], None], *, window: int = 50, rate: float = 10.0
    ) -> Subscription:
        """Call ``callback(snapshot)`` on the watcher thread, at most ``rate`` times a second
        and only when the snapshot changed; the first call comes soon after. It must only
        assign widget traits and must not block; its exceptions are logged."""
        sub = Subscription(self, callback, window, rate)
        with self._lifecycle:
            with self._lock:
                grows = sub.window > self._window_size()
                self._subs.append(sub)
            if self._thread is None:
                self._start()
            elif grows:
                self._poke.set()  # read the larger window now
        return sub

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def poke(self) -> None:
        """Re-read the queue now (after a publish or a retry from this process)."""
        self._poke.set()

    def __repr__(self) -> str:
        s = self._snapshot
        return f"<Watcher {self.queue.db.name}.{self.queue.name} {s.state} ({s.mode or '-'})>"

    # -- the thread's life --------------------------------------------------------------

    def _start(self) -> None:
        self._stop = threading.Event()
        self._poke.clear()
        self._reset()
        self._set_state("connecting", "")
        self._publish()
        name = f"mjq-watch-{self.queue.db.name}.{self.queue.name}"
        self._thread = threading.Thread(target=self._run, args=(self._stop,), name=name)
        self._thread.daemon = True
        self._thread.start()

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lifecycle:
            with self._lock:
                if sub.closed:
                    return
                sub.closed = True
                self._subs.remove(sub)
                last = not self._subs
            if not last or self._thread is None:
                return
            thread, self._thread = self._thread, None
            self._stop.set()
            if thread is not threading.current_thread():  # a callback may close itself
                thread.join(JOIN_S)
                if thread.is_alive():
                    log.warning("mjq: the watcher of %s is slow to stop", self.queue.name)

    def _window_size(self) -> int:
        return max((sub.window for sub in self._subs), default=50)

    def _reset(self) -> None:
        """Forget what a previous run knew (only while no thread runs)."""
        self._jobs: dict[ObjectId, Job] = {}
        self._counts: dict[str, int] = {}
        self._finished: list[Finished] = []
        self._finished_keys: set[tuple[ObjectId, float]] = set()
        self._created: dict[ObjectId, float] = {}
        self._recent_changed = True
        self._recent_at = float("-inf")  # monotonic time finished/created were last copied
        self._state = self._message = ""
        self._counts_at = float("-inf")  # monotonic time of the last counts read
        self._counts_stale = True
        self._backoff = BACKOFF_S

    def _run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    self._follow(stop)
                except (PyMongoError, ConnectionError) as exc:  # + ServerUnavailable
                    self._outage(stop, failure_reason(exc))
                except Exception as exc:  # a bug of ours: say so, and don't spin
                    log.exception("mjq: the watcher of %s failed", self.queue.name)
                    self._outage(stop, failure_reason(exc))
        finally:
            self._set_state("stopped", "")
            self._publish()

    def _outage(self, stop: threading.Event, message: str) -> None:
        self._set_state("reconnecting", message)
        self._publish()
        self._notify()
        stop.wait(self._backoff)
        self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)

    def _follow(self, stop: threading.Event) -> None:
        """Open the source, read the queue, then follow it until stopped, or until the stream
        ends (the collection was dropped, say) and must be opened and read afresh."""
        stream = self._open_stream()
        wakeup = Wakeup(self.queue.collection) if stream is None else None
        try:
            self._seed()
            self._round()
            while not stop.is_set():
                if self._poke.is_set():
                    self._poke.clear()
                    self._read_window()
                if stream is None:
                    self._poll(stop, wakeup)
                elif not self._next_event(stream):
                    return
                self._round()
        finally:
            for closable in (stream, wakeup):
                if closable is not None:
                    with contextlib.suppress(Exception):
                        closable.close()

    def _open_stream(self) -> Any:
        """A change stream on the queue, or None where the server has none (polling)."""
        if self._mode == "polling":
            return None
        try:
            stream = self.queue.collection.watch(
                full_document="updateLookup", max_await_time_ms=AWAIT_MS
            )
        except OperationFailure as exc:  # a standalone mongod: code 40573
            log.info("mjq: no change streams on %s (%s); polling", self.queue.name, exc.code)
            self._mode = "polling"
            return None
        self._mode = "change stream"
        return stream

    # -- reading ------------------------------------------------------------------------

    def _seed(self) -> None:
        """Read the window and the finished jobs in history afresh (start, after an outage)."""
        self._read_window()
        self._read_history(HISTORY_SEED)
        self._counts_stale = True
        self._refresh_counts()
        self._recent_at = float("-inf")  # the first live snapshot carries the seed
        self._backoff = BACKOFF_S
        self._set_state("live", "")

    def _read_history(self, limit: int) -> None:
        """Note the finishes of the ``limit`` newest jobs in history, shown in the window or
        not (the charts count them all)."""
        rows = self.queue.history_collection.find(
            {}, {"status": 1, "ts": 1}, sort=[("_id", DESCENDING)], limit=limit
        )
        for row in rows:
            self._note_finished(row)

    def _read_window(self) -> None:
        with self._lock:
            size = self._window_size()
        jobs = {job.id: job for job in self.queue.jobs(limit=size)}
        if jobs != self._jobs:
            self._counts_stale = True
        self._jobs = jobs
        for job in jobs.values():
            self._note_job(job)

    def _poll(self, stop: threading.Event, wakeup: Wakeup) -> None:
        """Polling mode: wait up to POLL_S (less on an insert or a poke), then re-read."""
        # An empty queue gives the tailable cursor nothing to stand on: poll it faster.
        end = time.monotonic() + (POLL_S if self._jobs else POLL_EMPTY_S)
        while time.monotonic() < end and not stop.is_set() and not self._poke.is_set():
            held = self._held_back()
            if held is not None and held < AWAIT_MS / 1000:  # a callback its rate held back
                stop.wait(held)
                self._notify()
            elif wakeup.wait(min(0.1, max(0.0, end - time.monotonic()))):
                break
        if stop.is_set():
            return
        self._poke.clear()
        self._read_window()
        self._read_history(HISTORY_POLL)  # finishes beyond the window don't show in it
        if time.monotonic() >= self._counts_at + POLL_COUNTS_EVERY_S:
            self._counts_stale = True  # changes outside the window are invisible here

    def _next_event(self, stream: Any) -> bool:
        """Apply the stream's next event, if one comes within AWAIT_MS; False when the
        stream ended and must be opened again."""
        event = stream.try_next()
        if event is None:
            return stream.alive
        kind = event.get("operationType")
        if kind in ("invalidate", "drop", "rename", "dropDatabase"):
            return False
        key = (event.get("documentKey") or {}).get("_id")
        doc = event.get("fullDocument")
        if doc is None and kind in ("update", "replace"):
            # Gone before the lookup: a finished job swept out of the ring. Its final state
            # is in history (written before the ring's update).
            doc = self.queue.history_collection.find_one({"_id": key})
        self._counts_stale = True
        if kind == "delete":
            held = self._jobs.get(key)
            # A finished job leaves the ring for history (JobQueue._sweep_finished): it
            # stays shown as it was. Any other deletion (eviction, a hand-made delete) drops
            # it and refills the window.
            if held is not None and held.get("status") not in FINISHED:
                del self._jobs[key]
                self._read_window()
        elif kind in ("insert", "update", "replace") and doc is not None:
            self._apply(Job(doc))
        return True

    def _apply(self, job: Job) -> None:
        """A job's new state: into the window if it belongs there, noted if it finished."""
        size = self._window_size()
        if job.id in self._jobs or len(self._jobs) < size or job.id > min(self._jobs):
            self._jobs[job.id] = job
            if len(self._jobs) > size:
                for old in sorted(self._jobs)[: len(self._jobs) - size]:
                    del self._jobs[old]
        self._note_job(job)

    def _note_job(self, job: Mapping[str, Any]) -> None:
        created = (job.get("ts") or {}).get("created")
        if isinstance(created, dt.datetime) and job["_id"] not in self._created:
            self._created[job["_id"]] = created.timestamp()
            self._recent_changed = True
        self._note_finished(job)

    def _note_finished(self, doc: Mapping[str, Any]) -> None:
        item = _finished(doc)
        if item is None or (item.id, item.done) in self._finished_keys:
            return
        if item.done < time.time() - RECENT_S:
            return
        self._finished_keys.add((item.id, item.done))
        bisect.insort(self._finished, item, key=lambda f: f.done)
        self._recent_changed = True

    def _refresh_counts(self) -> None:
        self._counts = self.queue.counts(warn=False)  # the displays show `lost` themselves
        self._counts_at = time.monotonic()
        self._counts_stale = False

    # -- publishing to subscribers ------------------------------------------------------

    def _round(self) -> None:
        """After each read: counts if due, a new snapshot if anything changed, callbacks."""
        if self._counts_stale and time.monotonic() >= self._counts_at + COUNTS_EVERY_S:
            self._refresh_counts()
        self._publish()
        self._notify()

    def _set_state(self, state: str, message: str) -> None:
        self._state, self._message = state, message

    def _trim_recent(self) -> None:
        """Forget finished and created entries older than RECENT_S or beyond RECENT_MAX."""
        cutoff = time.time() - RECENT_S
        start = bisect.bisect_left(self._finished, cutoff, key=lambda f: f.done)
        start = max(start, len(self._finished) - RECENT_MAX)
        if start > 0:
            for item in self._finished[:start]:
                self._finished_keys.discard((item.id, item.done))
            del self._finished[:start]
            self._recent_changed = True
        excess = len(self._created) - RECENT_MAX
        old = []
        for key, created in self._created.items():  # in the order seen: about oldest first
            if created >= cutoff and len(old) >= excess:
                break
            old.append(key)
        for key in old:
            del self._created[key]
        self._recent_changed |= bool(old)

    def _publish(self) -> None:
        """Make a new snapshot when anything differs from the last one.

        ``finished`` and ``created`` (up to RECENT_MAX entries each) are copied at most every
        RECENT_EVERY_S: at hundreds of events a second, copying them per event would cost the
        kernel more than the rest of the watcher. Jobs, counts and state are always fresh.
        """
        current = self._snapshot
        now = time.monotonic()
        recent = False
        # while idle, old entries still age out (every few seconds)
        if now >= self._recent_at + (RECENT_EVERY_S if self._recent_changed else 5.0):
            self._trim_recent()
            recent, self._recent_at = self._recent_changed, now
        jobs = tuple(sorted(self._jobs.values(), key=lambda job: job.id, reverse=True))
        same = (
            not recent
            and jobs == current.jobs
            and self._counts == current.counts
            and (self._state, self._message, self._mode)
            == (current.state, current.message, current.mode)
        )
        if same:
            return
        finished, created = current.finished, current.created
        if recent:
            finished = tuple(self._finished)
            created = tuple(sorted(self._created.values()))
            self._recent_changed = False
        self._snapshot = Snapshot(
            jobs=jobs,
            counts=dict(self._counts),
            finished=finished,
            created=created,
            state=self._state,
            message=self._message,
            mode=self._mode,
            version=current.version + 1,
        )

    def _held_back(self) -> float | None:
        """Seconds until a callback held back by its rate is due; None when none waits."""
        version, now = self._snapshot.version, time.monotonic()
        with self._lock:
            due = [s.sent_at + s.interval - now for s in self._subs if s.sent_version != version]
        return max(0.0, min(due)) if due else None

    def _notify(self) -> None:
        snapshot = self._snapshot
        now = time.monotonic()
        with self._lock:
            due = [
                sub
                for sub in self._subs
                if sub.sent_version != snapshot.version and now >= sub.sent_at + sub.interval
            ]
        for sub in due:
            sub.sent_version, sub.sent_at = snapshot.version, now
            try:
                sub.callback(snapshot)
            except Exception:
                log.exception("mjq: a subscriber of the watcher of %s failed", self.queue.name)


def _finished(doc: Mapping[str, Any]) -> Finished | None:
    """The Finished record of a done/failed job document; None for any other."""
    status = doc.get("status")
    ts = doc.get("ts") or {}
    done, started, created = ts.get("done"), ts.get("started"), ts.get("created")
    if status not in FINISHED or not isinstance(done, dt.datetime):
        return None
    started = started if isinstance(started, dt.datetime) else None
    created = created if isinstance(created, dt.datetime) else None
    wait_s = (started - created).total_seconds() if started and created else None
    run_s = (done - started).total_seconds() if started else None
    return Finished(doc["_id"], str(status), done.timestamp(), wait_s, run_s)


def changes(
    queue: JobQueue, *, limit: int = 50, interval: float = 0.5, duration: float | None = None
) -> Iterator[tuple[Job, str | None]]:
    """Yield ``(job, previous_status)`` for each new job (previous None) and status change
    among the newest ``limit`` jobs, until ``duration`` seconds pass (None: forever).

    The queue's shared ``Watcher`` reads it; changes closer together than ``interval``
    seconds may be reported as one (waiting -> done)."""
    snapshots: queue_module.Queue[Snapshot] = queue_module.Queue()
    sub = Watcher.of(queue).subscribe(snapshots.put, window=limit, rate=1.0 / interval)
    end = None if duration is None else time.monotonic() + duration
    known: dict[ObjectId, str] = {}
    try:
        while end is None or time.monotonic() < end:
            wait = None if end is None else max(0.0, end - time.monotonic())
            try:
                snapshot = snapshots.get(timeout=wait)
            except queue_module.Empty:
                break
            for job in reversed(snapshot.jobs[:limit]):
                previous = known.get(job.id)
                if previous != job["status"]:
                    known[job.id] = job["status"]
                    yield job, previous
            if len(known) > 10 * limit:  # forget jobs long gone from the window
                known = {k: known[k] for k in sorted(known)[-limit:]}
    finally:
        sub.close()
