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

from ...core.registry import ALIVE, COLUMNS, HEARTBEAT_S
from ...live.subscription import Snapshot
from ...text import int_or_none
from ..display import stylesheet, workers_html

RATE_SPAN_S = 60.0  # "jobs a minute": finished over (about) the last minute of heartbeats
FULL = COLUMNS
COMPACT = ("state", "worker", "job", "heartbeat")


class JobRates:
    """Jobs a minute per worker, from the done + failed counts its heartbeats wrote.

    A running (or stopping) worker: the change over the last ``RATE_SPAN_S`` of heartbeats,
    once they span one of its heartbeat intervals at least (its record's ``interval``, the
    registry's default ``HEARTBEAT_S`` if it has none): a stop writes at once, off the clock,
    and the jobs of a burst over the short moment between a heartbeat and that write would
    read as a rate of hundreds a minute. Until then its life's average. A stopped or lost
    worker writes no more, so its last window would stand for ever: it gets its life's
    average up to its last heartbeat, which never changes after."""

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
        if row.get("state") in ALIVE:
            samples = self._seen.get(str(row.get("_id")))
            interval = row.get("interval")
            least = float(interval) if isinstance(interval, (int, float)) else HEARTBEAT_S
            if samples and len(samples) >= 2 and samples[-1][0] - samples[0][0] >= least:
                (t0, n0), (t1, n1) = samples[0], samples[-1]
                return max(n1 - n0, 0) * 60.0 / (t1 - t0)
        return life_per_minute(row)


def life_per_minute(row: Mapping[str, Any]) -> float | None:
    """A worker's jobs a minute over its life, from its start to its last heartbeat (None
    before it has run a second)."""
    beat, started = row.get("heartbeat"), row.get("started")
    if isinstance(beat, dt.datetime) and isinstance(started, dt.datetime):
        span = (beat - started).total_seconds()
        if span >= 1.0:
            return _finished(row) * 60.0 / span
    return None


def _finished(row: Mapping[str, Any]) -> int:
    return (int_or_none(row.get("done")) or 0) + (int_or_none(row.get("failed")) or 0)


def workers_panel_html(
    workers: Sequence[Mapping[str, Any]] | None,
    now: dt.datetime,
    rates: JobRates | None = None,
    *,
    compact: bool = False,
) -> str:
    """The panel: ``display.workers_html`` in the full or the compact columns, with jobs a
    minute from ``rates``; "reading…" before the first read."""
    if workers is None:
        return _wrap('<span class="mjq-dim">workers: reading…</span>')
    per_minute = rates.per_minute if rates is not None else None
    html = workers_html(workers, now, columns=COMPACT if compact else FULL, per_minute=per_minute)
    return _wrap(html)


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
