"""A wake-up signal for consumers: a tailable, awaitData cursor on the capped collection.

The cursor never decides who owns a job (claims do); it only ends a wait early when something
new is inserted. It reads raw batches, so one getMore consumes every document inserted since
the last one and a burst of inserts is one signal, not one per document. One thread at a time
follows the cursor; other threads of the same queue wait on a condition the follower signals.
``AnyWakeup`` is the same over several queues, for a worker that takes from more than one.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import bson
from pymongo import DESCENDING, CursorType
from pymongo.errors import PyMongoError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pymongo.collection import Collection

    from .queue import JobQueue

# awaitData time per getMore. Short enough that next(timeout=...) is honoured closely; an idle
# consumer costs one cheap getMore per interval, and an insert still wakes it within ~ms.
WAKEUP_AWAIT_MS = 250
FOLLOW_S = 1.0  # how long one wait of a queue's wake-up cursor lasts (AnyWakeup)


def last_inserted(collection: Collection, projection: dict[str, int]) -> dict[str, Any] | None:
    """The document inserted last into a capped collection (None: it is empty). A
    ``$natural`` hint, not a sort: SecantusDB ignores a ``$natural`` sort (it gives the
    first document) but honours the hint, as MongoDB does."""
    return collection.find_one({}, projection, hint=[("$natural", DESCENDING)])


class Wakeup:
    """Waits until a document is inserted into ``collection`` or the time-out passes."""

    def __init__(self, collection: Collection) -> None:
        self._collection = collection
        self._cursor: Any = None
        self._last_id: Any = None
        self._cond = threading.Condition()
        self._generation = 0
        self._following = False

    def wait(self, timeout: float) -> bool:
        """Block about ``timeout`` seconds (up to WAKEUP_AWAIT_MS more); True when an insert
        was seen."""
        deadline = time.monotonic() + timeout
        with self._cond:
            generation = self._generation
            while self._following:  # another thread follows the cursor: wait for its signal
                remaining = deadline - time.monotonic()
                if self._generation != generation or remaining <= 0:
                    return self._generation != generation
                self._cond.wait(remaining)
            if self._generation != generation:
                return True
            self._following = True
        seen = False
        try:
            seen = self._follow(deadline)
        finally:
            with self._cond:
                self._following = False
                self._generation += seen
                self._cond.notify_all()
        return seen

    def close(self) -> None:
        cursor, self._cursor = self._cursor, None
        if cursor is not None:
            cursor.close()

    def _follow(self, deadline: float) -> bool:
        # A getMore may overrun the deadline by up to WAKEUP_AWAIT_MS; sleeping out the rest
        # instead would leave the consumer deaf to inserts for that long.
        while time.monotonic() < deadline:
            if (self._cursor is None or not self._cursor.alive) and not self._open():
                if self._last_id is None:  # an empty collection: no cursor to wait on, so
                    # pause one await interval rather than spin; the caller then claims
                    time.sleep(min(WAKEUP_AWAIT_MS / 1000, max(0.0, deadline - time.monotonic())))
                return False
            try:
                batch = next(self._cursor, None)  # one getMore: returns within WAKEUP_AWAIT_MS
            except PyMongoError:
                self._cursor = None
                continue
            if self._take(batch):
                return True
            if not self._cursor.alive:
                # It died without news: the document it stood on is gone (eviction, a dropped
                # collection). Start again from the end, after the caller has claimed.
                self._cursor = self._last_id = None
                return False
        return False

    def _take(self, batch: bytes | None) -> bool:
        """Note the newest id in ``batch``; True when it holds a document we had not seen."""
        ids = [doc["_id"] for doc in bson.decode_all(batch)] if batch else []
        new = [i for i in ids if i != self._last_id]
        if ids:
            self._last_id = ids[-1]
        return bool(new)

    def _open(self) -> bool:
        """Open the cursor where the last one stopped; False when it could not be opened.

        Without a position it only takes one (the current end) and returns False: whatever
        was inserted before that must be found by the caller's next claim, not by waiting.
        """
        try:
            if self._last_id is None:
                last = last_inserted(self._collection, {"_id": 1})
                self._last_id = last and last["_id"]  # an empty collection: no tailable cursor
                return False
            # $gte keeps the cursor alive while the document we stopped at exists; if it was
            # evicted, whatever the cursor returns first is new to us.
            self._cursor = self._collection.find_raw_batches(
                {"_id": {"$gte": self._last_id}}, {"_id": 1}, cursor_type=CursorType.TAILABLE_AWAIT
            ).max_await_time_ms(WAKEUP_AWAIT_MS)
        except PyMongoError:
            self._cursor = None
            time.sleep(WAKEUP_AWAIT_MS / 1000)  # the server is unreachable: don't spin
            return False
        return True


class AnyWakeup:
    """Wakes worker threads within milliseconds of a publish to any of several queues.

    One thread per queue follows that queue's wake-up cursor (``JobQueue.wait``: a tailable
    cursor, never a poll) and counts what it sees. A worker thread notes the count before it
    tries its claims and waits only while the count is unchanged, so an insert that lands
    between its claims and its wait still wakes it at once.
    """

    def __init__(self, queues: Sequence[JobQueue]) -> None:
        self._queues = list(queues)
        self._cond = threading.Condition()
        self._count = 0
        self._closed = threading.Event()

    def start(self) -> None:
        self._closed = closed = threading.Event()  # each start's followers end with its own
        for queue in self._queues:
            name = f"mjq-wakeup-{queue.name}"
            args = (queue, closed)
            threading.Thread(target=self._follow, args=args, name=name, daemon=True).start()

    def close(self) -> None:
        """The followers end within ``FOLLOW_S``."""
        self._closed.set()

    def count(self) -> int:
        with self._cond:
            return self._count

    def wait(self, count: int, timeout: float) -> bool:
        """Block until the count differs from ``count`` (True) or ``timeout`` passes."""
        with self._cond:
            return self._cond.wait_for(lambda: self._count != count, timeout)

    def _ring(self) -> None:
        with self._cond:
            self._count += 1
            self._cond.notify_all()

    def _follow(self, queue: JobQueue, closed: threading.Event) -> None:
        while not closed.is_set():
            began = time.monotonic()
            try:
                seen = queue.wait(FOLLOW_S)
            except Exception:  # the server is away: the claims report it; don't spin
                closed.wait(FOLLOW_S)
                continue
            # A wait that ends early without news had no cursor to stand on (an empty
            # collection, a cursor that died): the claimers look, as JobQueue.next does then.
            if seen or time.monotonic() - began < FOLLOW_S / 2:
                self._ring()
