"""What a watcher hands its views (``Snapshot``) and how each view subscribes to it
(``Subscription``: a callback, a window of jobs, a rate, a followed job)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bson import ObjectId

from ..core.job import Job
from .activity import Activity

if TYPE_CHECKING:
    from .watch import Watcher


@dataclass(frozen=True)
class Snapshot:
    """What a watcher knows about its queue at one moment. Never mutate its jobs."""

    jobs: tuple[Job, ...]  # newest first: the newest `window` jobs (max of the subscribers')
    counts: dict[str, int]  # queue.counts() as read at `counts_at`
    activity: Activity  # the charts' per-second counts and latency sample
    state: str  # "connecting" | "live" | "reconnecting" | "stopped"
    message: str  # why it is reconnecting ("" otherwise); never holds a password
    mode: str  # "change stream" | "polling" ("" before the first connection)
    version: int  # bumps on every change
    followed: dict[ObjectId, Job | None] = field(default_factory=dict)  # see Subscription.follow
    counts_at: float = 0.0  # epoch seconds of the counts' read (0: never)
    # the newest `window` working jobs, read with `jobs`: with a backlog they are older than
    # the newest jobs, and a view that shows `jobs` alone would hide what is running
    working: tuple[Job, ...] = ()
    # read only while a subscriber wants them (``Subscription.want``), else None: whether the
    # queue is paused, and the worker registry (``q.workers()``'s dicts, newest first)
    paused: bool | None = None
    workers: tuple[dict, ...] | None = None
    workers_at: float = 0.0  # epoch seconds of the workers' read (0: never)
    # while a subscriber wants it and working jobs are in view (``working`` and the followed
    # ones): the records of their workers that read as lost, by worker id, else empty
    lost_workers: dict[str, dict] = field(default_factory=dict)
    # read with them: the ids of those workers' jobs whose lease has ended (the note changes)
    lapsed: frozenset[ObjectId] = frozenset()


class Subscription:
    """One subscriber's callback; ``close()`` it when the view goes away."""

    def __init__(
        self, watcher: Watcher, callback: Callable[[Snapshot], None], window: int, rate: float
    ) -> None:
        self.watcher = watcher
        self.callback = callback
        self.window = max(1, int(window))
        self.rate = rate
        self.followed: ObjectId | None = None
        self.paused = False  # wants snapshot.paused
        self.workers = False  # wants snapshot.workers
        self.lost_workers = False  # wants snapshot.lost_workers
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

    def follow(self, job_id: ObjectId | None) -> None:
        """Keep ``job_id``'s current document in ``snapshot.followed`` (a detail pane's job,
        shown or not); None stops."""
        self.followed = job_id
        self.watcher.poke()

    def want(
        self,
        *,
        paused: bool | None = None,
        workers: bool | None = None,
        lost_workers: bool | None = None,
    ) -> None:
        """Ask for (True) or stop asking for (False) the queue's pause flag, its workers or the
        lost workers of the working jobs in view in the snapshots: the watcher reads each only
        while some subscriber wants it (and the last only while working jobs are in view)."""
        changed = False
        wants = (("paused", paused), ("workers", workers), ("lost_workers", lost_workers))
        for name, value in wants:
            if value is not None and getattr(self, name) != bool(value):
                setattr(self, name, bool(value))
                changed = changed or bool(value)
        if changed:
            self.watcher.poke()

    def resend(self) -> None:
        """Call back soon with the current snapshot even if it has not changed (a view's
        filter changed, say)."""
        self.sent_version, self.sent_at = -1, float("-inf")
        self.watcher.poke()

    def close(self) -> None:
        """Stop the callbacks; the last subscription of a watcher stops its thread. Idempotent."""
        self.watcher._unsubscribe(self)
