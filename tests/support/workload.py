"""A generated queue workload with known distributions, written into a queue's history and
attempts' log as the queue writes them (finished jobs, every ended attempt), for checking the
rollups against exact values."""

from __future__ import annotations

import datetime as dt
import os
import random
import struct
from dataclasses import dataclass, field

from bson import ObjectId

MS = dt.timedelta(milliseconds=1)


def object_id(at: dt.datetime) -> ObjectId:
    """A unique id made at ``at`` (as a publisher's ObjectId() would be)."""
    return ObjectId(struct.pack(">I", int(at.timestamp())) + os.urandom(8))


def bson_ms(when: dt.datetime) -> dt.datetime:
    """BSON's precision."""
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


@dataclass
class Workload:
    """The history rows and attempt records of ``jobs`` jobs published from ``start`` over
    ``minutes`` (Poisson arrivals), with lognormal waits and run times, several workers,
    retries, failures and cancels; ``started`` and ``retried`` per minute as the truth."""

    start: dt.datetime
    minutes: int
    jobs: int
    seed: int = 26
    history: list[dict] = field(default_factory=list)
    attempts: list[dict] = field(default_factory=list)
    started: dict[dt.datetime, int] = field(default_factory=dict)
    retried: dict[dt.datetime, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        rate = self.jobs / (self.minutes * 60.0)
        at = self.start
        workers = [f"host{i}:{1000 + i}:{i:04x}" for i in range(4)]
        for _ in range(self.jobs):
            at = bson_ms(at + dt.timedelta(seconds=rng.expovariate(rate)))
            self._job(rng, at, workers)

    def _job(self, rng: random.Random, created: dt.datetime, workers: list[str]) -> None:
        job_id = object_id(created)
        kind = rng.random()
        tries = 1 if kind < 0.8 else 2 if kind < 0.88 else 3
        status = "cancelled" if kind > 0.95 else "failed" if kind > 0.88 else "done"
        ts = {"created": created, "started": None, "done": None}
        doc = {
            "_id": job_id, "status": status, "ts": ts, "data": {"n": len(self.history)},
            "priority": 0, "available_at": created, "attempts": 0, "max_attempts": 3,
            "lease_until": None, "worker": None,
        }  # fmt: skip
        if status == "cancelled":
            ts["done"] = bson_ms(created + dt.timedelta(seconds=rng.uniform(0.5, 30)))
            self.history.append(doc)
            return
        clock = created
        for attempt in range(1, tries + 1):
            began = bson_ms(clock + dt.timedelta(seconds=rng.lognormvariate(0.0, 1.0)))
            ended = bson_ms(began + dt.timedelta(seconds=rng.lognormvariate(-0.7, 1.2)))
            outcome = "done" if attempt == tries and status == "done" else "failed"
            worker = rng.choice(workers)
            self.attempts.append({
                "_id": {"job": job_id, "attempt": attempt}, "kind": "attempt", "job": job_id,
                "attempt": attempt, "worker": worker, "started": began, "ended": ended,
                "outcome": outcome, "error": None, "progress": None,
            })  # fmt: skip
            self._count(self.started, began)
            if outcome == "failed" and attempt < tries:
                self._count(self.retried, ended)
            clock = ended + dt.timedelta(seconds=0.5 * 2 ** (attempt - 1))  # the back-off
            ts.update(started=began, done=ended)
            doc.update(attempts=attempt, worker=worker)
        self.history.append(doc)

    @staticmethod
    def _count(counts: dict[dt.datetime, int], when: dt.datetime) -> None:
        minute = when.replace(second=0, microsecond=0)
        counts[minute] = counts.get(minute, 0) + 1

    @property
    def end(self) -> dt.datetime:
        """After every time of the workload."""
        return max(doc["ts"]["done"] for doc in self.history) + MS
