"""How soon a consumer blocked in ``next(timeout=...)`` claims a job published elsewhere:
the measurement, and the bounds that tell a wake-up from a re-check."""

from __future__ import annotations

import random
import statistics
import threading
import time

from mjq_notebook import JobQueue

# An insert wakes it (the tailable cursor of wakeup.py): a few ms. Without that it would still
# claim the job, only later: on its own re-check of what is due (queue.py `_idle_wait`: at
# most every RECHECK_S), or, where the collection is empty and no cursor can stand, on a poll
# (POLL_S, wakeup.AWAIT_MS). The tests publish at random moments in the re-check period and
# compare the median *delay* with WAKE_S: the time from publish to claim beyond what the same
# publish and claim take with nobody waiting (measured in the same rounds, so a server slowed
# by the machine's load slows both). A fallback delays by U(0, 0.25 s), under 40 ms with
# p = 0.16 per publish, so 6 of 11 under it with p < 0.004; a wake-up delays by a few ms.
RECHECK_S = 1.0
POLL_S = 0.25
WAKE_S = 0.04
PUBLISHES = 11


def claim_delays(consumer: JobQueue, publisher: JobQueue, rounds: int = PUBLISHES):
    """Seconds each of ``rounds`` publishes by ``publisher`` took to be claimed by
    ``consumer``, blocked in ``next(timeout=10)`` in another thread, beyond the median time of a
    publish and a claim made straight after it (the baseline, one per round, just before it).
    Each publish lands at a random moment of the consumer's re-check period.
    Returns (delays, ids published by the blocked rounds, baseline seconds)."""
    rng = random.Random(15)
    latencies, ids, direct = [], [], []
    for n in range(rounds):
        sent = time.monotonic()
        publisher.pub({"n": n, "direct": True})
        job = consumer.next(timeout=0)
        direct.append(time.monotonic() - sent)
        consumer.done(job)
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
    baseline = statistics.median(direct)
    return [s - baseline for s in latencies], ids, baseline


def assert_woken(delays: list[float], baseline: float) -> None:
    """The median delay is a wake-up's, not a re-check's or a poll's."""
    median = statistics.median(delays)
    shown = ", ".join(f"{s * 1000:.0f}" for s in sorted(delays))
    assert median < WAKE_S, (
        f"claimed a median {median * 1000:.0f} ms later than a publish and claim take "
        f"({baseline * 1000:.0f} ms); delays {shown} ms"
    )
