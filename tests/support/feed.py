"""A synthetic change stream: real BSON change-event documents at a set rate, no server.

It stands in for what ``collection.watch()`` returns, so the watcher's consumption path can
be driven far past what the embedded server produces (a real MongoDB's thousands of jobs a
second). Events are made as a server makes them (``_id`` resume token, ``clusterTime``,
``ns``, ``documentKey``, ``updateDescription``), encoded to BSON once and decoded on each
``try_next()`` as pymongo decodes a server's reply. Used by tests/test_live_cost.py and
benchmarks/bench_widgets.py.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from typing import Any

import bson
from bson import ObjectId, Timestamp

STATUS_STEPS = ("waiting", "working", "done")  # one job is an insert and two updates


def change_events(db: str, coll: str, jobs: int = 1000) -> list[bytes]:
    """BSON change events of ``jobs`` jobs (an insert, then working, then done, each)."""
    events = []
    now = dt.datetime.now(dt.timezone.utc)
    for n in range(jobs):
        job_id = ObjectId()
        for step, status in enumerate(STATUS_STEPS):
            token = {"_data": f"82{n:08x}{step:02x}" + "0" * 90}
            event: dict[str, Any] = {
                "_id": token,
                "operationType": "insert" if step == 0 else "update",
                "clusterTime": Timestamp(int(now.timestamp()), n * 3 + step),
                "wallTime": now,
                "ns": {"db": db, "coll": coll},
                "documentKey": {"_id": job_id},
            }
            if step == 0:
                event["fullDocument"] = {
                    "_id": job_id,
                    "status": status,
                    "ts": {"created": now, "started": None, "done": None},
                    "data": {"n": n, "kind": "email", "to": f"user{n}@example.com"},
                    "priority": 0,
                    "attempts": 0,
                    "max_attempts": 3,
                }
            else:
                event["updateDescription"] = {
                    "updatedFields": {
                        "status": status,
                        f"ts.{'started' if step == 1 else 'done'}": now,
                    },
                    "removedFields": [],
                    "truncatedArrays": [],
                }
            events.append(bson.encode(event))
    return events


class SyntheticStream:
    """Hands out ``rate`` events a second from ``events`` (cycled) as ``try_next()`` asks, each
    freshly decoded; waits up to ``await_s`` for the next when none is due, as awaitData does.

    ``offered`` counts the events the feed made available while open (rate x time open);
    ``read`` those actually handed out. A stream opened later starts at "now", as a change
    stream does: what it did not hand out is gone."""

    lock = threading.Lock()
    offered = 0  # over every stream of this class (a watcher reopens its stream)
    read = 0

    def __init__(self, events: list[bytes], rate: float, await_s: float = 0.2) -> None:
        self._events = itertools.cycle(events)
        self._rate = rate
        self._await_s = await_s
        self._opened = time.monotonic()
        self._served = 0
        self.alive = True

    def _due(self) -> int:
        return int((time.monotonic() - self._opened) * self._rate)

    def try_next(self) -> dict[str, Any] | None:
        if not self.alive:
            return None
        if self._served >= self._due():
            wait = (self._served + 1) / self._rate - (time.monotonic() - self._opened)
            time.sleep(max(0.0, min(self._await_s, wait)))
            if self._served >= self._due():
                return None
        self._served += 1
        with SyntheticStream.lock:
            SyntheticStream.read += 1
        return bson.decode(next(self._events))

    def close(self) -> None:
        if self.alive:
            self.alive = False
            with SyntheticStream.lock:
                SyntheticStream.offered += self._due()


def feed_queue(queue: Any, rate: float, monkeypatch: Any = None) -> None:
    """Make ``queue.collection.watch(...)`` return synthetic streams at ``rate`` events a
    second (with pytest's ``monkeypatch`` when given, else by plain assignment)."""
    events = change_events(queue.db.name, queue.name)

    def watch(*args: Any, **kwargs: Any) -> SyntheticStream:
        await_ms = kwargs.get("max_await_time_ms") or 1000
        return SyntheticStream(events, rate, await_ms / 1000)

    if monkeypatch is not None:
        monkeypatch.setattr(queue.collection, "watch", watch)
    else:
        queue.collection.watch = watch
