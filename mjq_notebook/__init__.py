"""mjq-notebook: a MongoDB job queue you can see.

Layers, top down (imports point down only; ``lint-imports`` checks it): ``cli``; ``notebook/``
(displays, the watcher, widgets); ``analysis/`` (history in pandas, timing, plots, stats);
the core at the top level (``queue`` and the helpers it owns, ``worker``, ``job``...);
``server/`` (``connect()`` and the embedded server). The core imports neither pandas nor
ipywidgets; the upper layers import them when used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__ as __version__
from .core.catalog import queues
from .core.job import Job, Status
from .core.queue import JobQueue
from .core.worker import Worker
from .errors import (
    DataFolderError,
    DataLossWarning,
    Empty,
    InvalidQueueError,
    JobIdError,
    JobQueueError,
    LeaseLostError,
    PublishError,
    QuerySyntaxError,
    QueueNameError,
    ServerUnavailable,
    SmallRingWarning,
    WorkerCrashed,
)
from .server import connect, embedded_server

if TYPE_CHECKING:
    from pymongo.database import Database

    from .core.audit import Actor
    from .notebook.widgets.overview import Overview


def overview(db: Database, *, queue: str | None = None, actor: Actor | None = None) -> Overview:
    """Every queue of ``db`` live, one row each, as a notebook widget; a click on a queue
    opens its dashboard below (``queue``: open that one at once). ``close()`` stops it.
    ``actor`` is who acts in its dashboards (None: this notebook's user; ``Actor.page()`` in
    a page's kernel): each action is recorded with it, and a read-only one gets none."""
    from .notebook.widgets.overview import Overview  # ipywidgets only when called

    return Overview(db, queue=queue, actor=actor)


__all__ = [
    "DataFolderError",
    "DataLossWarning",
    "Empty",
    "InvalidQueueError",
    "Job",
    "JobIdError",
    "JobQueue",
    "JobQueueError",
    "LeaseLostError",
    "PublishError",
    "QuerySyntaxError",
    "QueueNameError",
    "ServerUnavailable",
    "SmallRingWarning",
    "Status",
    "Worker",
    "WorkerCrashed",
    "connect",
    "embedded_server",
    "overview",
    "queues",
]
