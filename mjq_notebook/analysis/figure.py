"""The Figure the history plots return: shown once by Jupyter, with or without pyplot.

Its own module because it imports matplotlib, which is slow to import: ``plots`` imports it
when a plot is drawn, not when history is loaded.
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure


class HistoryFigure(Figure):
    """A Figure made with the object API (never left open in pyplot) that Jupyter shows
    as one PNG, also where the inline backend has not registered its figure formatter."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()
