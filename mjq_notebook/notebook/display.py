"""HTML (and a little plain text) for jobs, lists of jobs, queues and summary tables.

Every value that comes from a job (data, result, error, ids, worker names; keys as well as
values) is escaped with ``html.escape``; class names are only ever chosen from fixed sets.
One small stylesheet (``STYLE``) travels with every fragment: its ``--mjq-*`` variables fall
back to JupyterLab's ``--jp-*`` ones, with dark values for JupyterLab, Notebook and VS Code
dark themes. Collapsible parts are plain ``<details>``: no JavaScript, so saved notebooks and
static viewers show the same thing. This module imports neither IPython nor pandas.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import html
import json
import textwrap
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..analysis.timing import format_seconds, significant
from ..errors import ServerUnavailable
from ..outage import ADVICE, display_deadline, failure_reason

if TYPE_CHECKING:
    import pandas as pd

    from ..queue import JobQueue

_CSS = """
.mjq{--mjq-fg:var(--jp-content-font-color0,rgba(0,0,0,.87));
--mjq-fg2:var(--jp-content-font-color2,rgba(0,0,0,.6));--mjq-bg2:var(--jp-layout-color2,#eee);
--mjq-line:var(--jp-border-color2,#e0e0e0);--mjq-waiting:#6c757d;--mjq-working:#0b63d8;
--mjq-done:#177245;--mjq-failed:#c62828;--mjq-warn:#8a4b00;--mjq-warn-bg:#fff3cd;
color:var(--mjq-fg);font:13px/1.45 var(--jp-ui-font-family,system-ui,sans-serif)}
html[theme=dark] .mjq,body[data-theme=dark] .mjq,body[data-jp-theme-light=false] .mjq,
body.vscode-dark .mjq{--mjq-fg:var(--jp-content-font-color0,rgba(255,255,255,.9));
--mjq-fg2:var(--jp-content-font-color2,rgba(255,255,255,.62));
--mjq-bg2:var(--jp-layout-color2,#333);--mjq-line:var(--jp-border-color2,#4a4a4a);
--mjq-waiting:#7b848c;--mjq-working:#2f7ee6;--mjq-done:#238a55;--mjq-failed:#d64550;
--mjq-warn:#ffd27a;--mjq-warn-bg:#4a3700}
.mjq code,.mjq pre,.mjq .mjq-mono{font-family:var(--jp-code-font-family,ui-monospace,Menlo,
Consolas,monospace);font-size:12px;background:none;color:inherit;padding:0}
.mjq pre{background:var(--mjq-bg2);padding:6px 8px;margin:4px 0;max-height:24em;overflow:auto;
white-space:pre-wrap;word-break:break-word;border-radius:3px}
.mjq .mjq-head{display:flex;flex-wrap:wrap;gap:4px 10px;align-items:baseline;margin:2px 0 6px}
.mjq .mjq-dim{color:var(--mjq-fg2)}
.mjq .mjq-badge{display:inline-block;padding:0 7px;border-radius:9px;color:#fff;
font-size:11.5px;font-weight:600;white-space:nowrap;background:var(--mjq-waiting)}
.mjq .mjq-s-working{background:var(--mjq-working)}.mjq .mjq-s-done{background:var(--mjq-done)}
.mjq .mjq-s-failed{background:var(--mjq-failed)}
.mjq .mjq-s-lost{background:var(--mjq-warn-bg);color:var(--mjq-warn);
box-shadow:inset 0 0 0 1px var(--mjq-warn)}
.mjq .mjq-warn{color:var(--mjq-warn);background:var(--mjq-warn-bg);padding:2px 6px;
border-radius:3px;margin:4px 0;display:inline-block}
.mjq .mjq-kv{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:1px 12px;margin:0}
.mjq .mjq-kv>dt{color:var(--mjq-fg2);font-weight:normal;margin:0;float:none;width:auto}
.mjq .mjq-kv>dd{margin:0;min-width:0;overflow-wrap:anywhere;float:none;width:auto}
.mjq .mjq-sec{margin:8px 0 0}.mjq .mjq-h{font-weight:600;margin:0 0 2px}
.mjq details>summary{cursor:pointer}.mjq details details{margin-left:2px}
.mjq table.mjq-t{border-collapse:collapse;margin:4px 0;font-size:12.5px}
.mjq table.mjq-t th,.mjq table.mjq-t td{text-align:left;padding:2px 8px;vertical-align:top;
border:none;border-bottom:1px solid var(--mjq-line);background:none;color:inherit;
white-space:nowrap}
.mjq table.mjq-t th{font-weight:600}.mjq table.mjq-t .mjq-n{text-align:right;
font-variant-numeric:tabular-nums}.mjq table.mjq-t td.mjq-wide{white-space:normal;
overflow-wrap:anywhere}
.mjq table.mjq-t code{white-space:nowrap}.mjq table.mjq-t td.mjq-wide code{white-space:normal}
.mjq .mjq-bar{display:inline-block;width:110px;height:8px;border-radius:4px;overflow:hidden;
background:var(--mjq-bg2);vertical-align:middle}
.mjq .mjq-bar>span{display:block;height:100%;background:var(--mjq-done)}
.mjq .mjq-bar.mjq-full>span{background:var(--mjq-warn)}
"""
STYLE = "<style>" + "".join(line.strip() for line in _CSS.splitlines()) + "</style>"

STATUSES = ("waiting", "working", "done", "failed")
LOST_EXPLAINED = (
    "jobs evicted from the capped collection before they finished: the ring is too small "
    "for the backlog (raise max_jobs/size_bytes)"
)
_INLINE = 60  # a document or list whose one-line preview fits shows on one line
_STRING_CUT = 120  # longer strings show their start; the rest is one click away
_FULL_TEXT = 20_000  # characters of one string rendered at all (notebooks store outputs)
_ITEMS = 50  # keys or items shown per level of a nested value
_DEPTH = 6  # nesting levels shown as a tree; deeper values show as a one-line preview
_LIST_ROWS = 500  # rows of a job list rendered
_STAGES = {"wait_s": "wait", "run_s": "run", "total_s": "total"}


def stylesheet() -> str:
    """The ``<style>`` block every fragment of this module includes."""
    return STYLE


def _wrap(body: str) -> str:
    return f'<div class="mjq">{STYLE}{body}</div>'


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


# -- small formatters (plain text) ---------------------------------------------------------


def format_ago(when: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """How far ``when`` is from ``now`` (default: the current time): "4 s ago", "in 3 s"."""
    if not isinstance(when, dt.datetime):
        return "—"
    now = _aware(now) if isinstance(now, dt.datetime) else dt.datetime.now(dt.timezone.utc)
    seconds = (now - _aware(when)).total_seconds()
    distance = abs(seconds)
    if distance < 1:
        text = f"{distance * 1000:.0f} ms"
    elif distance < 60:
        text = f"{distance:.0f} s"
    elif distance < 3600:
        text = f"{distance / 60:.0f} min"
    elif distance < 48 * 3600:
        text = f"{significant(distance / 3600)} h"
    else:
        text = f"{distance / 86400:.0f} d"
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def _aware(when: dt.datetime) -> dt.datetime:
    """BSON dates are UTC: a naive datetime read with tz_aware=False is UTC too."""
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)


def format_time(when: Any) -> str:
    """A UTC time at BSON's millisecond precision: "2026-03-01 12:00:00.123"."""
    if not isinstance(when, dt.datetime):
        return "—" if when is None else str(when)
    when = _aware(when).astimezone(dt.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}"


class _Full(Exception):
    """The preview is wide enough: stop walking the value."""


def data_preview(value: Any, width: int = 80) -> str:
    """A one-line, JSON-ish preview of ``value``, at most ``width`` characters. NOT escaped.

    It stops walking the value once the line is full, so a huge document costs no more than
    a small one.
    """
    parts: list[str] = []
    size = 0

    def emit(text: str) -> None:
        nonlocal size
        parts.append(text)
        size += len(text)
        if size > width:
            raise _Full

    def walk(item: Any) -> None:
        if isinstance(item, Mapping):
            emit("{")
            for index, (key, inner) in enumerate(item.items()):
                emit(", " if index else "")
                emit(_scalar(str(key), width) + ": ")
                walk(inner)
            emit("}")
        elif isinstance(item, (list, tuple)):
            emit("[")
            for index, inner in enumerate(item):
                emit(", " if index else "")
                walk(inner)
            emit("]")
        else:
            emit(_scalar(item, width))

    with contextlib.suppress(_Full):
        walk(value)
    text = "".join(parts)
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def _scalar(value: Any, width: int = 80) -> str:
    """One value as JSON would write it; BSON types readably; only ~``width`` characters."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value[: width + 1], ensure_ascii=False)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dt.datetime):
        return format_time(value).replace(" ", "T") + "Z"
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value):,} bytes>"
    if type(value).__name__ == "ObjectId":
        return f'ObjectId("{value}")'
    return str(value)[: width + 1]


# -- badges and counts --------------------------------------------------------------------


def status_badge(status: Any) -> str:
    """A coloured pill with the status name (escaped); unknown statuses are grey."""
    name = str(status)
    kind = name if name in (*STATUSES, "lost") else "other"
    return f'<span class="mjq-badge mjq-s-{kind}">{_e(name)}</span>'


def counts_html(counts: Mapping[str, int]) -> str:
    """Badges "waiting 3", "done 120", …; a non-zero ``lost`` count in a warning colour with
    a visible line saying what it means (a title alone is lost in saved notebooks)."""
    badges = []
    for name, number in counts.items():
        if name == "lost" and not number:
            continue
        text = f"{_e(name)} {_count(number)}"
        kind = name if name in (*STATUSES, "lost") else "other"
        title = f' title="{_e(LOST_EXPLAINED)}"' if name == "lost" else ""
        badges.append(f'<span class="mjq-badge mjq-s-{kind}"{title}>{text}</span>')
    line = f'<span class="mjq-head" style="margin:0">{" ".join(badges)}</span>'
    lost = counts.get("lost") or 0
    if lost:
        line += f'<div class="mjq-warn">⚠ {_count(lost)} lost: {_e(LOST_EXPLAINED)}</div>'
    return line


def _count(number: Any) -> str:
    return f"{number:,}" if isinstance(number, int) else _e(number)


# -- one job ------------------------------------------------------------------------------


def job_html(job: Mapping[str, Any], now: dt.datetime | None = None) -> str:
    """A job's full detail: status, attempts, priority, worker, times (UTC, relative, wait and
    run), when a retry is due, its data, result and error (the traceback collapsed)."""
    now = _aware(now) if isinstance(now, dt.datetime) else dt.datetime.now(dt.timezone.utc)
    try:
        body = _job_body(job, now)
    except Exception as exc:  # a display must not raise: show what we can
        body = (
            f'<div class="mjq-warn">this job could not be shown in full '
            f"({_e(type(exc).__name__)})</div><pre>{_e(repr(job)[:_FULL_TEXT])}</pre>"
        )
    return _wrap(body)


def _job_body(job: Mapping[str, Any], now: dt.datetime) -> str:
    status = str(job.get("status", "?"))
    head = [
        f"<b>Job</b> <code>{_e(job.get('_id'))}</code>",
        status_badge(status),
    ]
    attempts = _attempts_text(job, status)
    if attempts:
        head.append(f"<span>{_e(attempts)}</span>")
    if job.get("priority") is not None:
        head.append(f'<span class="mjq-dim">priority</span> {_e(job["priority"])}')
    if job.get("worker"):
        label = "worker" if status == "working" else "last worker"
        head.append(f'<span class="mjq-dim">{label}</span> <code>{_e(job["worker"])}</code>')
    parts = [f'<div class="mjq-head">{" ".join(head)}</div>']
    parts.append(f'<dl class="mjq-kv">{_times_html(job, status, now)}</dl>')
    parts.append(_section("data", _value_html(job.get("data"))))
    if "result" in job and (job.get("result") is not None or status == "done"):
        parts.append(_section("result", _value_html(job.get("result"))))
    if job.get("error"):
        title = "last error" if status != "failed" else "error"
        parts.append(_section(title, _error_html(job["error"])))
    parts.append(f'<div class="mjq-dim" style="font-size:11px">times as of {format_time(now)}'
                 " UTC</div>")  # fmt: skip
    return "".join(parts)


def _attempts_text(job: Mapping[str, Any], status: str) -> str:
    attempts, most = _int(job.get("attempts")), _int(job.get("max_attempts"))
    of = f" of {most}" if most else ""
    if attempts is None:
        return ""
    if status == "waiting":
        if attempts == 0:
            return f"not tried yet (up to {most} attempts)" if most else "not tried yet"
        return f"next: attempt {attempts + 1}{of}"
    return f"attempt {attempts}{of}"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _times(job: Mapping[str, Any], status: str) -> tuple[Any, Any, Any]:
    """created, started, done — started/done only where that stage happened (the seed
    pre-filled them while the job waited)."""
    ts = job.get("ts") if isinstance(job.get("ts"), Mapping) else {}
    created, started, done = ts.get("created"), ts.get("started"), ts.get("done")
    tried = (_int(job.get("attempts")) or 0) > 0
    if status == "waiting" and not tried:
        started = None
    if status not in ("done", "failed"):
        done = None
    return created, started, done


def _seconds_between(start: Any, end: Any) -> float | None:
    if isinstance(start, dt.datetime) and isinstance(end, dt.datetime):
        return (_aware(end) - _aware(start)).total_seconds()
    return None


def _times_html(job: Mapping[str, Any], status: str, now: dt.datetime) -> str:
    created, started, done = _times(job, status)
    waited = format_seconds(_seconds_between(created, started))
    rows = [("created", created, "")]
    if started is not None:
        label = "last started" if status == "waiting" else "started"
        note = f"waited {waited}"
        if status == "working":
            note += f" · running {format_seconds(_seconds_between(started, now))}"
        rows.append((label, started, note))
    elif status == "waiting" and isinstance(created, dt.datetime):
        rows[0] = ("created", created, f"waiting {format_seconds(_seconds_between(created, now))}")
    if done is not None:
        rows.append(("done", done, f"ran {format_seconds(_seconds_between(started, done))}"))
    available = job.get("available_at")
    if status == "waiting" and isinstance(available, dt.datetime) and _aware(available) > now:
        label = "retry due" if (_int(job.get("attempts")) or 0) > 0 else "available"
        rows.append((label, available, ""))
    lease = job.get("lease_until")
    if status == "working" and isinstance(lease, dt.datetime):
        rows.append(("lease until", lease, ""))
    html_rows = []
    for label, when, note in rows:
        text = f'<span class="mjq-mono">{_e(format_time(when))}</span>'
        if isinstance(when, dt.datetime):
            text += f' UTC <span class="mjq-dim">· {_e(format_ago(when, now))}</span>'
        if note:
            text += f" · {_e(note)}"
        html_rows.append(f"<dt>{_e(label)}</dt><dd>{text}</dd>")
    return "".join(html_rows)


def _section(title: str, body: str) -> str:
    return f'<div class="mjq-sec"><div class="mjq-h">{_e(title)}</div>{body}</div>'


def _error_html(error: Any) -> str:
    if not isinstance(error, Mapping):
        return _value_html(error)
    kind, message = error.get("type") or "Error", error.get("message")
    line = f'<b style="color:var(--mjq-failed)">{_e(kind)}</b>'
    if message not in (None, ""):
        line += f": {_string_html(str(message), quoted=False)}"
    trace = error.get("traceback")
    if trace:
        lines = str(trace).rstrip().count("\n") + 1
        count = f"{lines} line{'s' * (lines > 1)}"
        line += (
            f'<details class="mjq-tb"><summary class="mjq-dim">traceback ({count})</summary>'
            f"<pre>{_cut(str(trace))}</pre></details>"
        )
    return f"<div>{line}</div>"


def _cut(text: str) -> str:
    """Escaped text, at most _FULL_TEXT characters of it."""
    if len(text) <= _FULL_TEXT:
        return _e(text)
    return _e(text[:_FULL_TEXT]) + f"\n… cut: {len(text):,} characters in all"


def _string_html(text: str, quoted: bool = True) -> str:
    """A short string inline; a long or multi-line one cut, with a ``<details>`` to see all."""
    if len(text) <= _STRING_CUT and "\n" not in text:
        shown = json.dumps(text, ensure_ascii=False) if quoted else text
        return f"<code>{_e(shown)}</code>"
    start = data_preview(text, _STRING_CUT) if quoted else text[:_STRING_CUT].split("\n")[0] + "…"
    return (
        f"<details><summary><code>{_e(start)}</code> "
        f'<span class="mjq-dim">({len(text):,} characters)</span></summary>'
        f"<pre>{_cut(text)}</pre></details>"
    )


def _value_html(value: Any, depth: int = 0) -> str:
    """A readable view of job data: small values on one line, big documents and lists as a
    key/value tree whose nested parts are collapsed, long strings cut."""
    if isinstance(value, str):
        return _string_html(value)
    if not isinstance(value, (Mapping, list, tuple)):
        return f"<code>{_e(_scalar(value, _FULL_TEXT))}</code>"
    preview = data_preview(value, _INLINE + 1)
    if len(preview) <= _INLINE and not _has_long_string(value):
        return f"<code>{_e(preview)}</code>"
    if depth >= _DEPTH:
        return f"<code>{_e(data_preview(value, 200))}</code>"
    items = list(value.items()) if isinstance(value, Mapping) else list(enumerate(value))
    rows = "".join(
        f"<dt>{_e(key)}</dt><dd>{_value_html(inner, depth + 1)}</dd>"
        for key, inner in items[:_ITEMS]
    )
    if len(items) > _ITEMS:
        rows += f'<dt>…</dt><dd class="mjq-dim">{len(items) - _ITEMS:,} more not shown</dd>'
    tree = f'<dl class="mjq-kv">{rows}</dl>'
    if depth == 0:
        return tree
    kind = ("key" if isinstance(value, Mapping) else "item") + ("" if len(items) == 1 else "s")
    return (
        f"<details><summary><code>{_e(data_preview(value, _INLINE))}</code> "
        f'<span class="mjq-dim">{len(items):,} {kind}</span></summary>{tree}</details>'
    )


def _has_long_string(value: Any) -> bool:
    """True if a string in ``value`` (a small document or list) needs cutting."""
    if isinstance(value, str):
        return len(value) > _STRING_CUT or "\n" in value
    if isinstance(value, Mapping):
        return any(_has_long_string(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_long_string(v) for v in value)
    return False


# -- lists of jobs ------------------------------------------------------------------------

_LIST_COLUMNS = ("id", "status", "created (UTC)", "wait", "run", "attempts", "error", "data")
# job_cells() gives them in this order
_ONGOING = "“…”: still going on"


def _list_columns(rows: list[tuple[str, ...]]) -> tuple[list[str], list[tuple[str, ...]]]:
    """The columns and rows to show: ``error`` only when some job has one."""
    error = _LIST_COLUMNS.index("error")
    if any(row[error] for row in rows):
        return list(_LIST_COLUMNS), rows
    keep = [i for i in range(len(_LIST_COLUMNS)) if i != error]
    return [_LIST_COLUMNS[i] for i in keep], [tuple(row[i] for i in keep) for row in rows]


def _ongoing(rows: list[tuple[str, ...]]) -> bool:
    return any(cell.endswith(" …") for row in rows for cell in row[3:5])


def _error_preview(error: Any) -> str:
    """``Type: message`` on one line, shortened at a word (NOT escaped)."""
    if not error:
        return ""
    if isinstance(error, Mapping):
        kind, message = str(error.get("type") or "Error"), error.get("message")
        text = kind + (f": {message}" if message not in (None, "") else "")
    else:
        text = str(error)
    return textwrap.shorten(text, 60, placeholder=" …")


def live_cell(job: Mapping[str, Any], now: dt.datetime) -> tuple[str, dt.datetime] | None:
    """The cell of a job's row that changes while nothing happens to the job, and the time it
    counts from: ``("due", available_at)`` for a job not claimable yet (delayed, or a retry's
    back-off), ``("wait", created)`` for one waiting its first turn, ``("run", started)`` for
    a running one; None for a finished job."""
    status = str(job.get("status", "?"))
    created, started, _ = _times(job, status)
    available = job.get("available_at")
    if status == "waiting" and isinstance(available, dt.datetime) and _aware(available) > now:
        return "due", _aware(available)
    if status == "waiting" and started is None and isinstance(created, dt.datetime):
        return "wait", _aware(created)
    if status == "working" and isinstance(started, dt.datetime):
        return "run", _aware(started)
    return None


def job_cells(job: Mapping[str, Any], now: dt.datetime) -> dict[str, str]:
    """Plain-text cells of a job's row (``LIST_COLUMNS``), the one row builder of ``q.jobs()``,
    the queue view and the live tail: ``…`` marks a wait or run still going on, and a job not
    yet claimable says when it is due."""
    status = str(job.get("status", "?"))
    created, started, done = _times(job, status)
    cells = {
        "wait": format_seconds(_seconds_between(created, started)),
        "run": format_seconds(_seconds_between(started, done)),
    }
    live = live_cell(job, now)
    if live is not None:
        cell, since = live
        if cell == "due":
            cells["wait"] = "due in " + format_seconds((since - now).total_seconds())
        else:
            cells[cell] = format_seconds((now - since).total_seconds()) + " …"
    attempts, most = _int(job.get("attempts")), _int(job.get("max_attempts"))
    return {
        "id": str(job.get("_id")),
        "status": status,
        "created": format_time(created),
        "wait": cells["wait"],
        "run": cells["run"],
        "attempts": "—" if attempts is None else f"{attempts}/{most}" if most else str(attempts),
        "error": _error_preview(job.get("error")),
        "data": data_preview(job.get("data"), 60),
    }


def _list_row(job: Mapping[str, Any], now: dt.datetime) -> tuple[str, ...]:
    return tuple(job_cells(job, now).values())


_CELL_HTML = {  # column -> how its (escaped) text shows
    "id": "<td><code>{}</code></td>",
    "created (UTC)": '<td class="mjq-mono">{}</td>',
    "wait": '<td class="mjq-n">{}</td>',
    "run": '<td class="mjq-n">{}</td>',
    "attempts": '<td class="mjq-n">{}</td>',
    "error": '<td class="mjq-wide" style="color:var(--mjq-failed)">{}</td>',
    "data": '<td class="mjq-wide"><code>{}</code></td>',
}


def _job_table(jobs: list[Mapping[str, Any]], now: dt.datetime) -> str:
    if not jobs:
        return '<div class="mjq-dim">no jobs</div>'
    columns, rows = _list_columns([_list_row(job, now) for job in jobs[:_LIST_ROWS]])
    head = "".join(
        f'<th class="{"mjq-n" if name in ("wait", "run", "attempts") else ""}">{name}</th>'
        for name in columns
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{status_badge(cell)}</td>" if name == "status"
            else _CELL_HTML[name].format(_e(cell))
            for name, cell in zip(columns, row, strict=True)
        )
        + "</tr>"
        for row in rows
    )  # fmt: skip
    notes = []
    if len(jobs) > _LIST_ROWS:
        notes.append(f"… {len(jobs) - _LIST_ROWS:,} more not shown")
    if _ongoing(rows):
        notes.append(_ONGOING)
    more = f'<div class="mjq-dim">{_e(" · ".join(notes))}</div>' if notes else ""
    return f'<table class="mjq-t"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}'


def job_list_html(jobs: Iterable[Mapping[str, Any]], now: dt.datetime | None = None) -> str:
    """A table of jobs: id, status, created, wait, run, attempts and a data preview."""
    now = _aware(now) if isinstance(now, dt.datetime) else dt.datetime.now(dt.timezone.utc)
    jobs = list(jobs)
    if not jobs:
        return _wrap('<div class="mjq-dim">no jobs</div>')
    plural = "" if len(jobs) == 1 else "s"
    title = f'<div class="mjq-dim">{len(jobs):,} job{plural}</div>'
    return _wrap(title + _job_table(jobs, now))


def job_list_text(jobs: Iterable[Mapping[str, Any]], now: dt.datetime | None = None) -> str:
    """The same table as plain text, for ``repr`` in a terminal."""
    now = _aware(now) if isinstance(now, dt.datetime) else dt.datetime.now(dt.timezone.utc)
    jobs = list(jobs)
    if not jobs:
        return "no jobs"
    columns, rows = _list_columns([_list_row(job, now) for job in jobs[:_LIST_ROWS]])
    table = [tuple(columns), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
             for row in table]  # fmt: skip
    if len(jobs) > _LIST_ROWS:
        lines.append(f"… {len(jobs) - _LIST_ROWS:,} more")
    if _ongoing(rows):
        lines.append(_ONGOING)
    return "\n".join(line.rstrip() for line in lines)


# -- a queue ------------------------------------------------------------------------------


def queue_html(queue: JobQueue, newest: int = 10) -> str:
    """The queue's database and name, how full its ring is, its counts and newest jobs.

    It never raises (it is a repr): a part that can't be read says "unavailable (ErrorType)",
    never the error's text, which could carry a connection string. When no server answers
    it says so within about ``DISPLAY_TIMEOUT_S`` (see ``display_deadline``).
    """
    from pymongo.errors import ConnectionFailure

    name = f"<code>{_e(getattr(queue.db, 'name', '?'))}</code> · <code>{_e(queue.name)}</code>"
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
            parts.append(f'<dl class="mjq-kv"><dt>{_e(title)}</dt><dd>{body}</dd></dl>')
    return _wrap("".join(parts))


def _unavailable(exc: BaseException) -> str:
    return f'<span class="mjq-dim">unavailable ({_e(type(exc).__name__)})</span>'


def _unavailable_server(exc: BaseException) -> str:
    """Shows "unavailable (ServerUnavailable)", why, and what to do; like the rest of the
    page, no address (a saved notebook travels)."""
    from pymongo.errors import ConnectionFailure

    cause = exc.__context__ if isinstance(exc, ServerUnavailable) else exc
    if not isinstance(cause, ConnectionFailure):
        return _unavailable(exc)
    why = f"no MongoDB server answered ({failure_reason(cause)}); {ADVICE}"
    return f'{_unavailable(ServerUnavailable())}<div class="mjq-dim">{_e(why)}</div>'


def _ring_html(queue: JobQueue) -> str:
    """How full the capped collection is, from its options and its cheap estimated count."""
    options = queue.collection.options()
    if not options.get("capped"):
        return '<span class="mjq-warn">not a capped collection: not usable as a queue</span>'
    count = queue.collection.estimated_document_count()
    most, size = options.get("max"), options.get("size")
    cap = f'<span class="mjq-dim">· up to {_bytes(size)}</span>' if size else ""
    if not most:
        return f"{count:,} jobs {cap}"
    share = count / most
    full = " mjq-full" if share >= 0.9 else ""
    width = f"width:{min(share, 1) * 100:.1f}%"
    bar = f'<span class="mjq-bar{full}"><span style="{width}"></span></span>'
    return f"{count:,} of {int(most):,} jobs ({share:.0%} full) {bar} {cap}"


def _bytes(size: Any) -> str:
    size = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "bytes" else f"{size:.3g} {unit}"
        size /= 1024
    return ""  # unreachable


# -- summary tables -----------------------------------------------------------------------


def summary_html(table: pd.DataFrame) -> str:
    """A ``summary()``/``stats()`` table for reading: durations as "850 ms"/"12.3 s", the
    failure rate as a percentage once per group, group values escaped."""
    import pandas as pd

    names = [n for n in table.index.names]
    stage_level = names.index("stage") if "stage" in names else None
    group_names = [n for i, n in enumerate(names) if i != stage_level]
    columns = [c for c in table.columns if c != "failure_rate"]
    rate = "failure_rate" in table.columns
    head = "".join(f"<th>{_e('' if n is None else n)}</th>" for n in group_names)
    head += "<th>stage</th>" if stage_level is not None else ""
    head += "".join(f'<th class="mjq-n">{"jobs" if c == "count" else _e(c)}</th>' for c in columns)
    head += '<th class="mjq-n">failed</th>' if rate else ""
    keys = [k if isinstance(k, tuple) else (k,) for k in table.index]
    groups = [tuple(k[i] for i in range(len(k)) if i != stage_level) for k in keys]
    shown = min(len(table), _LIST_ROWS)
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
                cells += f"<td>{_e(_STAGES.get(stage, stage))}</td>"
            for column in columns:
                value = table.iat[position, table.columns.get_loc(column)]
                cells += f'<td class="mjq-n">{_e(_statistic(column, value))}</td>'
            if rate and position == start:
                value = table.iat[position, table.columns.get_loc("failure_rate")]
                span = f' rowspan="{end - start}"' if end - start > 1 else ""
                text = "—" if pd.isna(value) else f"{float(value):.1%}"
                cells += f'<td class="mjq-n"{span}>{_e(text)}</td>'
            rows.append(f"<tr>{cells}</tr>")
        start = end
    more = ""
    if len(table) > shown:
        more = f'<div class="mjq-dim">… {len(table) - shown:,} more rows not shown</div>'
    note = (
        '<div class="mjq-dim" style="font-size:11px">wait: created → started · run: started'
        " → done · total: created → done · failed: share of finished jobs that failed</div>"
    )
    return _wrap(
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
    return _e(value)


def _statistic(column: str, value: Any) -> str:
    if column == "count":
        try:
            return f"{int(value):,}"
        except (TypeError, ValueError):
            return str(value)
    return format_seconds(value)
