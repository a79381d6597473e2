"""mjq-notebook: a MongoDB job queue you can see.

Layers, top down (imports point down only; ``lint-imports`` checks it): ``cli``; ``notebook/``
(displays, the watcher, widgets); ``analysis/`` (history in pandas, timing, plots, stats);
the core at the top level (``queue`` and the helpers it owns, ``worker``, ``job``...);
``server/`` (``connect()`` and the embedded server). The core imports neither pandas nor
ipywidgets; the upper layers import them when used.
"""

from ._version import __version__ as __version__
from .catalog import queues
from .errors import (
    DataFolderError,
    DataLossWarning,
    Empty,
    InvalidQueueError,
    JobQueueError,
    LeaseLostError,
    PublishError,
    ServerUnavailable,
)
from .job import Job, Status
from .queue import JobQueue
from .server import connect, embedded_server
from .worker import Worker

__all__ = [
    "DataFolderError",
    "DataLossWarning",
    "Empty",
    "InvalidQueueError",
    "Job",
    "JobQueue",
    "JobQueueError",
    "LeaseLostError",
    "PublishError",
    "ServerUnavailable",
    "Status",
    "Worker",
    "connect",
    "embedded_server",
    "queues",
]
