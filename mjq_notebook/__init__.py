"""mjq-notebook: a MongoDB job queue you can see.

The core (queue, worker, connection) imports neither pandas nor ipywidgets; the history and
notebook layers import them when used.
"""

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

__version__ = "0.1.0"

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
]
