"""A mergeable latency histogram: log-spaced buckets of 1% relative error (DDSketch-style).

``Sketch`` counts durations in seconds into buckets whose bounds grow by a constant factor,
so any quantile it answers is within ``RELATIVE_ERROR`` (1%) of the exact one (the sample at
rank ``floor(q * (n - 1))``), however the values spread. Two sketches merge by adding their
buckets' counts: the sketch of a minute, an hour or 90 days is the sum of its minutes', exact
as to counts and still within 1% as to quantiles. The key mapping is the ``ddsketch``
library's ``LogarithmicMapping`` (a bucket's key for a value and a key's representative
value), not our own.

Values at or below ``ZERO_S`` (1 ms) go to a zero bucket and are answered as 0 s: latency
under a millisecond is below what job timestamps (BSON's millisecond dates) resolve. So do
negative values, which clock skew between machines (and pymjq's naive local times) make.

``to_doc()`` is the BSON-storable form, ``{"b": {"<key>": count}, "z": zeros, "n": count,
"s": sum}`` (keys as strings: BSON field names), and ``Sketch.from_doc`` reads it back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from ddsketch.mapping import LogarithmicMapping

__all__ = ["RELATIVE_ERROR", "ZERO_S", "Sketch"]

RELATIVE_ERROR = 0.01  # every quantile within 1% of the exact one
ZERO_S = 0.001  # values up to a millisecond (and negatives) count as 0 s
_MAPPING = LogarithmicMapping(relative_accuracy=RELATIVE_ERROR)


class Sketch:
    """Counts of durations (seconds) in log-spaced buckets: ``add``, ``merge``,
    ``quantile``, ``count_at_most``; ``count`` and ``sum`` are exact."""

    __slots__ = ("buckets", "count", "sum", "zeros")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}  # key (ddsketch mapping) -> count
        self.zeros = 0  # values <= ZERO_S
        self.count = 0
        self.sum = 0.0

    @classmethod
    def of(cls, values: Iterable[float]) -> Sketch:
        """A sketch of ``values``."""
        sketch = cls()
        for value in values:
            sketch.add(value)
        return sketch

    def add(self, seconds: float, n: int = 1) -> None:
        """Count ``seconds`` ``n`` times (NaN is ignored: no duration to count)."""
        value = float(seconds)
        if math.isnan(value) or n <= 0:
            return
        if value <= ZERO_S:
            self.zeros += n
        else:
            key = _MAPPING.key(value)
            self.buckets[key] = self.buckets.get(key, 0) + n
        self.count += n
        self.sum += max(value, 0.0) * n

    def merge(self, other: Sketch) -> Sketch:
        """Add ``other``'s counts into this sketch; returns it."""
        for key, n in other.buckets.items():
            self.buckets[key] = self.buckets.get(key, 0) + n
        self.zeros += other.zeros
        self.count += other.count
        self.sum += other.sum
        return self

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0 <= q <= 1) in seconds, within 1% of the exact sample at rank
        ``floor(q * (count - 1))``; None when empty."""
        if not 0 <= q <= 1:
            raise ValueError(f"q must be from 0 to 1, not {q!r}")
        if not self.count:
            return None
        rank = math.floor(q * (self.count - 1))
        seen = self.zeros
        if rank < seen:
            return 0.0
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if rank < seen:
                return float(_MAPPING.value(key))
        return float(_MAPPING.value(max(self.buckets)))  # not reached: counts add up

    def count_at_most(self, seconds: float) -> int:
        """How many values were at most ``seconds`` as the buckets tell (values within 1% of
        ``seconds`` may fall either side): Prometheus' cumulative ``le`` buckets."""
        if seconds < 0:
            return 0
        if seconds <= ZERO_S:
            return self.zeros
        top = _MAPPING.key(seconds)
        return self.zeros + sum(n for key, n in self.buckets.items() if key <= top)

    @property
    def mean(self) -> float | None:
        """The exact mean (from ``sum`` and ``count``); None when empty."""
        return self.sum / self.count if self.count else None

    def to_doc(self) -> dict[str, Any]:
        """The BSON-storable form: ``{"b": {"<key>": count}, "z": zeros, "n": count, "s": sum}``."""
        buckets = {str(key): n for key, n in sorted(self.buckets.items())}
        return {"b": buckets, "z": self.zeros, "n": self.count, "s": self.sum}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None) -> Sketch:
        """The sketch ``to_doc`` stored (an empty one for None or an empty document)."""
        sketch = cls()
        if not doc:
            return sketch
        sketch.buckets = {int(key): int(n) for key, n in (doc.get("b") or {}).items()}
        sketch.zeros = int(doc.get("z") or 0)
        sketch.count = int(doc.get("n") or 0)
        sketch.sum = float(doc.get("s") or 0.0)
        return sketch

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sketch):
            return NotImplemented
        same = (self.buckets, self.zeros, self.count) == (other.buckets, other.zeros, other.count)
        return same and math.isclose(self.sum, other.sum, rel_tol=1e-9, abs_tol=1e-9)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        p50, p99 = self.quantile(0.5), self.quantile(0.99)
        return f"<Sketch n={self.count} p50={p50} p99={p99}>"
