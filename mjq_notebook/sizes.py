"""Sizes as people read them ("850 bytes", "9 MiB", "15.5 MiB"): one formatter for every
message and table that names a size."""

from __future__ import annotations

from typing import Any


def format_bytes(size: Any) -> str:
    """A size in bytes for reading, binary units with three significant digits."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:,.0f} {unit}" if unit == "bytes" else f"{value:.3g} {unit}"
        value /= 1024
    return ""  # unreachable
