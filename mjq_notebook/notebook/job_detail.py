"""One job in HTML (``job_html``, the ``Job._repr_html_`` and the tail's detail pane): its
status, times, data, result and error, with big values as a collapsed tree."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..text import as_of, format_ago, format_seconds, format_time, int_or_none, utc
from .attempts_html import attempts_html
from .formatting import (
    data_preview,
    job_times,
    lost_note,
    progress_of,
    scalar_text,
    seconds_between,
)
from .markup import escape, status_badge, wrap

_INLINE = 60  # a document or list whose one-line preview fits shows on one line
_STRING_CUT = 120  # longer strings show their start; the rest is one click away
_FULL_TEXT = 20_000  # characters of one string rendered at all (notebooks store outputs)
_ITEMS = 50  # keys or items shown per level of a nested value
_DEPTH = 6  # nesting levels shown as a tree; deeper values show as a one-line preview


def job_html(
    job: Mapping[str, Any],
    now: dt.datetime | None = None,
    worker: Mapping[str, Any] | None = None,
    *,
    worker_lost: bool = False,
    attempts: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """A job's full detail: status, attempts, priority, worker, times (UTC, relative, wait and
    run), when a retry is due, its data, result and error (the traceback collapsed).
    ``worker``: the registry record of the worker running it, to say if that one is alive;
    ``worker_lost``: the caller says elsewhere that it is lost (the dashboard's note), so
    only its progress bar shows it, grey: it stands still. ``attempts``: its story
    (``q.story(job)``), shown as an "Attempts" section, newest last."""
    now = as_of(now)
    try:
        body = _job_body(job, now, worker, worker_lost, attempts)
    except Exception as exc:  # a display must not raise: show what we can
        body = (
            f'<div class="mjq-warn">this job could not be shown in full '
            f"({escape(type(exc).__name__)})</div><pre>{escape(repr(job)[:_FULL_TEXT])}</pre>"
        )
    return wrap(body)


def _job_body(
    job: Mapping[str, Any],
    now: dt.datetime,
    worker: Mapping[str, Any] | None,
    worker_lost: bool,
    story: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    status = str(job.get("status", "?"))
    head = [
        f"<b>Job</b> <code>{escape(job.get('_id'))}</code>",
        status_badge(status),
    ]
    attempts = _attempts_text(job, status)
    if attempts:
        head.append(f"<span>{escape(attempts)}</span>")
    if job.get("priority") is not None:
        head.append(f'<span class="mjq-dim">priority</span> {escape(job["priority"])}')
    if job.get("worker"):
        label = "worker" if status == "working" else "last worker"
        head.append(f'<span class="mjq-dim">{label}</span> <code>{escape(job["worker"])}</code>')
    lost = False
    if status == "working" and worker is not None:
        lost = worker.get("state") == "lost"
        head.append(_worker_state_html(worker, lost, now))
    parts = [f'<div class="mjq-head">{" ".join(head)}</div>']
    if lost:
        hint = "; q.reclaim(job) hands it back now"
        parts.append(f'<div class="mjq-warn">{escape(lost_note(job, now) + hint)}</div>')
    frozen = status == "working" and (lost or worker_lost)
    times = _times_html(job, status, now) + _progress_html(job, now, frozen)
    parts.append(f'<dl class="mjq-kv">{times}</dl>')
    parts.append(_section("data", _value_html(job.get("data"))))
    if "result" in job and (job.get("result") is not None or status == "done"):
        parts.append(_section("result", _value_html(job.get("result"))))
    if job.get("error"):
        title = "last error" if status != "failed" else "error"
        parts.append(_section(title, _error_html(job["error"])))
    parts.append(attempts_html(story))
    parts.append(f'<div class="mjq-dim" style="font-size:11px">times as of {format_time(now)}'
                 " UTC</div>")  # fmt: skip
    return "".join(parts)


def _worker_state_html(worker: Mapping[str, Any], lost: bool, now: dt.datetime) -> str:
    """The running worker's state as the registry says: a "lost" badge, or "(running", then
    "last heartbeat 4 s ago"."""
    beat = worker.get("heartbeat")
    ago = f"last heartbeat {format_ago(beat, now)}" if isinstance(beat, dt.datetime) else ""
    if lost:
        return f'<span class="mjq-badge mjq-s-lost">lost</span> <span class="mjq-dim">{ago}</span>'
    state = escape(worker.get("state") or "?")
    return f'<span class="mjq-dim">({state}{" · " + ago if ago else ""})</span>'


def _attempts_text(job: Mapping[str, Any], status: str) -> str:
    attempts, most = int_or_none(job.get("attempts")), int_or_none(job.get("max_attempts"))
    of = f" of {most}" if most else ""
    if attempts is None:
        return ""
    if status == "waiting":
        if attempts == 0:
            return f"not tried yet (up to {most} attempts)" if most else "not tried yet"
        return f"next: attempt {attempts + 1}{of}"
    return f"attempt {attempts}{of}"


def _times_html(job: Mapping[str, Any], status: str, now: dt.datetime) -> str:
    created, started, done = job_times(job, status)
    waited = format_seconds(seconds_between(created, started))
    rows = [("created", created, "")]
    if started is not None:
        label = "last started" if status == "waiting" else "started"
        note = f"waited {waited}"
        if status == "working":
            note += f" · running {format_seconds(seconds_between(started, now))}"
        rows.append((label, started, note))
    elif status == "waiting" and isinstance(created, dt.datetime):
        rows[0] = ("created", created, f"waiting {format_seconds(seconds_between(created, now))}")
    if done is not None and status == "cancelled":
        rows.append(("cancelled", done, ""))
    elif done is not None:
        rows.append(("done", done, f"ran {format_seconds(seconds_between(started, done))}"))
    available = job.get("available_at")
    if status == "waiting" and isinstance(available, dt.datetime) and utc(available) > now:
        label = "retry due" if (int_or_none(job.get("attempts")) or 0) > 0 else "available"
        rows.append((label, available, ""))
    lease = job.get("lease_until")
    if status == "working" and isinstance(lease, dt.datetime):
        rows.append(("lease until", lease, ""))
    html_rows = []
    for label, when, note in rows:
        text = f'<span class="mjq-mono">{escape(format_time(when))}</span>'
        if isinstance(when, dt.datetime):
            text += f' UTC <span class="mjq-dim">· {escape(format_ago(when, now))}</span>'
        if note:
            text += f" · {escape(note)}"
        html_rows.append(f"<dt>{escape(label)}</dt><dd>{text}</dd>")
    return "".join(html_rows)


def _progress_html(job: Mapping[str, Any], now: dt.datetime, frozen: bool = False) -> str:
    """The last progress the job reported: a bar (a faint full one when the total is
    unknown; grey when ``frozen``: its worker is lost), "40% · 4/10 · resizing" and when it
    was reported; "" when it reported none."""
    progress = progress_of(job)
    if progress is None:
        return ""
    fraction, text = progress
    width = 100.0 if fraction is None else fraction * 100
    kind = (" mjq-unknown" if fraction is None else "") + (" mjq-frozen" if frozen else "")
    now_at = "" if fraction is None else f' aria-valuenow="{width:.0f}"'
    bar = (
        f'<span class="mjq-bar mjq-progress{kind}" role="progressbar" aria-valuemin="0" '
        f'aria-valuemax="100"{now_at}><span style="width:{width:.1f}%"></span></span>'
    )
    at = job["progress"].get("at")
    when = f' <span class="mjq-dim">· {escape(format_ago(at, now))}</span>' if at else ""
    label = "progress" if job.get("status") == "working" else "last progress"
    return f"<dt>{label}</dt><dd>{bar} {escape(text)}{when}</dd>"


def _section(title: str, body: str) -> str:
    return f'<div class="mjq-sec"><div class="mjq-h">{escape(title)}</div>{body}</div>'


def _error_html(error: Any) -> str:
    if not isinstance(error, Mapping):
        return _value_html(error)
    kind, message = error.get("type") or "Error", error.get("message")
    line = f'<b style="color:var(--mjq-failed)">{escape(kind)}</b>'
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
        return escape(text)
    return escape(text[:_FULL_TEXT]) + f"\n… cut: {len(text):,} characters in all"


def _string_html(text: str, quoted: bool = True) -> str:
    """A short string inline; a long or multi-line one cut, with a ``<details>`` to see all."""
    if len(text) <= _STRING_CUT and "\n" not in text:
        shown = json.dumps(text, ensure_ascii=False) if quoted else text
        return f"<code>{escape(shown)}</code>"
    start = data_preview(text, _STRING_CUT) if quoted else text[:_STRING_CUT].split("\n")[0] + "…"
    return (
        f"<details><summary><code>{escape(start)}</code> "
        f'<span class="mjq-dim">({len(text):,} characters)</span></summary>'
        f"<pre>{_cut(text)}</pre></details>"
    )


def _value_html(value: Any, depth: int = 0) -> str:
    """A readable view of job data: small values on one line, big documents and lists as a
    key/value tree whose nested parts are collapsed, long strings cut."""
    if isinstance(value, str):
        return _string_html(value)
    if not isinstance(value, (Mapping, list, tuple)):
        return f"<code>{escape(scalar_text(value, _FULL_TEXT))}</code>"
    preview = data_preview(value, _INLINE + 1)
    if len(preview) <= _INLINE and not _has_long_string(value):
        return f"<code>{escape(preview)}</code>"
    if depth >= _DEPTH:
        return f"<code>{escape(data_preview(value, 200))}</code>"
    items = list(value.items()) if isinstance(value, Mapping) else list(enumerate(value))
    rows = "".join(
        f"<dt>{escape(key)}</dt><dd>{_value_html(inner, depth + 1)}</dd>"
        for key, inner in items[:_ITEMS]
    )
    if len(items) > _ITEMS:
        rows += f'<dt>…</dt><dd class="mjq-dim">{len(items) - _ITEMS:,} more not shown</dd>'
    tree = f'<dl class="mjq-kv">{rows}</dl>'
    if depth == 0:
        return tree
    kind = ("key" if isinstance(value, Mapping) else "item") + ("" if len(items) == 1 else "s")
    return (
        f"<details><summary><code>{escape(data_preview(value, _INLINE))}</code> "
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
