"""How soon a consumer blocked in ``next(timeout=...)`` claims a job published elsewhere:
the measurement, and the bounds that tell a wake-up from a re-check."""

from __future__ import annotations

import random
import threading
import time

from mjq_notebook import JobQueue

# An insert wakes it (the tailable cursor of wakeup.py): a few ms. Without that it would still
# claim the job, only later: on its own re-check of what is due (queue.py `_idle_wait`: at
# most every RECHECK_S), or, where the collection is empty and no cursor can stand, on a poll
# (POLL_S, wakeup.AWAIT_MS). The tests publish at random moments in the re-check period and
# compare the median with WAKE_S: a fallback that claims within U(0, 0.25 s) is under 40 ms
# with p = 0.16 per publish, so 6 of 11 medians under it with p < 0.004; the wake-up is ~5 ms.
RECHECK_S = 1.0
POLL_S = 0.25
WAKE_S = 0.04
PUBLISHES = 11


def claim_latencies(consumer: JobQueue, publisher: JobQueue, rounds: int = PUBLISHES):
    """Seconds from each of ``rounds`` publishes by ``publisher`` to its claim by ``consumer``,
    blocked in ``next(timeout=10)`` in another thread; each publish lands at a random moment of
    the consumer's re-check period. Returns (latencies, ids published)."""
    rng = random.Random(15)
    latencies, ids = [], []
    for n in range(rounds):
        got, waiting = [], threading.Event()

        def consume(got=got, waiting=waiting):
            waiting.set()
            got.append((consumer.next(timeout=10), time.monotonic()))

        thread = threading.Thread(target=consume)
        thread.start()
        assert waiting.wait(10)
        time.sleep(rng.uniform(0.15, RECHECK_S - 0.05))  # past its first claim, then anywhere
        sent = time.monotonic()
        ids.append(publisher.pub({"n": n}))
        thread.join(15)
        assert got and got[0][0].id == ids[-1]
        latencies.append(got[0][1] - sent)
        consumer.done(got[0][0])
    return latencies, ids
