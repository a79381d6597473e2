"""Small inline-SVG charts for the dashboard: a throughput sparkline, a latency histogram,
and the time series of its longer ranges (``series_svg``, which draws the sparkline too).

Pure functions from numbers to SVG text: no widgets, no I/O, so they are cheap to test and to
call from the watcher's thread. Colours are CSS variables with fallbacks (JupyterLab's
``--jp-*``), set through ``style`` so they follow light and dark themes; every bit of text is
escaped even though it is made from numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ...analysis.timing import FLOOR_S
from ...text import format_seconds
from ..display import escape

BRAND = "var(--jp-brand-color1,#1976d2)"
SUCCESS = "var(--jp-success-color1,#388e3c)"
ACCENT = "var(--jp-warn-color1,#f57c00)"
MARK = "var(--jp-error-color1,#d32f2f)"
TEXT = "var(--jp-ui-font-color2,#616161)"
GRID = "var(--jp-border-color2,#e0e0e0)"
# Labels of 11 px: the charts are drawn at the size they are shown (the dashboard gives them
# their width; only an output narrower than a chart scales it down, see _svg). Numbers in
# tabular figures, so a label does not wobble as its digits change.
FONT_PX = 11
LINE_H = FONT_PX + 4  # a line of text
_FONT = (
    f"font-family:var(--jp-ui-font-family,sans-serif);font-size:{FONT_PX}px;"
    "font-variant-numeric:tabular-nums"
)


def rebin(per_second: Sequence[int], end: int, now: float, window: float, step: float) -> list[int]:
    """Counts per ``step`` over the ``window`` seconds before ``now``, oldest first, from
    counts per second whose last entry is the second before ``end`` (epoch seconds); seconds
    after ``end`` count zero (nothing was signalled since)."""
    buckets = max(1, round(window / step))
    start = now - buckets * step
    counts = [0] * buckets
    first = end - len(per_second)
    for i, n in enumerate(per_second):
        t = first + i
        if n and start <= t < now:
            counts[min(buckets - 1, int((t - start) // step))] += n
    return counts


def sparkline_svg(
    made: Sequence[int],
    done: Sequence[int],
    *,
    window: float = 600.0,
    step: float = 10.0,
    width: int = 300,
    height: int = 96,
) -> str:
    """Jobs created and finished per ``step`` seconds over the last ``window`` (``made`` and
    ``done``, one count a step, oldest first), as two sparklines one above the other over a
    time axis ("-10 min" … "now").

    Each line has its own scale, named in its label ("peak 500 per 10 s"): on one shared
    scale the finished jobs lay flat beside a burst of created ones, as if none finished.
    """
    per_step = f"per {span_label(step)}"
    title = (
        f"jobs created (blue) and finished (green) {per_step}, last {span_label(window)}; "
        f"each line on its own scale (created peak {max(0, *made)}, finished peak "
        f"{max(0, *done)})"
    )
    panels = [
        Panel("created", (Line("", made, BRAND),), lambda n: f"{n:,.0f} {per_step}"),
        Panel("finished", (Line("", done, SUCCESS),), lambda n: f"{n:,.0f} {per_step}"),
    ]
    return series_svg(panels, window=window, width=width, height=height, title=title)


@dataclass(frozen=True)
class Line:
    """One line of a panel: ``values`` one per step, oldest first (None or NaN: a gap)."""

    name: str  # "p99"; "" for a panel's only line
    values: Sequence[float | None]
    colour: str


@dataclass(frozen=True)
class Panel:
    """A row of a ``series_svg``: its lines on one scale, from 0 to their peak (or, ``log``,
    from their least to their greatest value), ``say`` writing a value for its label."""

    name: str
    lines: tuple[Line, ...]
    say: Callable[[float], str]
    log: bool = False


def series_svg(
    panels: Sequence[Panel],
    *,
    window: float,
    width: int = 300,
    height: int = 96,
    title: str = "",
    middle: bool = False,
) -> str:
    """Time series over the last ``window`` seconds, one value per step, as rows one above
    the other (each on its own scale, named in its label) over a time axis ("-7 d" …
    "now"; with ``middle`` also the half-way time): the live sparkline and the dashboard's
    longer ranges alike."""
    axis = LINE_H  # the bottom line holds the time labels
    row = (height - axis) / len(panels)
    body = []
    for index, panel in enumerate(panels):
        top = index * row
        body.extend(_panel_row(panel, top, top + row, width))
    body.append(_label(0, height - 3, f"-{span_label(window)}"))
    if middle:
        body.append(_label(width / 2, height - 3, f"-{span_label(window / 2)}", anchor="middle"))
    body.append(_label(width, height - 3, "now", anchor="end"))
    return _svg(width, height, title, body)


def _panel_row(panel: Panel, top: float, bottom: float, width: int) -> list[str]:
    """A panel's label (its name and scale), base line and lines between ``top`` and
    ``bottom``."""
    plot_top, plot_bottom = top + LINE_H + 2, bottom - 3
    values = [v for line in panel.lines for v in _finite(line.values)]
    peak = max(values, default=0.0)
    low, high = 0.0, peak if peak > 0 else 1.0
    if panel.log and values:
        low = max(FLOOR_S, min(values))
        high = max(peak, low * 10)
        scale = f"{panel.say(low)} to {panel.say(high)} (log)"
    else:
        scale = f"peak {panel.say(peak)}" if peak > 0 else "none in this time"

    def y_of(v: float) -> float:
        share = math.log(max(v, low) / low) / math.log(high / low) if low else v / high
        return plot_bottom - (plot_bottom - plot_top) * share

    names = "".join(
        f' <tspan style="fill:{line.colour};font-weight:600">{escape(line.name)}</tspan>'
        for line in panel.lines
        if line.name
    )
    colour = panel.lines[0].colour if not names else TEXT
    parts = [
        f'<text x="0" y="{top + LINE_H - 3:.1f}" style="fill:{TEXT};{_FONT}">'
        f'<tspan style="fill:{colour};font-weight:600">{escape(panel.name)}</tspan>{names}'
        f" · {escape(scale)}</text>",
        f'<line x1="0" y1="{plot_bottom + 0.5:.1f}" x2="{width}" y2="{plot_bottom + 0.5:.1f}" '
        f'style="stroke:{GRID};stroke-width:1"/>',
    ]
    for line in panel.lines:
        title = f"<title>{escape(f'{panel.name} {line.name}'.strip())}: {escape(scale)}</title>"
        style = (
            f'style="fill:none;stroke:{line.colour};stroke-width:1.5;stroke-linejoin:round;'
            'stroke-linecap:round"'
        )
        runs = _line_points(line.values, width, y_of)
        if len(runs) == 1:
            parts.append(f'<polyline points="{runs[0]}" {style}>{title}</polyline>')
        elif runs:  # a line with gaps: its runs in a group, which holds the style and title
            polylines = "".join(f'<polyline points="{points}"/>' for points in runs)
            parts.append(f"<g {style}>{title}{polylines}</g>")
    return parts


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def _line_points(
    values: Sequence[float | None], width: int, y_of: Callable[[float], float]
) -> list[str]:
    """A line's points, one run of them per stretch without gaps (a lone point is drawn as
    a dot: the same point twice, with round caps)."""
    n = len(values)
    runs: list[list[str]] = [[]]
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            runs.append([])
            continue
        runs[-1].append(f"{width * (i + 0.5) / n:.1f},{y_of(float(v)):.1f}")
    return [" ".join(run if len(run) > 1 else run * 2) for run in runs if run]


def histogram_svg(
    wait: Sequence[float],
    run: Sequence[float],
    *,
    bins: int = 20,
    width: int = 360,
    height: int = 96,
) -> str:
    """Histograms of wait and run times (seconds) side by side, log-spaced bins, with p50
    and p90 marked and labelled. None and NaN values are skipped."""
    gap = 16
    panel = (width - gap) / 2
    body = []
    for index, (values, name, colour) in enumerate(((wait, "wait", BRAND), (run, "run", ACCENT))):
        clean = sorted(max(v, FLOOR_S) for v in values if v is not None and math.isfinite(v))
        body.append(_panel(clean, name, colour, index * (panel + gap), panel, height, bins))
    title = "wait and run times of recently finished jobs (log scale, p50/p90 marked)"
    return _svg(width, height, title, body)


def _panel(
    values: list[float], name: str, colour: str, x0: float, width: float, height: int, bins: int
) -> str:
    """One histogram: bars, p50/p90 lines, the name and the range at the bottom."""
    label_h = LINE_H
    top_y = 2 * LINE_H  # the name, then the percentiles, each on a line of its own above the bars
    plot_h = height - label_h - top_y
    parts = [_label(x0, LINE_H - 3, f"{name} · {len(values):,} jobs")]
    parts.append(
        f'<line x1="{x0:.1f}" y1="{top_y + plot_h + 0.5:.1f}" x2="{x0 + width:.1f}" '
        f'y2="{top_y + plot_h + 0.5:.1f}" style="stroke:{GRID};stroke-width:1"/>'
    )
    if not values:
        parts.append(_label(x0 + width / 2, top_y + plot_h / 2 + 4, "no jobs yet", anchor="middle"))
        return "".join(parts)
    low, high = values[0], max(values[-1], values[0] * 10)
    edges = _log_edges(low, high, bins)
    counts = _histogram(values, edges)
    tallest = max(counts)
    bar_w = width / bins
    for i, count in enumerate(counts):
        if not count:
            continue
        h = plot_h * count / tallest
        parts.append(
            f'<rect x="{x0 + i * bar_w + 0.5:.1f}" y="{top_y + plot_h - h:.1f}" '
            f'width="{max(bar_w - 1, 0.5):.1f}" height="{h:.1f}" style="fill:{colour};'
            f'opacity:.8"><title>{escape(format_seconds(edges[i]))} to '
            f"{escape(format_seconds(edges[i + 1]))}: {count}</title></rect>"
        )
    span = math.log(edges[-1] / edges[0])
    for q, dash in ((0.5, "2,2"), (0.9, "5,2")):
        at = quantile(values, q)
        x = x0 + width * math.log(at / edges[0]) / span
        parts.append(
            f'<line x1="{x:.1f}" y1="{top_y:.1f}" x2="{x:.1f}" y2="{top_y + plot_h:.1f}" '
            f'style="stroke:{MARK};stroke-width:1.2;stroke-dasharray:{dash}">'
            f"<title>p{round(q * 100)} {escape(format_seconds(at))}</title></line>"
        )
    p50, p90 = quantile(values, 0.5), quantile(values, 0.9)
    percentiles = f"p50 {format_seconds(p50)} · p90 {format_seconds(p90)}"
    parts.append(_label(x0, 2 * LINE_H - 3, percentiles))
    bottom = height - 3
    parts.append(_label(x0, bottom, format_seconds(edges[0])))
    parts.append(_label(x0 + width, bottom, format_seconds(edges[-1]), anchor="end"))
    return "".join(parts)


def _log_edges(low: float, high: float, bins: int) -> list[float]:
    ratio = math.log(high / low)
    return [low * math.exp(ratio * i / bins) for i in range(bins + 1)]


def _histogram(values: list[float], edges: list[float]) -> list[int]:
    bins = len(edges) - 1
    low, span = edges[0], math.log(edges[-1] / edges[0])
    counts = [0] * bins
    for v in values:
        i = int(bins * math.log(v / low) / span) if v > low else 0
        counts[min(max(i, 0), bins - 1)] += 1
    return counts


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted values, interpolated linearly (as ``numpy.quantile``)."""
    if not sorted_values:
        return math.nan
    at = (len(sorted_values) - 1) * q
    below = math.floor(at)
    above = min(below + 1, len(sorted_values) - 1)
    return sorted_values[below] + (sorted_values[above] - sorted_values[below]) * (at - below)


def _svg(width: int, height: int, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" style="max-width:100%;height:auto;'
        f'overflow:visible"><title>{escape(title)}</title>{"".join(body)}</svg>'
    )


def _label(x: float, y: float, text: str, anchor: str = "start") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{escape(anchor)}" '
        f'style="fill:{TEXT};{_FONT}">{escape(text)}</text>'
    )


def span_label(seconds: float) -> str:
    """A window or step: "10 s", "10 min"."""
    if seconds < 60:
        return f"{seconds:g} s"
    if seconds < 3600:
        return f"{seconds / 60:g} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 86400:g} d"
