"""``mjq audit``: who did what to a queue, newest first, as a table or as JSON lines."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core.queue import JobQueue


def print_audit(queue: JobQueue, *, limit: int, form: str) -> int:
    """The newest ``limit`` entries of ``queue``'s audit: a table (``form`` "table") or one
    JSON object per line ("json") with ids and times as strings."""
    from ..notebook.display import audit_text  # the one row builder, also the notebook's

    entries = queue.audit(limit)
    if form == "json":
        for entry in entries:
            print(json.dumps(as_json(entry)))  # ASCII: a terminal shows every character
    else:
        print(audit_text(entries))
    return 0


def as_json(value: Any) -> Any:
    """``value`` with what JSON lacks made text: ids as their hex, times in ISO 8601 (UTC),
    anything else a program stored there as ``str()``."""
    if isinstance(value, Mapping):
        return {str(key): as_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json(item) for item in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN nor infinity
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
