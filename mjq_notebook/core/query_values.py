"""The job query language's values: numbers, durations, times, and the server-side text
search of free words. Each bad value is one QuerySyntaxError pointing at it."""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Any

from ..errors import QuerySyntaxError

NUMBER = re.compile(r"-?\d+(\.\d+)?([eE][+-]?\d+)?")
DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
INT64 = 2**63
DEPTH = 4  # how deep in the data a free word is looked for (data.a.b.c.d)
NUMERIC = ["int", "long", "double", "decimal", "bool"]  # searched as their text


def number(text: str, at: int) -> int | float | None:
    """``text`` as a number when it is written as one (else None); QuerySyntaxError when it
    can't be stored (over 64 bits, infinite)."""
    if not NUMBER.fullmatch(text):
        return None
    if re.fullmatch(r"-?\d+", text):
        value = int(text)
        if -INT64 <= value < INT64:
            return value
    found = float(text)
    if not math.isfinite(found) or abs(found) >= 2.0**1023:
        raise QuerySyntaxError(f"bad number `{text[:40]}` at {at}: too large", at)
    return found


def duration(text: str, at: int) -> dt.timedelta:
    """``90s``, ``1.5h``, ``2d``: QuerySyntaxError for anything else."""
    found = DURATION.fullmatch(text)
    try:
        if found is None:
            raise ValueError
        return dt.timedelta(seconds=float(found.group(1)) * UNIT_S[found.group(2)])
    except (ValueError, OverflowError):
        raise QuerySyntaxError(
            f"bad duration `{text[:40]}` at {at}: a number and a unit (ms, s, m, h, d, w), "
            "e.g. 90s or 1.5h",
            at,
        ) from None


def millis(text: str, at: int) -> float:
    """A duration in milliseconds, as the server subtracts two dates."""
    return duration(text, at) / dt.timedelta(milliseconds=1)


def cutoff(text: str, now: dt.datetime, at: int) -> tuple[dt.datetime, bool]:
    """The time ``text`` names, and whether it is a whole day: a duration back from ``now``,
    or a date or date and time (UTC unless it says otherwise)."""
    if text[:1].isdigit() and DURATION.fullmatch(text):
        try:
            return now - duration(text, at), False
        except OverflowError:
            raise QuerySyntaxError(f"bad duration `{text[:40]}` at {at}: too long", at) from None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise QuerySyntaxError(
            f"bad time `{text[:40]}` at {at}: a duration back from now (90s, 1h, 2d) or a "
            "date (2026-12-01, 2026-12-01T10:00; UTC)",
            at,
        ) from None
    when = when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when
    return when.astimezone(dt.timezone.utc), bool(DAY.fullmatch(text))


def day_range(day: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    return day, day + dt.timedelta(days=1)


def needle(text: str) -> str:
    """What a case-insensitive search looks for."""
    return text.lower()


def text_search(path: str, word: str, depth: int) -> dict[str, Any]:
    """An aggregation expression, true when ``word`` (lower case) is in the value at ``path``
    (lowered), in a number's or boolean's text, or in any key or value inside it down to
    ``depth`` levels: the tail's old search (in the data as JSON), run by the server."""
    found = {"$literal": word}

    def holds(text: Any) -> dict[str, Any]:
        return {"$gte": [{"$indexOfCP": [{"$toLower": text}, found]}, 0]}

    def level(value: Any, left: int) -> dict[str, Any]:
        kind = {"$type": value}
        branches: list[dict[str, Any]] = [
            {"case": {"$eq": [kind, "string"]}, "then": holds(value)},
            {"case": {"$in": [kind, NUMERIC]}, "then": holds({"$toString": value})},
        ]
        if left:
            key, item = f"k{left}", f"v{left}"
            inner = level(f"$${key}.v", left - 1)
            branches.append({
                "case": {"$eq": [kind, "object"]},
                "then": {"$anyElementTrue": [{"$map": {
                    "input": {"$objectToArray": value}, "as": key,
                    "in": {"$or": [holds(f"$${key}.k"), inner]},
                }}]},
            })  # fmt: skip
            branches.append({
                "case": {"$eq": [kind, "array"]},
                "then": {"$anyElementTrue": [{"$map": {
                    "input": value, "as": item, "in": level(f"$${item}", left - 1),
                }}]},
            })  # fmt: skip
        return {"$switch": {"branches": branches, "default": False}}

    return level(path, depth)
