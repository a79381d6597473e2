"""``q.history()`` in bounded memory: loading 20,000 jobs (with data, as a real queue has)
must not grow the process's peak RSS by more than a few times the frame it returns. The
load decoded every batch into dicts before making columns, and peaked at ~12x the frame
(benchmarks/RESULTS.md); decoding each batch as it arrives, a chunk at a time, into typed
columns keeps it under ~3x. Measured in a process of its own (tests/support/peak.py)."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from bson import ObjectId

from mjq_notebook import JobQueue

JOBS = 20_000
BOUND = 10.0  # peak RSS growth over the frame; ~6x now (one batch and chunk fixed), ~15x before
ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="measures the peak RSS through /proc"
)


def finished_jobs(n: int) -> list[dict]:
    """``n`` finished jobs as a finish writes them, with a few data fields and a nested one."""
    rng = random.Random(7)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    docs = []
    for i in range(n):
        created = start + dt.timedelta(seconds=i)
        started = created + dt.timedelta(seconds=rng.random() * 3)
        done = started + dt.timedelta(seconds=rng.random() * 30)
        docs.append({
            "_id": ObjectId(),
            "status": "failed" if i % 30 == 0 else "done",
            "ts": {"created": created, "started": started, "done": done},
            "data": {
                "kind": rng.choice(["thumbnail", "transcode", "report"]),
                "user": f"user{rng.randrange(200):03d}",
                "size": rng.randrange(10**7),
                "options": {"quality": rng.choice(["low", "high"]), "ok": rng.random() < 0.8},
            },
            "priority": 0,
            "attempts": 1,
            "max_attempts": 3,
            "lease_until": None,
            "worker": f"node{i % 4}:{1000 + i % 7}:abcdef",
            "result": {"ok": True},
        })  # fmt: skip
    return docs


def test_loading_history_peaks_at_a_few_times_the_frame(db, server_uri):
    q = JobQueue(db, name="memory")
    docs = finished_jobs(JOBS)
    for start in range(0, JOBS, 5000):
        q.history_collection.insert_many(docs[start : start + 5000], ordered=False)
    del docs
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-m", "tests.support.peak", server_uri, db.name, "memory"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    measured = json.loads(run.stdout.strip().splitlines()[-1])
    assert measured["rows"] == JOBS
    ratio = measured["peak_growth"] / measured["frame"]
    assert ratio < BOUND, f"peak RSS growth {ratio:.1f}x the frame ({measured})"
