"""Rollups under competition: two worker processes finish jobs into the same minutes while two
more processes (and the workers' own rollers) roll up all the time; the minutes they leave
count every job once, none twice, none missing."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap

import pandas as pd

from mjq_notebook.core import metrics
from mjq_notebook.core.job import utcnow

from .support.processes import start_worker, stop_processes
from .support.waiting import wait_for

JOBS = 200
ROLLER = textwrap.dedent(
    """
    import os, sys, time
    from mjq_notebook import JobQueue
    from mjq_notebook.core import metrics
    from mjq_notebook.server import client_for
    uri, db, stop = sys.argv[1:4]
    queue = JobQueue.open(client_for(uri)[db], "jobqueue")
    while not os.path.exists(stop):
        metrics.roll(queue, wait=0)
        time.sleep(0.1)
    """
)


def _token(queue) -> int:
    """How many times a pass has taken the rollups' lease."""
    state = queue._meta.find_one({"_id": metrics.STATE_ID}) or {}
    return int(state.get("token") or 0)


def test_competing_workers_and_rollers_count_each_job_once(server_uri, db, queue, tmp_path):
    stop = tmp_path / "stop"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    rollers = [
        subprocess.Popen([sys.executable, "-c", ROLLER, server_uri, db.name, str(stop)], env=env)
        for _ in range(2)
    ]
    workers = [start_worker(server_uri, db, "record", tmp_path / "log") for _ in range(2)]
    try:
        for start in range(0, JOBS, 50):  # bursts, each once the lease changed hands again
            token = _token(queue)
            queue.pub_many([{"n": n} for n in range(start, start + 50)])
            wait_for(lambda t=token: _token(queue) > t, 60, "another roller's pass")
        wait_for(lambda: queue.counts()["done"] == JOBS, 120, "every job to be done")
        finished = utcnow()

        def rolled_since_all_done() -> bool:
            docs = list(metrics.collection(queue).find({"done": {"$gt": 0}}))
            return bool(docs) and all(d["rolled_at"] > finished for d in docs)

        wait_for(rolled_since_all_done, 60, "a pass that began after the last finish")
        stop.touch()
        stop_processes(rollers)
    finally:
        stop.touch()
        stop_processes(rollers + workers)
    history = queue.history(limit=None)
    assert len(history) == JOBS and set(history["worker"].str.split(":").str[1]) == {
        str(w.pid) for w in workers
    }
    docs = metrics.read(queue, history["created"].min(), utcnow() + dt.timedelta(minutes=1))
    for name, column in (("done", "done"), ("created", "created"), ("started", "started")):
        stored = {pd.Timestamp(d["_id"]): d[name] for d in docs if d[name]}
        recount = history[column].dt.floor("min").value_counts().to_dict()
        assert stored == {pd.Timestamp(m): n for m, n in recount.items()}, name
    assert sum(d["done"] for d in docs) == JOBS
    assert sum(d["wait"]["n"] for d in docs) == sum(d["run"]["n"] for d in docs) == JOBS
    assert sum(d["failed"] + d["retried"] + d["cancelled"] for d in docs) == 0
