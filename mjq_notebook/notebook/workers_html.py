"""The worker registry as an HTML table (``q.workers()`` in a notebook).

One row per worker: its state as a badge, host:pid, what it runs and for how long, done and
failed counts, busy fraction and its last heartbeat. The cells are the plain-text ones of
``registry.worker_cells`` (what ``mjq workers`` prints), escaped here: names, hosts and
queue names come from the records, which anyone who can write to the database could have
written. Badge classes come from a fixed map, never from a record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from ..job import utcnow
from ..registry import TEXT_COLUMNS, State, worker_cells
from .markup import escape, wrap

# a worker's state -> the badge colour of the job status it is most like
_BADGE = {
    State.RUNNING.value: "working",
    State.STOPPING.value: "waiting",
    State.STOPPED.value: "other",
    State.LOST.value: "lost",
}
_NUMERIC = ("done", "failed", "busy")


def state_badge(state: Any) -> str:
    """A coloured pill with the worker's state (escaped); unknown states are grey."""
    kind = _BADGE.get(str(state), "other")
    return f'<span class="mjq-badge mjq-s-{kind}">{escape(state)}</span>'


def workers_html(workers: Sequence[Mapping[str, Any]], now: dt.datetime | None = None) -> str:
    """A table of workers, newest first, with a line counting them by state."""
    if not workers:
        return wrap('<div class="mjq-dim">no workers registered</div>')
    now = now or utcnow()
    states: dict[str, int] = {}
    for row in workers:
        states[str(row.get("state"))] = states.get(str(row.get("state")), 0) + 1
    summary = " · ".join(f"{n} {escape(state)}" for state, n in states.items())
    plural = "" if len(workers) == 1 else "s"
    title = f'<div class="mjq-dim">{len(workers):,} worker{plural}: {summary}</div>'
    head = "".join(
        f'<th class="{"mjq-n" if name in _NUMERIC else ""}">{escape(name)}</th>'
        for name in TEXT_COLUMNS
    )
    body = "".join(_row(row, now) for row in workers)
    table = f'<table class="mjq-t"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return wrap(title + table)


def _row(row: Mapping[str, Any], now: dt.datetime) -> str:
    cells = worker_cells(row, now)
    queues = ", ".join(str(q) for q in row.get("queues") or [])
    title = f"{row.get('_id')} · version {row.get('version')} · queues {queues}"
    html = []
    for name in TEXT_COLUMNS:
        if name == "state":
            html.append(f"<td>{state_badge(row.get('state'))}</td>")
        elif name == "worker":
            html.append(f'<td title="{escape(title)}"><code>{escape(cells[name])}</code></td>')
        elif name == "running":
            html.append(f'<td class="mjq-wide"><code>{escape(cells[name])}</code></td>')
        else:
            numeric = ' class="mjq-n"' if name in _NUMERIC else ""
            html.append(f"<td{numeric}>{escape(cells[name])}</td>")
    return "<tr>" + "".join(html) + "</tr>"
