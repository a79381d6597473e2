"""Days of rollups for a queue, written as a roller writes them (``Minute.fields()`` in
``<queue>.metrics``), for views of long ranges that a test can't wait days for."""

from __future__ import annotations

import datetime as dt
import math
import random

from mjq_notebook import JobQueue
from mjq_notebook.core import metrics
from mjq_notebook.core.job import utcnow
from mjq_notebook.core.minutes import Minute, floor
from mjq_notebook.core.sketch import Sketch


def seed_rollups(queue: JobQueue, days: int = 7, every_min: int = 10) -> int:
    """One minute document every ``every_min`` minutes over the last ``days`` (not the
    current minute): a daily rhythm of jobs, a few failures, waits that grow with the load and
    one slow afternoon two days ago. Returns the documents written."""
    rng = random.Random(26)
    now = floor(utcnow())
    docs = []
    for k in range(1, days * 24 * 60 // every_min + 1):
        minute = now - dt.timedelta(minutes=every_min * k)
        hour = minute.hour + minute.minute / 60
        load = 1 + math.sin(2 * math.pi * (hour - 9) / 24)  # 0 at 3:00, 2 at 15:00
        slow = 2 * 86400 <= (now - minute).total_seconds() < 2 * 86400 + 3 * 3600
        n = int(10 + 40 * load) + rng.randint(0, 8)
        failed = sum(rng.random() < (0.15 if slow else 0.02) for _ in range(n))
        waits = [
            rng.lognormvariate(math.log(0.3 + load + (40 if slow else 0)), 0.7) for _ in range(n)
        ]
        runs = [rng.lognormvariate(math.log(0.2), 0.5) for _ in range(n)]
        fields = Minute(
            created=n, started=n, done=n - failed, failed=failed,
            wait=Sketch.of(waits), run=Sketch.of(runs),
        ).fields()  # fmt: skip
        fields.update(_id=minute, at=minute, oldest_wait_s=max(waits) * 1.2)
        docs.append(fields)
    metrics.collection(queue).insert_many(docs)
    return len(docs)
