"""``mjq find``: the jobs a query matches (the job query language), newest first, as a
table, CSV or JSON lines; a query that can't be read is one message with a caret under it."""

from __future__ import annotations

import csv
import json
import sys
from typing import TYPE_CHECKING, Any

from ..errors import QuerySyntaxError
from .audit import as_json

if TYPE_CHECKING:
    from ..core.queue import JobQueue

CSV_COLUMNS = ("id", "status", "created", "started", "done", "attempts", "worker", "error_type",
               "error_message", "data")  # fmt: skip


def print_found(queue: JobQueue, query: str, *, limit: int, form: str, all: bool) -> int:
    """Print the newest ``limit`` jobs matching ``query``: a table (``form`` "table"), CSV
    (one row a job, its data as JSON) or one JSON object per line (as ``mjq audit``)."""
    try:
        jobs = queue.find(query, limit=limit, all=all)
    except QuerySyntaxError as exc:
        print(f"mjq find: {exc}", file=sys.stderr)
        if exc.position <= len(query) and "\n" not in query:
            print(f"  {query}\n  {' ' * (exc.position - 1)}^", file=sys.stderr)
        return 2
    if form == "json":
        for job in jobs:
            print(json.dumps(as_json(job)))  # ASCII: a terminal shows every character
    elif form == "csv":
        out = csv.writer(sys.stdout)
        out.writerow(CSV_COLUMNS)
        out.writerows(csv_row(job) for job in jobs)
    else:
        from ..notebook.formatting import job_list_text  # the job list's one text table

        print(job_list_text(jobs))
    return 0


def csv_row(job: dict[str, Any]) -> list[Any]:
    """A job as CSV cells: ids and times as text, its data as JSON."""
    flat = as_json(job)
    ts, error = flat.get("ts") or {}, flat.get("error") or {}
    return [
        flat.get("_id"), flat.get("status"), ts.get("created"), ts.get("started"),
        ts.get("done"), flat.get("attempts"), flat.get("worker"), error.get("type"),
        error.get("message"), json.dumps(flat.get("data")),
    ]  # fmt: skip
