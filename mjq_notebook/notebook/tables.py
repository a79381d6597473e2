"""Tables in HTML: a list of jobs (``q.jobs()``), a queue's view (``JobQueue._repr_html_``)
and ``summary()``/``stats()`` tables; each row's text comes from ``formatting``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..core.outage import ADVICE, display_deadline, failure_reason
from ..errors import ServerUnavailable
from ..text import as_of, format_bytes, format_seconds
from .formatting import LIST_ROWS, ONGOING, list_rows, ongoing
from .markup import counts_html, escape, status_badge, wrap

if TYPE_CHECKING:
    import pandas as pd

    from ..core.queue import JobQueue

_STAGES = {"wait_s": "wait", "run_s": "run", "total_s": "total"}
_CELL_HTML = {  # column -> how its (escaped) text shows
    "id": "<td><code>{}</code></td>",
    "created (UTC)": '<td class="mjq-mono">{}</td>',
    "wait": '<td class="mjq-n">{}</td>',
    "run": '<td class="mjq-n">{}</td>',
    "attempts": '<td class="mjq-n">{}</td>',
    "error": '<td class="mjq-wide" style="color:var(--mjq-failed)">{}</td>',
    "data": '<td class="mjq-wide"><code>{}</code></td>',
}


# -- lists of jobs --------------------------------------------------------------------------


def job_list_html(jobs: Iterable[Mapping[str, Any]], now: dt.datetime | None = None) -> str:
    """A table of jobs: id, status, created, wait, run, attempts and a data preview."""
    now = as_of(now)
    jobs = list(jobs)
    if not jobs:
        return wrap('<div class="mjq-dim">no jobs</div>')
    plural = "" if len(jobs) == 1 else "s"
    title = f'<div class="mjq-dim">{len(jobs):,} job{plural}</div>'
    return wrap(title + _job_table(jobs, now))


def _job_table(jobs: list[Mapping[str, Any]], now: dt.datetime) -> str:
    if not jobs:
        return '<div class="mjq-dim">no jobs</div>'
    columns, rows = list_rows(jobs, now)
    head = "".join(
        f'<th class="{"mjq-n" if name in ("wait", "run", "attempts") else ""}">{name}</th>'
        for name in columns
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{status_badge(cell)}</td>" if name == "status"
            else _CELL_HTML[name].format(escape(cell))
            for name, cell in zip(columns, row, strict=True)
        )
        + "</tr>"
        for row in rows
    )  # fmt: skip
    notes = []
    if len(jobs) > LIST_ROWS:
        notes.append(f"… {len(jobs) - LIST_ROWS:,} more not shown")
    if ongoing(rows):
        notes.append(ONGOING)
    more = f'<div class="mjq-dim">{escape(" · ".join(notes))}</div>' if notes else ""
    return f'<table class="mjq-t"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}'


# -- a queue --------------------------------------------------------------------------------


def queue_html(queue: JobQueue, newest: int = 10) -> str:
    """The queue's database and name, how full its ring is, its counts and newest jobs.

    It never raises (it is a repr): a part that can't be read says "unavailable (ErrorType)",
    never the error's text, which could carry a connection string. When no server answers
    it says so within about ``DISPLAY_TIMEOUT_S`` (see ``display_deadline``).
    """
    from pymongo.errors import ConnectionFailure

    database = escape(getattr(queue.db, "name", "?"))
    name = f"<code>{database}</code> · <code>{escape(queue.name)}</code>"
    parts = [f'<div class="mjq-head"><b>JobQueue</b> {name}</div>']
    now = dt.datetime.now(dt.timezone.utc)
    sections = (
        ("ring", lambda: _ring_html(queue)),
        ("jobs", lambda: counts_html(queue.counts())),
        (f"newest {newest}", lambda: _job_table(list(queue.jobs(limit=newest)), now)),
    )
    with display_deadline(queue):
        for title, build in sections:
            try:
                body = build()
            except (ConnectionFailure, ServerUnavailable) as exc:  # away: don't wait thrice
                server = _unavailable_server(exc)
                parts.append(f'<dl class="mjq-kv"><dt>server</dt><dd>{server}</dd></dl>')
                break
            except Exception as exc:
                body = _unavailable(exc)
            parts.append(f'<dl class="mjq-kv"><dt>{escape(title)}</dt><dd>{body}</dd></dl>')
    return wrap("".join(parts))


def _unavailable(exc: BaseException) -> str:
    return f'<span class="mjq-dim">unavailable ({escape(type(exc).__name__)})</span>'


def _unavailable_server(exc: BaseException) -> str:
    """Shows "unavailable (ServerUnavailable)", why, and what to do; like the rest of the
    page, no address (a saved notebook travels)."""
    from pymongo.errors import ConnectionFailure

    cause = exc.__context__ if isinstance(exc, ServerUnavailable) else exc
    if not isinstance(cause, ConnectionFailure):
        return _unavailable(exc)
    why = f"no MongoDB server answered ({failure_reason(cause)}); {ADVICE}"
    return f'{_unavailable(ServerUnavailable())}<div class="mjq-dim">{escape(why)}</div>'


def _ring_html(queue: JobQueue) -> str:
    """How full the capped collection is, from its options and its cheap estimated count."""
    options = queue.collection.options()
    if not options.get("capped"):
        return '<span class="mjq-warn">not a capped collection: not usable as a queue</span>'
    count = queue.collection.estimated_document_count()
    most, size = options.get("max"), options.get("size")
    cap = f'<span class="mjq-dim">· up to {format_bytes(size)}</span>' if size else ""
    if not most:
        return f"{count:,} jobs {cap}"
    share = count / most
    full = " mjq-full" if share >= 0.9 else ""
    width = f"width:{min(share, 1) * 100:.1f}%"
    bar = f'<span class="mjq-bar{full}"><span style="{width}"></span></span>'
    return f"{count:,} of {int(most):,} jobs ({share:.0%} full) {bar} {cap}"


# -- summary tables -------------------------------------------------------------------------


def summary_html(table: pd.DataFrame) -> str:
    """A ``summary()``/``stats()`` table for reading: durations as "850 ms"/"12.3 s", the
    failure rate as a percentage once per group, group values escaped."""
    import pandas as pd

    names = [n for n in table.index.names]
    stage_level = names.index("stage") if "stage" in names else None
    group_names = [n for i, n in enumerate(names) if i != stage_level]
    columns = [c for c in table.columns if c != "failure_rate"]
    if "negative" in columns and not table["negative"].any():
        columns.remove("negative")  # shown only when some durations were left out
    rate = "failure_rate" in table.columns
    head = "".join(f"<th>{escape('' if n is None else n)}</th>" for n in group_names)
    head += "<th>stage</th>" if stage_level is not None else ""
    head += "".join(
        f'<th class="mjq-n">{"jobs" if c == "count" else escape(c)}</th>' for c in columns
    )
    head += '<th class="mjq-n">failed</th>' if rate else ""
    keys = [k if isinstance(k, tuple) else (k,) for k in table.index]
    groups = [tuple(k[i] for i in range(len(k)) if i != stage_level) for k in keys]
    shown = min(len(table), LIST_ROWS)
    rows, start = [], 0
    while start < shown:
        end = start + 1
        while end < shown and stage_level is not None and _same(groups[end], groups[start]):
            end += 1
        for position in range(start, end):
            cells = ""
            if position == start:
                span = f' rowspan="{end - start}"' if end - start > 1 else ""
                cells += "".join(f"<td{span}>{_group_value(v)}</td>" for v in groups[start])
            if stage_level is not None:
                stage = keys[position][stage_level]
                cells += f"<td>{escape(_STAGES.get(stage, stage))}</td>"
            for column in columns:
                value: Any = table[column].iat[position]  # a pandas scalar
                cells += f'<td class="mjq-n">{escape(_statistic(column, value))}</td>'
            if rate and position == start:
                value = table["failure_rate"].iat[position]
                span = f' rowspan="{end - start}"' if end - start > 1 else ""
                text = "—" if pd.isna(value) else f"{float(value):.1%}"
                cells += f'<td class="mjq-n"{span}>{escape(text)}</td>'
            rows.append(f"<tr>{cells}</tr>")
        start = end
    more = ""
    if len(table) > shown:
        more = f'<div class="mjq-dim">… {len(table) - shown:,} more rows not shown</div>'
    note = (
        '<div class="mjq-dim" style="font-size:11px">wait: created → started · run: started'
        " → done · total: created → done · failed: share of finished jobs that failed</div>"
    )
    return wrap(
        f'<table class="mjq-t"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
        f"</table>{more}{note}"
    )


def _same(left: tuple, right: tuple) -> bool:
    return all(_equal(a, b) for a, b in zip(left, right, strict=True))


def _equal(left: Any, right: Any) -> bool:
    if _missing(left) or _missing(right):
        return _missing(left) and _missing(right)
    try:
        return bool(left == right)
    except (TypeError, ValueError):
        return False


def _missing(value: Any) -> bool:
    """None, NaN, NaT or pd.NA (whose comparisons raise) without importing pandas."""
    try:
        return value is None or bool(value != value)
    except (TypeError, ValueError):
        return True


def _group_value(value: Any) -> str:
    if _missing(value):
        return '<span class="mjq-dim">(none)</span>'
    return escape(value)


def _statistic(column: str, value: Any) -> str:
    if column in ("count", "negative"):
        try:
            return f"{int(value):,}"
        except (TypeError, ValueError):
            return str(value)
    return format_seconds(value)
