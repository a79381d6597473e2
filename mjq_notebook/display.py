"""HTML for jobs and queues in notebooks. Every value from job data is escaped."""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .job import Job
    from .queue import JobQueue

_COLORS = {"waiting": "#6c757d", "working": "#0d6efd", "done": "#198754", "failed": "#dc3545"}


def _text(value: Any, limit: int = 2000) -> str:
    """A JSON-ish rendering of ``value``, cut to ``limit`` characters and escaped."""
    try:
        text = json.dumps(value, default=str, ensure_ascii=False, indent=1)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > limit:
        text = text[:limit] + " …"
    return html.escape(text)


def status_badge(status: str) -> str:
    color = _COLORS.get(status, "#6c757d")
    return (
        f'<span style="background:{color};color:white;border-radius:4px;padding:1px 6px">'
        f"{html.escape(str(status))}</span>"
    )


def job_html(job: Job) -> str:
    """A small table: id, status, timestamps, attempts, data, and error or result."""
    ts = job.get("ts") or {}
    rows = [
        ("id", html.escape(str(job.get("_id")))),
        ("status", status_badge(job.get("status", "?"))),
        *((f"ts.{k}", html.escape(str(ts.get(k)))) for k in ("created", "started", "done")),
        ("attempts", html.escape(str(job.get("attempts", 0)))),
        ("data", f"<pre style='margin:0'>{_text(job.get('data'))}</pre>"),
    ]
    if job.get("error"):
        error = job["error"]
        summary = html.escape(f"{error.get('type')}: {error.get('message')}")
        trace = html.escape(error.get("traceback") or "")
        rows.append(("error", f"<details><summary>{summary}</summary><pre>{trace}</pre></details>"))
    if job.get("result") is not None:
        rows.append(("result", f"<pre style='margin:0'>{_text(job['result'])}</pre>"))
    body = "".join(
        f"<tr><th style='text-align:left'>{k}</th><td style='text-align:left'>{v}</td></tr>"
        for k, v in rows
    )
    return f"<table class='mjq-job'>{body}</table>"


def queue_html(queue: JobQueue) -> str:
    """The queue's name and its counts per status."""
    try:
        counts = queue.counts()
    except Exception as exc:  # the repr must not raise in a notebook
        return f"<b>{html.escape(queue.name)}</b>: unavailable ({html.escape(type(exc).__name__)})"
    cells = "".join(
        f"<td>{status_badge(k)} {v}</td>" for k, v in counts.items() if k != "lost" or v
    )
    name = html.escape(f"{queue.db.name}.{queue.name}")
    return f"<table class='mjq-queue'><tr><th>JobQueue {name}</th>{cells}</tr></table>"
