"""Notebook widgets over a ``JobQueue``: the live tail, the publish form, the dashboard and
the history explorer, each a one-liner on the queue (``q.tail()``, ``q.publisher()``,
``q.dashboard()``, ``q.explore()``) and usable on its own; and the overview of every queue of
a database (``mjq_notebook.overview(db)``).

The classes are imported on first use, so ``import mjq_notebook.notebook.widgets`` stays cheap
and one widget's dependency (anywidget for the tail, matplotlib for the explorer) is needed
only by that widget.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .dashboard import Dashboard
    from .explore import Explorer
    from .overview import Overview
    from .publisher import Publisher
    from .tail import JobTable, Tail

__all__ = ["Dashboard", "Explorer", "JobTable", "Overview", "Publisher", "Tail"]

_MODULES = {
    "Dashboard": "dashboard",
    "Explorer": "explore",
    "JobTable": "tail",
    "Overview": "overview",
    "Publisher": "publisher",
    "Tail": "tail",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
