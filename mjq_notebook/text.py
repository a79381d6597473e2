"""Plain text, the one home of each formatter every table, display, chart and terminal line
of the package uses (``notebook/markup.py`` holds the HTML ones): durations as people write
them ("850 ms", "1 min 4 s", "1.5 h"; tail.js mirrors ``format_seconds``), sizes, how long
ago, UTC times, and the checks that records anyone could write need (integers, printable
text). It imports nothing of the package, so every layer (the CLI, the notebook) can use it."""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def format_seconds(seconds: float | None) -> str:
    """A duration for reading: "850 ms", "12.3 s", "1 min 4 s", "1.5 h", "3 d"; "—" if unknown.

    Minutes are written with whole seconds up to 10 min ("1 min 4 s", not "1.06 min": a
    decimal minute reads as seconds), then whole minutes ("25 min"); hours and days with one
    decimal below 10 ("1.5 h", "12 h"): about three significant digits throughout.
    """
    if seconds is None:
        return "—"
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        return "—"
    if math.isnan(value):
        return "—"
    if value < 0:
        return "-" + format_seconds(-value)
    if math.isinf(value):
        return "∞"
    for unit, size, limit in (("ms", 1e-3, 1e3), ("s", 1, 60)):
        text = significant(value / size)
        if float(text) < limit:
            return f"{text} {unit}"
    whole = round(value) if value < 600 else round(value / 60) * 60  # from 10 min: minutes
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours = _one_decimal(value / 3600)
    if float(hours) < 48:
        return f"{hours} h"
    return f"{_one_decimal(value / 86400)} d"


def _one_decimal(number: float) -> str:
    """One decimal below 10, none from 10 on: 1.5, 9.9, 12."""
    text = f"{number:.1f}" if number < 9.95 else f"{number:.0f}"
    return text.removesuffix(".0")


def significant(number: float) -> str:
    """Three significant digits at most, no exponent, no trailing zeros: 850, 12.3, 1.5, 0.004.

    Small numbers keep their digits too (0.004, not 0): a p90 wait of 4 ms in seconds.
    """
    if number < 0:
        return "-" + significant(-number)
    if number >= 100:
        text = f"{number:.0f}"
    elif number >= 10:
        text = f"{number:.1f}"
    elif number >= 1 or number == 0:
        text = f"{number:.2f}"
    else:  # 2 decimals more than the first significant digit's place: 0.0123, 0.004
        text = f"{number:.{2 - math.floor(math.log10(number))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_bytes(size: Any) -> str:
    """A size in bytes for reading ("850 bytes", "9 MiB", "15.5 MiB"): binary units with three
    significant digits."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "bytes" else f"{value:.3g} {unit}"
        value /= 1024
    return ""  # unreachable


def jobs_text(n: int) -> str:
    """ "1 job", "3 jobs", "1,000 jobs"."""
    return f"{n:,} job{'' if n == 1 else 's'}"


def progress_text(done: float, total: float | None, message: str | None) -> str:
    """A job's progress said once: "40% · 4/10 · resizing"; the message alone after the
    percentage when it already says the numbers ("50% · step 5 of 10", not "step 5 of 10
    5/10"); "3 done · resizing", or "resized 3 photos", without a total."""
    number = significant(done) if isinstance(done, float) else f"{done:,}"
    said = {n.replace(",", "") for n in re.findall(r"\d[\d,]*(?:\.\d+)?", message or "")}
    if total is None or total <= 0:
        numbers, needed = f"{number} done", {number}
    else:
        whole = significant(total) if isinstance(total, float) else f"{total:,}"
        numbers, needed = f"{number}/{whole}", {number, whole}
    if message and {n.replace(",", "") for n in needed} <= said:
        parts = [message]
    else:
        parts = [numbers, message] if message else [numbers]
    if total is not None and total > 0:
        parts.insert(0, f"{min(max(done / total, 0.0), 1.0):.0%}")
    return " · ".join(parts)


WORKER_STATES = ("running", "stopping", "lost", "stopped")  # the order they are counted in


def workers_count(states: Mapping[str, Any]) -> str:
    """Workers by state, said one way in every panel and table: "0 running, 1 lost" (running
    always; the others when there are some). A count that is no integer (records anyone
    could write) is shown as printable text."""
    order = [*WORKER_STATES, *sorted(set(states) - set(WORKER_STATES), key=str)]
    counts = [(state, states.get(state) or 0) for state in order]
    return ", ".join(
        f"{n:,} {printable(state)}" if int_or_none(n) is not None else f"{printable(n)} {state}"
        for state, n in counts
        if n or state == "running"
    )


def text_table(rows: Iterable[Sequence[str]]) -> list[str]:
    """Rows of cells (the headings first) as lines of a plain table: each column as wide as
    its widest cell, two spaces apart, no trailing spaces."""
    rows = [list(row) for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def printable(value: Any) -> str:
    """``value`` as one line of text a terminal shows as written: names, hosts and ids come
    from records that anyone with access to the database could have written."""
    return "".join(c if c.isprintable() else "?" for c in str(value))


def format_ago(when: Any, now: dt.datetime | None = None) -> str:
    """How far ``when`` is from ``now`` (default: the current time), as ``format_seconds``
    writes it, to the whole second from one second on (a moment, not a measurement):
    "250 ms ago", "4 s ago", "in 1 min 30 s"; "—" if ``when`` is no datetime."""
    if not isinstance(when, dt.datetime):
        return "—"
    seconds = (as_of(now) - utc(when)).total_seconds()
    distance = abs(seconds)
    text = format_seconds(round(distance) if distance >= 1 else distance)
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def format_time(when: Any) -> str:
    """A UTC time at BSON's millisecond precision: "2026-03-01 12:00:00.123"."""
    if not isinstance(when, dt.datetime):
        return "—" if when is None else str(when)
    when = utc(when).astimezone(dt.timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}"


def utc(when: dt.datetime) -> dt.datetime:
    """BSON dates are UTC: a naive datetime read with tz_aware=False is UTC too."""
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.timezone.utc)


def as_of(now: dt.datetime | None) -> dt.datetime:
    """The time a display is computed for: ``now`` if given, else the current time."""
    return utc(now) if isinstance(now, dt.datetime) else dt.datetime.now(dt.timezone.utc)


def int_or_none(value: Any) -> int | None:
    """``value`` if it is an int (not a bool), else None: counts in records that anyone with
    access to the database could have written."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None
