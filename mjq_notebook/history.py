"""Job history as a pandas DataFrame, and latency summaries of the ``ts`` fields.

pandas is imported here, on use: ``import mjq_notebook`` stays light for workers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .job import FINISHED, STATUSES

if TYPE_CHECKING:
    import pandas as pd

    from .queue import JobQueue

COLUMNS = ["id", "status", "created", "started", "done", "wait_s", "run_s", "total_s", "attempts"]
_PROJECTION = {"_id": 1, "status": 1, "ts": 1, "attempts": 1}


def load(queue: JobQueue) -> pd.DataFrame:
    """One row per job, from the capped queue and the history collection (history wins).

    Timing columns are NaN where a stage has not happened, including seed-written jobs
    whose ``ts.started``/``ts.done`` were pre-filled while they still waited.
    """
    import pandas as pd

    finished = list(queue.history_collection.find({}, _PROJECTION))
    seen = {doc["_id"] for doc in finished}
    current = [d for d in queue.collection.find({}, _PROJECTION) if d["_id"] not in seen]
    frame = pd.json_normalize(finished + current)
    if frame.empty:
        frame = pd.DataFrame(columns=["_id", "status", "ts.created", "ts.started", "ts.done"])
    for column in ("ts.created", "ts.started", "ts.done", "attempts"):
        if column not in frame:
            frame[column] = None
    times = {k: pd.to_datetime(frame[f"ts.{k}"], utc=True) for k in ("created", "started", "done")}
    status = pd.Categorical(frame["status"], categories=list(STATUSES), ordered=True)
    # A stage only happened if the status says so (the seed pre-filled ts while waiting).
    started = times["started"].where(frame["status"] != "waiting")
    done = times["done"].where(frame["status"].isin(FINISHED))
    out = pd.DataFrame(
        {
            "id": frame["_id"],
            "status": status,
            "created": times["created"],
            "started": started,
            "done": done,
            "wait_s": (started - times["created"]).dt.total_seconds(),
            "run_s": (done - started).dt.total_seconds(),
            "total_s": (done - times["created"]).dt.total_seconds(),
            "attempts": pd.to_numeric(frame["attempts"]).fillna(0).astype("int64"),
        },
        columns=COLUMNS,
    )
    return out.sort_values("created", ignore_index=True)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """count, mean, p50, p90, p99 and max of wait_s, run_s and total_s (seconds)."""
    import pandas as pd

    rows = {}
    for column in ("wait_s", "run_s", "total_s"):
        values = frame[column].dropna()
        rows[column] = {
            "count": len(values),
            "mean": values.mean(),
            "p50": values.quantile(0.5),
            "p90": values.quantile(0.9),
            "p99": values.quantile(0.99),
            "max": values.max(),
        }
    return pd.DataFrame(rows).T.astype({"count": "int64"})
