"""The workers panel: who works the queue, from where, on what, and whether it is alive.

The dashboard shows it in full and the tail a compact one ("Workers" beside its filters). Both
draw ``snapshot.workers``, which the queue's one ``Watcher`` reads every ``WORKERS_S`` only
while some view wants it (``Subscription.want(workers=True)``); nothing here reads MongoDB.

Every value in a row comes from a worker's record, which anyone who can write to the database
could have written (names, hosts, job ids): it is made printable and escaped; the badge
classes come from a fixed map.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as W

from ...registry import printable, seconds
from ..display import escape, stylesheet
from ..subscription import Snapshot

RATE_SPAN_S = 60.0  # "jobs a minute": finished over (about) the last minute of heartbeats
_BADGE = {"running": "working", "stopping": "waiting", "stopped": "other", "lost": "lost"}
FULL = ("state", "worker", "host:pid", "running now", "done", "failed", "jobs/min", "busy",
        "heartbeat")  # fmt: skip
COMPACT = ("state", "worker", "running now", "heartbeat")
_NUMERIC = {"done", "failed", "jobs/min", "busy"}


class JobRates:
    """Jobs a minute per worker, from the done + failed counts its heartbeats wrote: the
    change over the last ``RATE_S`` of heartbeats; its life's average until two are seen."""

    def __init__(self) -> None:
        self._seen: dict[str, deque[tuple[float, int]]] = {}  # id -> (heartbeat, finished)

    def add(self, workers: Sequence[Mapping[str, Any]]) -> None:
        """Note what each worker's record says now (called once per read of the registry)."""
        for row in workers:
            beat = row.get("heartbeat")
            if not isinstance(beat, dt.datetime):
                continue
            samples = self._seen.setdefault(str(row.get("_id")), deque())
            at = beat.timestamp()
            if samples and samples[-1][0] >= at:
                continue  # no heartbeat since the last read
            samples.append((at, _finished(row)))
            while len(samples) > 2 and at - samples[1][0] >= RATE_SPAN_S:
                samples.popleft()
        if len(self._seen) > 4 * len(workers) + 20:  # forget workers whose records went
            ids = {str(row.get("_id")) for row in workers}
            self._seen = {key: value for key, value in self._seen.items() if key in ids}

    def per_minute(self, row: Mapping[str, Any]) -> float | None:
        samples = self._seen.get(str(row.get("_id")))
        if samples and len(samples) >= 2 and samples[-1][0] > samples[0][0]:
            (t0, n0), (t1, n1) = samples[0], samples[-1]
            return max(n1 - n0, 0) * 60.0 / (t1 - t0)
        beat, started = row.get("heartbeat"), row.get("started")
        if isinstance(beat, dt.datetime) and isinstance(started, dt.datetime):
            span = (beat - started).total_seconds()
            if span >= 1.0:
                return _finished(row) * 60.0 / span
        return None


def _finished(row: Mapping[str, Any]) -> int:
    total = 0
    for key in ("done", "failed"):
        value = row.get(key)
        total += value if isinstance(value, int) and not isinstance(value, bool) else 0
    return total


def state_badge(state: Any) -> str:
    kind = _BADGE.get(str(state), "other")
    return f'<span class="mjq-badge mjq-s-{kind}">{escape(printable(state))}</span>'


def worker_cells(
    row: Mapping[str, Any], now: dt.datetime, rates: JobRates | None = None
) -> dict[str, str]:
    """A worker's cells as plain text (NOT escaped): the panel's columns."""
    running = [job for job in row.get("running") or [] if isinstance(job, Mapping)]
    now_text = "idle" if row.get("state") == "running" else "—"
    if running:
        first = running[0]
        since = first.get("since")
        took = seconds((now - since).total_seconds()) if isinstance(since, dt.datetime) else "?"
        now_text = f"{printable(first.get('id'))} for {took}"
        if len(running) > 1:
            now_text += f" (+{len(running) - 1} more)"
    rate = rates.per_minute(row) if rates is not None else None
    busy = row.get("busy")
    beat = row.get("heartbeat")
    return {
        "state": printable(row.get("state")),
        "worker": printable(row.get("name") or row.get("_id")),
        "host:pid": printable(f"{row.get('host')}:{row.get('pid')}"),
        "running now": now_text,
        "done": f"{_finished({'done': row.get('done')}):,}",
        "failed": f"{_finished({'failed': row.get('failed')}):,}",
        "jobs/min": "—" if rate is None else f"{rate:.1f}",
        "busy": f"{busy:.0%}" if isinstance(busy, (int, float)) else "—",
        "heartbeat": (
            f"{seconds((now - beat).total_seconds())} ago" if isinstance(beat, dt.datetime) else "—"
        ),
    }


def workers_panel_html(
    workers: Sequence[Mapping[str, Any]] | None,
    now: dt.datetime,
    rates: JobRates | None = None,
    *,
    compact: bool = False,
) -> str:
    """The panel: a line counting the workers by state, then one row per worker (the
    compact one: state, name, what it runs, heartbeat; host:pid in a tooltip)."""
    if workers is None:
        return _wrap('<span class="mjq-dim">workers: reading…</span>')
    if not workers:
        text = "no workers registered: start one with `mjq work` or Worker(q, handler)"
        return _wrap(f'<span class="mjq-dim">{escape(text)}</span>')
    states: dict[str, int] = {}
    for row in workers:
        state = printable(row.get("state"))
        states[state] = states.get(state, 0) + 1
    plural = "" if len(workers) == 1 else "s"
    summary = " · ".join(f"{n} {escape(state)}" for state, n in states.items())
    title = f'<div class="mjq-dim">{len(workers):,} worker{plural}: {summary}</div>'
    columns = COMPACT if compact else FULL
    head = "".join(
        f'<th class="{"mjq-n" if name in _NUMERIC else ""}">{escape(name)}</th>' for name in columns
    )
    body = "".join(_row(row, now, rates, columns) for row in workers)
    table = (
        f'<table class="mjq-t mjq-workers"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )
    return _wrap(title + table)


def _row(
    row: Mapping[str, Any], now: dt.datetime, rates: JobRates | None, columns: Sequence[str]
) -> str:
    cells = worker_cells(row, now, rates)
    tip = f"{cells['host:pid']} · id {printable(row.get('_id'))}"
    html = []
    for name in columns:
        text = escape(cells[name])
        if name == "state":
            html.append(f"<td>{state_badge(row.get('state'))}</td>")
        elif name == "worker":
            html.append(f'<td title="{escape(tip)}"><code>{text}</code></td>')
        elif name == "running now":
            html.append(f'<td class="mjq-wide"><code>{text}</code></td>')
        elif name == "host:pid":
            html.append(f"<td><code>{text}</code></td>")
        else:
            html.append(f'<td class="{"mjq-n" if name in _NUMERIC else ""}">{text}</td>')
    state = escape(_BADGE.get(str(row.get("state")), "other"))
    return f'<tr data-state="{state}">{"".join(html)}</tr>'


def _wrap(body: str) -> str:
    return f'<div class="mjq" style="font-variant-numeric:tabular-nums">{body}</div>'


class WorkersView:
    """An HTML widget showing the workers of the snapshots it is given (``render``): the
    full panel or the compact one. Owned by a view that subscribes with ``workers=True``."""

    def __init__(self, *, compact: bool = False, styled: bool = True, **layout: Any) -> None:
        self.compact = compact
        self._style = stylesheet() if styled else ""  # off where another widget carries it
        self.rates = JobRates()
        self.widget = W.HTML(layout=layout)
        self._read_at = -1.0

    def render(self, snapshot: Snapshot, now: dt.datetime | None = None) -> None:
        """Draw ``snapshot.workers`` (the rates learn from each new read). Sends nothing
        when the text is the same."""
        if snapshot.workers is not None and snapshot.workers_at != self._read_at:
            self._read_at = snapshot.workers_at
            self.rates.add(snapshot.workers)
        now = now or dt.datetime.now(dt.timezone.utc)
        html = self._style + workers_panel_html(
            snapshot.workers, now, self.rates, compact=self.compact
        )
        if html != self.widget.value:
            self.widget.value = html
