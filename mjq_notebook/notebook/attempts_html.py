"""A job's "Attempts" section (``job_html(..., attempts=q.story(job))``): each attempt's
worker, start, end, outcome, error type and the first line of its message, newest last, the
whole traceback of a failed attempt behind a ``<details>``; an edit shows the data it
replaced. Everything from the job or its workers is escaped."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from ..text import format_seconds, format_time
from .formatting import data_preview
from .markup import escape, status_badge

_MESSAGE = 160  # characters of an error's first line shown in the row
_TRACEBACK = 20_000  # characters of one traceback rendered at all


def attempts_html(rows: Sequence[Mapping[str, Any]] | None) -> str:
    """The section, or "" when there is nothing to tell (no attempt ended yet)."""
    if not rows or (len(rows) == 1 and rows[0].get("outcome") in ("working", "waiting")):
        return ""
    head = "".join(f"<th>{name}</th>" for name in ("#", "outcome", "worker", "started",
                                                    "ended", "ran", "error"))  # fmt: skip
    body = "".join(_row(row) for row in rows)
    table = f'<table class="mjq-t"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return f'<div class="mjq-sec"><div class="mjq-h">Attempts</div>{table}</div>'


def _row(row: Mapping[str, Any]) -> str:
    outcome = str(row.get("outcome") or "?")
    attempt = row.get("attempt")
    cells = [
        "" if attempt is None else escape(attempt),
        status_badge(outcome),
        f"<code>{escape(row.get('worker'))}</code>" if row.get("worker") else "",
        _time(row.get("started")),
        _time(row.get("ended")),
        escape(format_seconds(row["run_s"])) if row.get("run_s") is not None else "",
        _edit(row) if outcome == "edited" else _error(row),
    ]
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _time(when: Any) -> str:
    if not isinstance(when, dt.datetime):
        return ""
    return f'<span class="mjq-mono">{escape(format_time(when))}</span>'


def _error(row: Mapping[str, Any]) -> str:
    kind, message = row.get("error_type"), row.get("error_message")
    if not kind and not message:
        return ""
    first = str(message or "").strip().split("\n", 1)[0]
    first = first if len(first) <= _MESSAGE else first[:_MESSAGE] + "…"
    line = f'<b style="color:var(--mjq-failed)">{escape(kind or "Error")}</b>'
    line += f": {escape(first)}" if first else ""
    trace = str(row.get("traceback") or "")
    if not trace:
        return line
    cut = trace if len(trace) <= _TRACEBACK else trace[:_TRACEBACK] + "\n… cut"
    return f'<details class="mjq-tb"><summary>{line}</summary><pre>{escape(cut)}</pre></details>'


def _edit(row: Mapping[str, Any]) -> str:
    """An edit: the data it replaced, and who made it when the audit said."""
    who = row.get("by") if isinstance(row.get("by"), Mapping) else {}
    name = who.get("user") or who.get("via")  # type: ignore[union-attr]  # a Mapping, checked
    by = f' <span class="mjq-dim">by {escape(name)}</span>' if name else ""
    data = escape(data_preview(row.get("data"), 120))
    return f'<span class="mjq-dim">data was</span> <code>{data}</code>{by}'
