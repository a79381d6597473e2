"""Small inline-SVG charts for the dashboard: a throughput sparkline and a latency histogram.

Pure functions from numbers to SVG text: no widgets, no I/O, so they are cheap to test and to
call from the watcher's thread. Colours are CSS variables with fallbacks (JupyterLab's
``--jp-*``), set through ``style`` so they follow light and dark themes; every bit of text is
escaped even though it is made from numbers.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from ...analysis.timing import format_seconds

BRAND = "var(--jp-brand-color1,#1976d2)"
SUCCESS = "var(--jp-success-color1,#388e3c)"
ACCENT = "var(--jp-warn-color1,#f57c00)"
MARK = "var(--jp-error-color1,#d32f2f)"
TEXT = "var(--jp-ui-font-color2,#616161)"
GRID = "var(--jp-border-color2,#e0e0e0)"
FLOOR_S = 1e-3  # BSON dates have millisecond precision: shorter times count as 1 ms
_FONT = "font-family:var(--jp-ui-font-family,sans-serif);font-size:9px"


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
    height: int = 56,
) -> str:
    """Jobs created and finished per ``step`` seconds over the last ``window`` (``made`` and
    ``done``, one count a step, oldest first), as two lines over a time axis ("-10 min" …
    "now") and with the peak's scale at the top."""
    peak = max(0, *made, *done)
    top = max(1, peak)
    scale = f"peak {peak} per {_span(step)}" if peak else "no jobs in this time"
    pad, axis = 3, 12  # the bottom `axis` pixels hold the time labels
    plot = height - axis
    baseline = f'<line x1="0" y1="{plot - 0.5}" x2="{width}" y2="{plot - 0.5}" '
    body = [
        baseline + f'style="stroke:{GRID};stroke-width:1"/>',
        _label(0, height - 2, f"-{_span(window)}"),
        _label(width, height - 2, "now", anchor="end"),
        _label(width / 2, height - 2, scale, anchor="middle"),
    ]
    for counts, colour, name in ((made, BRAND, "created"), (done, SUCCESS, "finished")):
        points = _line_points(counts, width, plot, pad, top)
        body.append(
            f'<polyline points="{points}" style="fill:none;stroke:{colour};stroke-width:1.5;'
            f'stroke-linejoin:round"><title>{_esc(name)} per {_esc(_span(step))}</title>'
            "</polyline>"
        )
    title = (
        f"jobs created (blue) and finished (green) per {_span(step)}, "
        f"last {_span(window)}; peak {peak}"
    )
    return _svg(width, height, title, body)


def _line_points(counts: list[int], width: int, height: int, pad: int, top: int) -> str:
    n = len(counts)
    xs = [width * (i + 0.5) / n for i in range(n)]
    ys = [height - pad - (height - 2 * pad) * c / top for c in counts]
    return " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))


def histogram_svg(
    wait: Sequence[float],
    run: Sequence[float],
    *,
    bins: int = 20,
    width: int = 360,
    height: int = 92,
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
    label_h = 11
    top_y = 23  # the name, then the percentiles, each on a line of its own above the bars
    plot_h = height - label_h - top_y
    parts = [_label(x0, 9, f"{name} · {len(values)} jobs")]
    parts.append(
        f'<line x1="{x0:.1f}" y1="{top_y + plot_h + 0.5:.1f}" x2="{x0 + width:.1f}" '
        f'y2="{top_y + plot_h + 0.5:.1f}" style="stroke:{GRID};stroke-width:1"/>'
    )
    if not values:
        parts.append(_label(x0 + width / 2, top_y + plot_h / 2 + 3, "no jobs yet", anchor="middle"))
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
            f'opacity:.8"><title>{_esc(format_seconds(edges[i]))} to '
            f"{_esc(format_seconds(edges[i + 1]))}: {count}</title></rect>"
        )
    span = math.log(edges[-1] / edges[0])
    for q, dash in ((0.5, "2,2"), (0.9, "5,2")):
        at = quantile(values, q)
        x = x0 + width * math.log(at / edges[0]) / span
        parts.append(
            f'<line x1="{x:.1f}" y1="{top_y:.1f}" x2="{x:.1f}" y2="{top_y + plot_h:.1f}" '
            f'style="stroke:{MARK};stroke-width:1.2;stroke-dasharray:{dash}">'
            f"<title>p{round(q * 100)} {_esc(format_seconds(at))}</title></line>"
        )
    p50, p90 = quantile(values, 0.5), quantile(values, 0.9)
    parts.append(_label(x0, 20, f"p50 {format_seconds(p50)} · p90 {format_seconds(p90)}"))
    bottom = top_y + plot_h + label_h
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
        f'overflow:visible"><title>{_esc(title)}</title>{"".join(body)}</svg>'
    )


def _label(x: float, y: float, text: str, anchor: str = "start") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{_esc(anchor)}" '
        f'style="fill:{TEXT};{_FONT}">{_esc(text)}</text>'
    )


def _esc(text: str) -> str:
    return html.escape(str(text))


def _span(seconds: float) -> str:
    """A window or step: "10 s", "10 min"."""
    if seconds < 60:
        return f"{seconds:g} s"
    if seconds < 3600:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"
