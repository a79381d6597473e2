"""Workers as an HTML table: ``q.workers()`` in a notebook, and the panels of the dashboard
and the tail (``widgets/workers.py``), which pick their columns and add jobs a minute.

The cells are the plain-text ones of ``registry.worker_cells`` (what ``mjq workers`` prints),
escaped here: names, hosts and job ids come from the records, which anyone who can write to
the database could have written. Badge classes come from a fixed map, never from a record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..core.job import utcnow
from ..core.registry import COLUMNS, State, job_parts, worker_cells
from ..text import printable, workers_count
from .markup import escape, wrap

# a worker's state -> the badge colour of the job status it is most like
_BADGE = {
    State.RUNNING.value: "working",
    State.STOPPING.value: "waiting",
    State.STOPPED.value: "other",
    State.LOST.value: "lost",
}
_NUMERIC = {"done", "failed", "jobs/min", "busy"}
EMPTY = "no workers registered: start one with `mjq work` or Worker(q, handler)"


def state_badge(state: Any) -> str:
    """A coloured pill with the worker's state (escaped); unknown states are grey."""
    kind = _BADGE.get(str(state), "other")
    return f'<span class="mjq-badge mjq-s-{kind}">{escape(printable(state))}</span>'


def workers_html(
    workers: Sequence[Mapping[str, Any]],
    now: dt.datetime | None = None,
    *,
    columns: Sequence[str] = tuple(c for c in COLUMNS if c != "jobs/min"),  # type: ignore[name-defined]  # mypy#9346
    per_minute: Callable[[Mapping[str, Any]], float | None] | None = None,
) -> str:
    """A table of workers in ``columns``, newest first, under a line counting them by state;
    ``per_minute(row)`` fills "jobs/min" where a panel knows it."""
    if not workers:
        return wrap(f'<div class="mjq-dim">{escape(EMPTY)}</div>')
    now = now or utcnow()
    states: dict[str, int] = {}
    for row in workers:
        state = printable(row.get("state"))
        states[state] = states.get(state, 0) + 1
    title = f'<div class="mjq-dim">workers: {escape(workers_count(states))}</div>'
    head = "".join(
        f'<th class="{"mjq-n" if name in _NUMERIC else ""}">{escape(name)}</th>' for name in columns
    )
    body = "".join(_row(row, now, columns, per_minute) for row in workers)
    table = (
        f'<table class="mjq-t mjq-workers"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )
    return wrap(title + table)


def _row(
    row: Mapping[str, Any],
    now: dt.datetime,
    columns: Sequence[str],
    per_minute: Callable[[Mapping[str, Any]], float | None] | None,
) -> str:
    cells = worker_cells(row, now, per_minute(row) if per_minute else None)
    queues = ", ".join(printable(q) for q in row.get("queues") or [])
    tip = f"{cells['host:pid']} · id {printable(row.get('_id'))} · version "
    tip += f"{printable(row.get('version'))} · queues {queues}"
    html = []
    for name in columns:
        text = escape(cells[name])
        if name == "state":
            html.append(f"<td>{state_badge(row.get('state'))}</td>")
        elif name == "worker":
            html.append(f'<td title="{escape(tip)}"><code>{text}</code></td>')
        elif name == "job":
            html.append(f'<td class="mjq-wide">{_job_html(row, now)}</td>')
        elif name == "host:pid":
            html.append(f"<td><code>{text}</code></td>")
        else:
            html.append(f'<td class="{"mjq-n" if name in _NUMERIC else ""}">{text}</td>')
    state = escape(_BADGE.get(str(row.get("state")), "other"))
    return f'<tr data-state="{state}">{"".join(html)}</tr>'


def _job_html(row: Mapping[str, Any], now: dt.datetime) -> str:
    """The "job" cell with only the job id as code: "last ran <code>id</code>"."""
    before, job_id, after = job_parts(row, now)
    code = f"<code>{escape(job_id)}</code>" if job_id else ""
    return f"{escape(before)}{code}{escape(after)}"
