"""Error groups (``q.errors()``, ``df.mjq.errors()``) as a table: one row builder for the
notebook's HTML, the text repr and the dashboard's Errors panel, so they never disagree."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bson import ObjectId

from ..text import format_ago, format_time, text_table
from .audit_table import _plain
from .markup import escape, wrap

ERROR_COLUMNS = ("type", "pattern", "frame", "count", "first (UTC)", "last", "per hour",
                 "workers", "example")  # fmt: skip
BLOCKS = " ▁▂▃▄▅▆▇█"  # a sparkline's heights: nothing, then eight steps


def sparkline(counts: Sequence[int]) -> str:
    """Counts (per hour) as unicode blocks, the highest a full block; an hour with none a
    space, an hour with some at least the lowest block."""
    top = max(counts, default=0)
    if top <= 0:
        return ""
    steps = len(BLOCKS) - 1
    return "".join(BLOCKS[0 if n <= 0 else max(1, round(n * steps / top))] for n in counts)


def workers_text(group: Mapping[str, Any], most: int = 3) -> str:
    """ "w1, w2 +3": the first ``most`` worker ids and how many more."""
    names = [_plain(w, 30) for w in group.get("workers") or []]
    total = max(int(group.get("workers_count") or 0), len(names))
    shown = ", ".join(names[:most])
    more = total - min(len(names), most)
    return f"{shown} +{more}" if more > 0 and shown else shown or (f"{total}" if total else "")


def error_rows(
    groups: Iterable[Mapping[str, Any]], now: dt.datetime | None = None
) -> list[tuple[str, ...]]:
    """One row of text per group, in ``ERROR_COLUMNS`` order (values from the database,
    which other programs may have written: each is made text and cut short)."""
    return [
        (
            _plain(group.get("type"), 40),
            _plain(group.get("pattern"), 80),
            _plain(group.get("frame"), 40),
            f"{int(group.get('count') or 0):,}",
            _plain(format_time(group.get("first")), 30),
            format_ago(group.get("last"), now),
            sparkline(group.get("hours") or []),
            workers_text(group),
            _example(group.get("example")),
        )
        for group in groups
    ]


def _example(value: Any) -> str:
    return str(value) if isinstance(value, ObjectId) else _plain(value, 30)


def errors_text(groups: Iterable[Mapping[str, Any]], now: dt.datetime | None = None) -> str:
    """The groups as plain text: for ``repr``."""
    rows = error_rows(groups, now)
    if not rows:
        return "no failed jobs"
    return "\n".join(text_table([ERROR_COLUMNS, *rows]))


def errors_html(groups: Iterable[Mapping[str, Any]], now: dt.datetime | None = None) -> str:
    """The groups as an HTML table, every value escaped; the sparkline's title says which
    hours it covers."""
    groups = list(groups)
    rows = error_rows(groups, now)
    if not rows:
        return wrap('<div class="mjq-dim">no failed jobs</div>')
    head = "".join(f"<th>{escape(name)}</th>" for name in ERROR_COLUMNS)
    spark = ERROR_COLUMNS.index("per hour")
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{_spark_style(group) if i == spark else ''}>{escape(cell)}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for group, row in zip(groups, rows, strict=True)
    )
    return wrap(f'<table class="mjq-t"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')


def _spark_style(group: Mapping[str, Any]) -> str:
    start, hours = group.get("hours_from"), group.get("hours") or []
    since = f" from {format_time(start)[:13]}:00 UTC" if isinstance(start, dt.datetime) else ""
    tip = f"failures per hour, {len(hours)} hour(s){since}: {', '.join(map(str, hours))}"
    return f" class='mjq-spark' style='white-space:pre' title='{escape(tip)}'"
