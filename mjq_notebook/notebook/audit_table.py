"""The audit of a queue as a table: one row builder for the notebook's HTML, its text repr
and ``mjq audit``, so the three never disagree on a column."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from bson import ObjectId

from ..text import format_ago, format_time, printable, text_table
from .formatting import scalar_text
from .markup import escape, wrap

AUDIT_COLUMNS = ("when (UTC)", "ago", "action", "jobs", "who", "detail")


def audit_rows(
    entries: Iterable[Mapping[str, Any]], now: dt.datetime | None = None
) -> list[tuple[str, ...]]:
    """One row of text per entry, in ``AUDIT_COLUMNS`` order (values from the database,
    which other programs may have written: each is made text and cut short)."""
    return [
        (
            _plain(format_time(entry.get("at")), 30),
            format_ago(entry.get("at"), now),
            _plain(entry.get("action"), 20),
            _jobs(entry),
            _who(entry.get("who")),
            _plain(entry.get("detail", ""), 60),
        )
        for entry in entries
    ]


def _jobs(entry: Mapping[str, Any]) -> str:
    """The one job's id, else how many jobs (``count``, else the ids listed)."""
    ids = entry.get("jobs")
    count = entry.get("count")
    if isinstance(ids, list) and len(ids) == 1 and count in (1, None):
        return str(ids[0]) if isinstance(ids[0], ObjectId) else _plain(ids[0], 30)
    if count is None and isinstance(ids, list):
        count = len(ids)
    return "" if count is None else f"{_plain(count, 12)} job(s)"


def _who(who: Any) -> str:
    if not isinstance(who, Mapping):
        return ""
    if who.get("via") == "page":
        client = _plain(who.get("client") or "?", 45)
        return f"page · {_plain(who.get('role', '?'), 10)} · {client}"
    person = f"{_plain(who.get('user', '?'), 30)}@{_plain(who.get('host', '?'), 40)}"
    return f"{_plain(who.get('via', '?'), 10)} · {person}"


def _plain(value: Any, width: int) -> str:
    """A value as one line of at most ``width`` characters (strings unquoted) that a
    terminal shows as written: white space runs become one space, control characters "?"."""
    text = value if isinstance(value, str) else scalar_text(value, width)
    text = printable(" ".join(text[: 4 * width].split()))  # a long text is cut first
    return text if len(text) <= width else text[: width - 1] + "…"


def audit_text(entries: Iterable[Mapping[str, Any]], now: dt.datetime | None = None) -> str:
    """The audit as plain text: for ``repr`` and ``mjq audit``."""
    rows = audit_rows(entries, now)
    if not rows:
        return "no actions recorded"
    return "\n".join(text_table([AUDIT_COLUMNS, *rows]))


def audit_html(entries: Iterable[Mapping[str, Any]], now: dt.datetime | None = None) -> str:
    """The audit as an HTML table, every value escaped."""
    rows = audit_rows(entries, now)
    if not rows:
        return wrap('<div class="mjq-dim">no actions recorded</div>')
    head = "".join(f"<th>{escape(name)}</th>" for name in AUDIT_COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>"
                   for row in rows)  # fmt: skip
    return wrap(f'<table class="mjq-t"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
