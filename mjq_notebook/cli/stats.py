"""``mjq stats``: each group's jobs by status, then their wait and run times, as two plain
tables whose columns ``analysis.stats`` defines (``COLUMNS`` says what each means)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..text import printable, text_table

if TYPE_CHECKING:
    import pandas as pd

    from ..core.queue import JobQueue


def print_stats(queue: JobQueue, by: str | None = None, **options: Any) -> None:
    """The jobs of ``queue`` (``options``: ``since``, ``exact``...) by status and their times,
    grouped ``by`` a field; computed in MongoDB, so nothing big is loaded."""
    from ..analysis.stats import stats_tables

    try:
        counts, times = stats_tables(queue, by=by, **options)
    except ValueError as exc:  # --by or --since not understood
        raise SystemExit(
            f"mjq stats: {exc} (--since takes a time such as 2026-05-01T12:00 or a duration "
            "such as 1h; --by a field such as data.kind)"
        ) from None
    grouped = f" by {by}" if by else ""
    print(f"jobs{grouped}:")
    print("\n".join(_table(counts, by or "")))
    print(f"\ntimes in seconds{grouped}:")
    print("\n".join(_table(times, by or "")))


def _table(frame: pd.DataFrame, heading: str) -> list[str]:
    """``frame`` as plain lines: the index's levels first, then its columns."""
    names = [printable(name) if name else heading for name in frame.index.names]
    rows: list[list[str]] = [[*names, *map(str, frame.columns)]]
    for index, values in zip(frame.index, frame.itertuples(index=False), strict=True):
        keys = index if isinstance(index, tuple) else (index,)
        rows.append([*(_cell(key) for key in keys), *(_cell(value) for value in values)])
    return text_table(rows)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        return f"{value:.3f}"
    if value is None:
        return "—"
    return printable(value)
