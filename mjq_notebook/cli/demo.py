"""The demo workload `mjq demo` runs: realistic jobs with varied run times and some failures."""

from __future__ import annotations

import random
import time
from typing import Any

from ..core.job import Job

KINDS = {  # kind: (share of jobs, median run time in seconds, chance an attempt fails)
    "thumbnail": (0.5, 0.01, 0.03),
    "email": (0.35, 0.02, 0.08),
    "report": (0.15, 0.08, 0.05),
}


class TransientError(RuntimeError):
    """A failure that a retry may get past (a flaky dependency, say)."""


def workload(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` job payloads of mixed kinds, reproducible for a given ``seed``."""
    rng = random.Random(seed)
    kinds = list(KINDS)
    weights = [KINDS[k][0] for k in kinds]
    jobs = [
        {"kind": kind, "user": f"user{rng.randrange(40):02d}", "seed": rng.randrange(2**31)}
        for kind in rng.choices(kinds, weights, k=n)
    ]
    for job in jobs:
        job["corrupt"] = rng.random() < 0.02  # fails on every attempt
    return jobs


def handle(job: Job) -> dict[str, Any]:
    """Pretend to work: sleep a log-normal time for the job's kind, fail now and then."""
    data = job.data
    _, median, fail_rate = KINDS[data["kind"]]
    rng = random.Random(data["seed"] + job.attempts)
    seconds = median * rng.lognormvariate(0, 0.6)
    time.sleep(seconds)
    if data.get("corrupt"):
        raise ValueError(f"corrupt input from {data['user']}: can't decode payload")
    if rng.random() < fail_rate:
        raise TransientError(f"{data['kind']} backend timed out for {data['user']}")
    return {"seconds": round(seconds, 4)}
