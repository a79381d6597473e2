"""``mjq job ID``: one job, named as the displays show it (24 hex digits), as JSON; or, with
an action, that action on it (recorded in the queue's audit, as from the dashboard)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from .audit import as_json

if TYPE_CHECKING:
    from ..core.audit import Steering

# --flag -> (Steering's method, what it did, the state the job must be in for it)
ACTIONS = {
    "retry": ("retry", "requeued", "failed"),
    "cancel": ("cancel", "cancelled", "waiting"),
    "run_now": ("promote", "due now", "waiting for its time (delayed or in a back-off)"),
    "release": ("reclaim", "released back to waiting", "working"),
}


def job_command(queue: Steering, job_id: Any, action: str | None) -> int:
    """Print the job (``action`` None), or do ``action`` to it: exit 0 when done, 1 when
    the job is not there or not in the state the action needs (nothing was changed)."""
    where = f"{queue.queue.db.name}.{queue.queue.name}"
    job = queue.queue.get(job_id)
    if job is None:
        print(f"mjq: no job {job_id} in {where} (nor its history)", file=sys.stderr)
        return 1
    if action is None:
        print(json.dumps(as_json(dict(job)), indent=2))
        return 0
    method, done, needs = ACTIONS[action]
    if getattr(queue, method)(job_id):
        print(f"mjq: job {job_id} {done}")
        return 0
    status = job.get("status")
    print(f"mjq: job {job_id} is {status}, not {needs}: nothing was done", file=sys.stderr)
    return 1
