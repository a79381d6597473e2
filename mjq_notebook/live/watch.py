"""Follow a queue live: one background watcher per queue feeds every live view of it.

A ``Watcher`` re-reads what the views show (the newest jobs and the working ones, the counts,
the charts' ``Activity``, the jobs a view follows and, while a view wants them, the pause flag,
the worker registry and which workers of the working jobs in view are lost) in one
background daemon thread and
hands immutable ``Snapshot``s to subscribers (the notebook widgets). Its cost
is per refresh, not per job: a change only says *that* something changed, and refreshes come
at most REFRESH_S apart (counts COUNTS_S, charts ACTIVITY_S) however many jobs go by. The pause
flag (one read by key), the workers (a few records) and the lost workers of the working jobs
in view (one read by ``_id``, none while no job is working) are read on a clock, PAUSED_S and
WORKERS_S, as they change elsewhere without a change to the queue.

Where the server has change streams (replica sets, SecantusDB) the signal is a stream of the
queue read one event at a time and opened afresh after each refresh, so events that pile up
meanwhile are never read. Elsewhere (a standalone mongod) the watcher polls every POLL_S,
woken early by inserts through a tailable cursor. If the server goes away it says so (state
``"reconnecting"``), backs off and starts again; it never raises into the notebook.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pymongo
from bson import ObjectId
from pymongo.errors import OperationFailure, PyMongoError

from ..core.job import Job
from ..core.outage import Backoff, failure_reason
from ..core.wakeup import Wakeup
from .activity import EMPTY, ActivityReader
from .lost import lost_workers
from .subscription import Snapshot, Subscription

if TYPE_CHECKING:
    from ..core.queue import JobQueue

log = logging.getLogger("mjq_notebook")

REFRESH_S = 0.25  # the newest jobs and followed jobs are re-read at most this often
COUNTS_S = 0.5  # counts at most this often
ACTIVITY_S = 1.0  # the charts' activity at most this often
POLL_S = 0.5  # polling mode: look at least this often
POLL_EMPTY_S = REFRESH_S  # and this often while the queue is empty
QUIET_S = 2.0  # polling mode: counts and charts this often while the newest jobs stay the same
STREAM_AWAIT_MS = 500  # change-stream mode: longest wait for an event a getMore (idle: 2/s)
# ...and in all: a server that went away shows "reconnecting" after this, not after the
# client's server selection time-out (pymongo's default: 30 s)
STREAM_TIMEOUT_S = 3.0
SIGNAL_ONLY = [{"$project": {"operationType": 1}}]  # an event says that, not what, changed
PAUSED_S = 1.0  # the pause flag, while a view shows it (and with each read of the counts)
WORKERS_S = 2.0  # the worker registry, while a view shows it
JOIN_S = 10.0  # close() waits this long for the thread (a dead server can slow a close)
_EVERY = {  # per part read
    "jobs": REFRESH_S,
    "counts": COUNTS_S,
    "activity": ACTIVITY_S,
    "paused": PAUSED_S,
    "workers": WORKERS_S,
    "lost_workers": WORKERS_S,
}
_CLOCKED = ("paused", "workers", "lost_workers")  # read on a clock while wanted, not on a change
_SHOWN: tuple[str, ...]  # grows below
_SHOWN = ("jobs", "working", "counts", "activity", "followed", "state", "message", "mode")
# what a snapshot shows, each held by the watcher as ``_<name>``; a new read of the workers
# is a new snapshot (their heartbeats' ages are shown), but only while a view wants them
_SHOWN += (*_CLOCKED, "workers_at", "lapsed")


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
        self._snapshot = Snapshot((), {}, EMPTY, "stopped", "", "", 0)
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

    def poke(self, *parts: str) -> None:
        """Re-read the queue now (after a publish or a retry from this process); ``parts``
        ("paused", "workers") are read now even if read less than their period ago."""
        for part in parts:
            self._read_at[part] = float("-inf")
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
        self._jobs: tuple[Job, ...] = ()
        self._working: tuple[Job, ...] = ()
        self._followed: dict[ObjectId, Job | None] = {}
        self._counts: dict[str, int] = {}
        self._counts_at = 0.0
        self._paused: bool | None = None
        self._workers: tuple[dict, ...] | None = None
        self._workers_at = 0.0
        self._lost_workers: dict[str, dict] = {}
        self._lapsed: frozenset[ObjectId] = frozenset()
        self._activity = EMPTY
        self._reader = ActivityReader(self.queue)
        self._state = self._message = ""
        self._dirty = dict.fromkeys(_EVERY, True)
        self._read_at = dict.fromkeys(self._dirty, float("-inf"))  # monotonic, per part
        self._backoff = Backoff(first=0.25)  # pauses between attempts while the server is away

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
        self._mark_dirty()  # everything is read afresh once back
        self._publish()
        self._notify()
        self._backoff.wait(stop)

    def _follow(self, stop: threading.Event) -> None:
        """Follow the queue by change stream, or by polling where the server has none."""
        stream = self._open_stream()
        if stream is None:
            self._polling(stop)
        else:
            self._stream(stop, stream)

    def _open_stream(self) -> Any:
        """A signal-only change stream on the queue, or None where the server has none."""
        if self._mode == "polling":
            return None
        try:
            stream = self.queue.collection.watch(
                SIGNAL_ONLY, max_await_time_ms=STREAM_AWAIT_MS, batch_size=1
            )
        except OperationFailure as exc:  # a standalone mongod: code 40573
            log.info("mjq: no change streams on %s (%s); polling", self.queue.name, exc.code)
            self._mode = "polling"
            return None
        self._mode = "change stream"
        return stream

    def _stream(self, stop: threading.Event, stream: Any) -> None:
        """Change-stream mode. Each stream is opened *before* the refresh it triggers, so a
        change after that refresh's reads is always signalled; after one event it is closed
        and a new one opened, which skips whatever piled up behind it."""
        while True:
            with contextlib.closing(stream):
                self._refresh()
                changed = self._await_change(stream, stop)
            if stop.is_set():
                return
            self._mark_dirty()
            if changed:
                self._pause_until_due(stop)
            stream = self._open_stream()
            if stream is None:
                return

    def _await_change(self, stream: Any, stop: threading.Event) -> bool:
        """Wait on ``stream`` for a change (True), refreshing what is due and serving pokes
        meanwhile; False when the stream ended or the watcher stops."""
        while not stop.is_set():
            if (held := self._held_for()) is not None:  # a snapshot a view's rate held back:
                if stop.wait(min(held, STREAM_AWAIT_MS / 1000)):  # when due, not after an await
                    return False
                self._notify()
            with pymongo.timeout(STREAM_TIMEOUT_S):
                event = stream.try_next()
            if event is not None:
                kind = event.get("operationType")
                if kind in ("invalidate", "drop", "rename", "dropDatabase"):
                    self._mark_dirty()
                    return False
                return True
            if not stream.alive:
                return False
            if self._poke.is_set():
                self._poke.clear()
                self._mark_dirty()
            self._refresh()
        return False

    def _polling(self, stop: threading.Event) -> None:
        """Polling mode: the newest jobs every POLL_S (sooner on an insert or a poke); counts
        and charts with them when they changed, else every QUIET_S."""
        wakeup = Wakeup(self.queue.collection)
        try:
            while not stop.is_set():
                self._refresh()
                # an empty queue gives the tailable cursor nothing to stand on: look sooner
                end = time.monotonic() + (POLL_S if self._jobs else POLL_EMPTY_S)
                while not stop.is_set() and not self._poke.is_set():
                    left = end - time.monotonic()
                    if left <= 0 or wakeup.wait(min(left, 0.1)):
                        break
                    self._notify()  # a callback its rate held back
                self._poke.clear()
                self._dirty["jobs"] = True
                self._pause_until_due(stop)
                quiet = time.monotonic() - self._read_at["counts"] >= QUIET_S
                if quiet:
                    self._dirty["counts"] = self._dirty["activity"] = True
        finally:
            wakeup.close()

    # -- reading ------------------------------------------------------------------------

    def _mark_dirty(self) -> None:
        self._dirty = dict.fromkeys(self._dirty, True)

    def _pause_until_due(self, stop: threading.Event) -> None:
        """Coalesce: wait until the newest jobs may be read again."""
        stop.wait(max(0.0, self._read_at["jobs"] + REFRESH_S - time.monotonic()))

    def _refresh(self) -> None:
        """Re-read each part that changed and is due, then publish and call back."""
        now = time.monotonic()
        every = _EVERY
        with self._lock:
            wanted = {part for part in _CLOCKED if any(getattr(s, part) for s in self._subs)}
        for part in _CLOCKED:
            self._dirty[part] = part in wanted
        due = {
            part
            for part, dirty in self._dirty.items()
            if dirty and now >= self._read_at[part] + every[part]
        }
        if "jobs" in due:
            with self._lock:
                size = self._window_size()
                follow = {sub.followed for sub in self._subs if sub.followed is not None}
            jobs = tuple(self.queue.jobs(limit=size))
            working = self._read_working(jobs, size)
            if jobs != self._jobs or working != self._working:
                self._dirty["counts"] = self._dirty["activity"] = True
                due |= {p for p in ("counts", "activity") if now >= self._read_at[p] + every[p]}
            self._jobs, self._working = jobs, working
            self._followed = self._read_followed(follow, jobs)
            self._live()  # the rows go out now, not after the slower counts and charts
        if "counts" in due:
            self._counts = self.queue.counts(warn=False)  # the displays show `lost` themselves
            self._counts_at = time.time()
            if "paused" in wanted:
                due.add("paused")
        self._read_control(due, wanted)
        if "activity" in due:
            self._activity = self._reader.read(time.time())
        for part in due:
            self._dirty[part] = False
            self._read_at[part] = now
        self._live()

    def _read_control(self, due: set[str], wanted: set[str]) -> None:
        """The pause flag and the workers: read when due, forgotten while no one wants them
        (a view that asks again never sees an old value)."""
        if "paused" in due:
            self._paused = self.queue.paused
        elif "paused" not in wanted:
            self._paused = None
        if "workers" in due:
            self._workers = tuple(self.queue.workers())
            self._workers_at = time.time()
        elif "workers" not in wanted:
            self._workers, self._workers_at = None, 0.0
        if "lost_workers" in due:
            self._read_lost_workers()
        elif "lost_workers" not in wanted:
            self._lost_workers, self._lapsed = {}, frozenset()

    def _read_lost_workers(self) -> None:
        """Which workers of the working jobs in view are lost (``lost.lost_workers``)."""
        followed = (job for job in self._followed.values() if job is not None)
        registry = self._workers if time.time() - self._workers_at < WORKERS_S else None
        self._lost_workers, self._lapsed = lost_workers(
            self.queue, (*self._working, *followed), registry
        )

    def _live(self) -> None:
        """After a successful read: live again, publish and call back."""
        if self._state != "live":
            self._backoff.reset()
            self._set_state("live", "")
        self._publish()
        self._notify()

    def _read_working(self, jobs: tuple[Job, ...], size: int) -> tuple[Job, ...]:
        """The newest ``size`` working jobs. A window that is not full holds every job, so
        they are in it; else one more small read, by the queue's status index, right after
        the window's (a job claimed in between shows as working)."""
        if len(jobs) < size:
            return tuple(job for job in jobs if job.get("status") == "working")
        return tuple(self.queue.jobs(status="working", limit=size))

    def _read_followed(self, ids: set[ObjectId], jobs: tuple[Job, ...]) -> dict:
        """The followed jobs: from the rows just read, else from the queue (None: gone)."""
        shown: dict[ObjectId, Job | None] = {job.id: job for job in jobs if job.id in ids}
        missing = ids - set(shown)
        if missing:
            query = {"_id": {"$in": list(missing)}}
            found = {job.id: job for job in self.queue.jobs(limit=len(missing), query=query)}
            shown.update((job_id, found.get(job_id)) for job_id in missing)
        return shown

    # -- publishing to subscribers ------------------------------------------------------

    def _set_state(self, state: str, message: str) -> None:
        self._state, self._message = state, message

    def _publish(self) -> None:
        """Make a new snapshot when anything differs from the last one."""
        current = self._snapshot
        fresh = {name: getattr(self, f"_{name}") for name in _SHOWN}
        if all(getattr(current, name) == value for name, value in fresh.items()):
            return
        fresh.update(counts=dict(self._counts), followed=dict(self._followed))
        self._snapshot = Snapshot(
            **fresh,
            version=current.version + 1,
            counts_at=self._counts_at,
        )

    def _held_for(self) -> float | None:
        """Seconds until a snapshot a subscriber's rate held back may go (None: none held)."""
        version, now = self._snapshot.version, time.monotonic()
        with self._lock:
            waits = [s.sent_at + s.interval - now for s in self._subs if s.sent_version != version]
        return max(0.0, min(waits)) if waits else None

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
