"""Duration axes: ticks at round durations ("100 ms", "1 min", "6 h"), labelled as
``format_seconds`` writes durations everywhere else, and spaced so their labels never touch.

Its own module because it subclasses matplotlib's ticker classes, so importing it imports
matplotlib: ``plots`` imports it when a plot is drawn, as it does ``figure``.
"""

from __future__ import annotations

import math
import re
from typing import Any

from matplotlib.axis import Axis
from matplotlib.ticker import Formatter, Locator

from ..text import format_seconds

_MS, _MIN, _H, _D = 1e-3, 60.0, 3600.0, 86400.0
# Round durations and how round each is (4: a unit itself). A log axis too short for all of
# those in view keeps the roundest: 1 ms, 10 ms, 100 ms, 1 s, 10 s, 1 min, 10 min, 1 h, ...
_ROUNDNESS = {
    _MS: 4, 1.0: 4, _MIN: 4, _H: 4, _D: 4,
    10 * _MS: 3, 100 * _MS: 3, 10.0: 3, 10 * _MIN: 3, 6 * _H: 3, 10 * _D: 3, 100 * _D: 3,
    5 * _MS: 2, 50 * _MS: 2, 500 * _MS: 2, 5.0: 2, 30.0: 2, 5 * _MIN: 2, 30 * _MIN: 2,
    12 * _H: 2, 5 * _D: 2, 50 * _D: 2,
    2 * _MS: 1, 20 * _MS: 1, 200 * _MS: 1, 2.0: 1, 20.0: 1, 2 * _MIN: 1, 2 * _H: 1, 2 * _D: 1,
    20 * _D: 1,
    15 * _MIN: 0, 20 * _MIN: 0, 3 * _H: 0,
}  # fmt: skip
# Steps of evenly spaced ticks (a linear axis, or a log axis over a narrow range).
_STEPS = sorted(
    [m * 10.0**e for e in range(-6, 0) for m in (1, 2, 5)]
    + [1, 2, 5, 10, 15, 20, 30]
    + [m * _MIN for m in (1, 2, 5, 10, 15, 30)]
    + [m * _H for m in (1, 2, 3, 6, 12)]
    + [m * 10.0**e * _D for e in range(0, 4) for m in (1, 2, 5)]
)
_UNITS = {"ms": _MS, "s": 1.0, "min": _MIN, "h": _H, "d": _D}
_CHAR_EM = 0.62  # the width of a digit or letter in DejaVu Sans, in ems (a space: 0.32)
_GAP_EM = 1.2  # the least room between two tick labels


def tick_label(seconds: float) -> str:
    """A duration tick's label: ``format_seconds``, and "0" for zero."""
    return "0" if seconds == 0 else format_seconds(seconds)


class DurationFormatter(Formatter):
    """Tick labels of a duration axis in seconds: "5 ms", "2 s", "1 min", "6 h"."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return tick_label(x)


class DurationLocator(Locator):
    """Ticks at round durations (the axis is in seconds), linear or log axis alike.

    On a log axis: the round durations of ``_ROUNDNESS`` in view, the roundest first (1 ms,
    1 s, 1 min, 1 h), then each less round one whose label fits between those already there.
    Otherwise (or with fewer than two round durations in view): evenly spaced ticks, the
    smallest step of ``_STEPS`` whose labels fit and say their value exactly (a step of 15 min
    over 1-2 h would label 75 min "1.2 h": skipped). Labels fit when at most ``max_ticks``
    are shown and, once the axis has a size, none comes within ``_GAP_EM`` of the next at the
    tick labels' font size.
    """

    def __init__(self, max_ticks: int = 8) -> None:
        self.max_ticks = max_ticks

    def __call__(self) -> list[float]:
        assert self.axis is not None, "a locator ticks the axis it is set on"
        low, high = self.axis.get_view_interval()
        return self.tick_values(low, high)

    def tick_values(self, vmin: float, vmax: float) -> list[float]:
        low, high = sorted((float(vmin), float(vmax)))
        if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
            return []
        if self._log():
            ticks = self._round_ticks(max(low, 1e-9), high)
            if len(ticks) >= 2:
                return ticks
        for step in _STEPS:
            first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
            if last - first >= self.max_ticks:  # too many: a larger step
                continue
            ticks = [n * step for n in range(max(first, 0), last + 1)]  # durations are >= 0
            if self._log():
                ticks = [t for t in ticks if t > 0]
            if len(ticks) >= 2 and self._fits(ticks, low, high) and all(map(_exact, ticks)):
                return ticks
        return [low, high]

    def _round_ticks(self, low: float, high: float) -> list[float]:
        """The roundest durations in view first, then each less round one that fits. Where
        a rounder one did not fit, no less round one goes either: 1 ms, 1 s, 1 min, not
        1 ms, 50 ms, 1 s, 1 min."""
        ticks: list[float] = []
        crowded: list[tuple[float, float]] = []  # between ticks where a rounder one did not fit
        for roundness in (4, 3, 2, 1, 0):
            missed = []
            for tick in sorted(t for t, r in _ROUNDNESS.items() if r == roundness):
                if not low <= tick <= high or any(a < tick < b for a, b in crowded):
                    continue
                if self._fits(sorted([*ticks, tick]), low, high):
                    ticks = sorted([*ticks, tick])
                else:
                    missed.append(tick)
            for tick in missed:
                crowded.append((max([t for t in ticks if t < tick], default=0.0),
                                min([t for t in ticks if t > tick], default=math.inf)))  # fmt: skip
        return ticks

    def _log(self) -> bool:
        axis = self._on_axes()
        return axis is not None and axis.get_scale() == "log"

    def _on_axes(self) -> Axis | None:
        """The Axes' axis this locator ticks; None before it is set, or on the dummy axis of a
        locator used alone (``create_dummy_axis()``), which has a view but no scale or size."""
        axis = getattr(self, "axis", None)
        return axis if isinstance(axis, Axis) else None

    def _fits(self, ticks: list[float], low: float, high: float) -> bool:
        """At most ``max_ticks``, and none of their labels within ``_GAP_EM`` of the next."""
        if len(ticks) > self.max_ticks:
            return False
        axis: Any = self._on_axes()  # axis_name is XAxis's and YAxis's, not Axis's
        if axis is None:
            return True
        scale = axis.get_transform().transform
        start, end = scale([low, high])
        box = axis.axes.bbox
        length = box.width if axis.axis_name == "x" else box.height
        if not length or end == start:
            return True
        font = axis.get_major_ticks(1)[0].label1.get_fontsize()
        em = font * axis.axes.figure.dpi / 72  # pixels
        at = (scale(ticks) - start) / (end - start) * length
        widths = [_width_em(tick_label(t)) * em for t in ticks]
        if axis.axis_name != "x":  # labels stack vertically: one line each
            widths = [em for _ in ticks]
        return all(
            at[i + 1] - at[i] >= (widths[i] + widths[i + 1]) / 2 + _GAP_EM * em
            for i in range(len(ticks) - 1)
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_ticks={self.max_ticks})"


def _width_em(text: str) -> float:
    return sum(0.32 if c == " " else _CHAR_EM for c in text)


def _exact(seconds: float) -> bool:
    """The tick's label says its value ("1 min 30 s" does; "1.2 h" for 75 min does not)."""
    return seconds == 0 or math.isclose(parse_duration(tick_label(seconds)), seconds, rel_tol=1e-6)


def parse_duration(text: str) -> float:
    """The seconds a ``format_seconds`` text says: "1 min 30 s" -> 90.0."""
    parts = re.findall(r"(-?[\d.]+) (ms|s|min|h|d)\b", text)
    if not parts:
        return math.nan
    return sum(float(number) * _UNITS[unit] for number, unit in parts)


def duration_axis(axis: Any, max_ticks: int = 8) -> None:
    """Round duration ticks on ``axis`` (an x or y axis in seconds), no minor tick labels."""
    from matplotlib.ticker import NullFormatter

    axis.set_major_locator(DurationLocator(max_ticks))
    axis.set_major_formatter(DurationFormatter())
    axis.set_minor_formatter(NullFormatter())
