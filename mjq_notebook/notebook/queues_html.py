"""Every queue of a database as an HTML table (``mjq_notebook.queues(db)`` in a notebook).

One row per queue: its name, counts by status, jobs finished in the last ten minutes, the age
of the oldest waiting job, a "paused" badge and the workers alive. The cells are the plain
text of ``catalog.queue_cells`` (what ``mjq queues`` prints), escaped here: queue names are
collection names, which anyone who can write to the database chooses. Badge classes come
from fixed names, never from a row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..core.catalog import COLUMNS, HEADS, queue_cells
from ..core.job import STATUSES
from .markup import LOST_EXPLAINED, escape, wrap

_NUMERIC = (*STATUSES, "lost", "finished_10min", "oldest_waiting_s", "workers")


def queues_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """A table of queues, by name, under a line saying how many and in which database."""
    database = getattr(rows, "database", "")
    where = f" in <code>{escape(database)}</code>" if database else ""
    if not rows:
        return wrap(f'<div class="mjq-dim">no queues{where}</div>')
    plural = "" if len(rows) == 1 else "s"
    title = f'<div class="mjq-dim">{len(rows):,} queue{plural}{where}</div>'
    head = "".join(
        f'<th class="{"mjq-n" if name in _NUMERIC else ""}">{escape(HEADS.get(name, name))}</th>'
        for name in ("queue", *COLUMNS)
    )
    body = "".join(_row(row) for row in rows)
    table = f'<table class="mjq-t"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return wrap(title + table)


def _row(row: Mapping[str, Any]) -> str:
    cells = queue_cells(row)
    html = [f"<td><code>{escape(cells['queue'])}</code></td>"]
    for name in COLUMNS:
        text = escape(cells[name])
        if name == "lost" and row.get("lost"):
            badge = f'<span class="mjq-badge mjq-s-lost" title="{escape(LOST_EXPLAINED)}">'
            html.append(f'<td class="mjq-n">{badge}{text}</span></td>')
        elif name == "paused" and row.get("paused"):
            html.append('<td><span class="mjq-badge mjq-s-waiting">paused</span></td>')
        elif name in _NUMERIC:
            html.append(f'<td class="mjq-n">{text}</td>')
        else:
            html.append(f'<td class="mjq-dim">{text}</td>')
    return "<tr>" + "".join(html) + "</tr>"
