"""Durations as people write them ("850 ms", "1 min 4 s", "1.5 h"): one formatter for every
table, display, chart and terminal line of the package (and tail.js's mirror of it)."""

from __future__ import annotations

import math


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
