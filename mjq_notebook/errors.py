"""The few exceptions mjq-notebook raises, all under one base class."""

from __future__ import annotations

import os
import queue
import sys
import warnings
from types import FrameType

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class JobQueueError(Exception):
    """Base class of every mjq-notebook error."""


class Empty(JobQueueError, queue.Empty):
    """No job became available within the time-out given to ``next()`` or ``claim()``."""


class InvalidQueueError(JobQueueError, TypeError):
    """The collection can't serve as a queue (it exists but is not capped)."""


class QueueNameError(InvalidQueueError, ValueError):
    """The name can't be a queue's: a companion's (``.history``...), reserved, or too long."""


class PublishError(JobQueueError, ValueError):
    """Data can't be stored (not BSON-encodable, or over 16 MiB), or the jobs would evict
    unfinished ones from the ring; nothing was written."""


class LeaseLostError(JobQueueError):
    """The job is no longer held by this worker: its lease expired and it was claimed again."""


class ServerUnavailable(JobQueueError, ConnectionError):
    """No MongoDB server could be reached (the message names the URI tried, password masked)."""


class WorkerCrashed(JobQueueError, RuntimeError):
    """A thread of a ``Worker`` died (its handler raised SystemExit, say), so it stopped."""


class DataFolderError(JobQueueError, PermissionError):
    """The embedded server's data folder can't be used: it is a file or a symlink, another
    user owns it or a folder on its path, or could change it, or its login can't be read."""


class DashboardError(JobQueueError, ValueError):
    """``mjq dashboard`` can't serve as asked: a weak token, a port taken or out of range,
    a host with no names to answer."""


class ReadOnlyError(JobQueueError, PermissionError):
    """The action was refused: it came from a read-only viewer (``mjq dashboard``'s viewer
    token), which may see everything and change nothing."""


class QuerySyntaxError(JobQueueError, ValueError):
    """A job query (``q.find``, every search box, ``mjq find``) that can't be read: the
    message points at the position (1-based) of the mistake."""

    def __init__(self, message: str, position: int = 1) -> None:
        super().__init__(message)
        self.position = position


class JobIdError(JobQueueError, ValueError):
    """A value given as a job (``q.get``, ``q.retry``, ``mjq`` commands...) that names none:
    a string that is not 24 hex digits, None, or a document without ``_id``."""


class DataLossWarning(UserWarning):
    """Jobs that never finished were evicted from the capped collection."""


class SmallRingWarning(UserWarning):
    """An existing queue's ring (pymjq's, say) holds far fewer jobs than asked for."""


def warn_at_caller(message: str, category: type[Warning]) -> None:
    """Warn at the first frame outside this package: the user's line or notebook cell,
    however deep inside mjq_notebook the warning arose."""
    frame: FrameType | None
    frame, level = sys._getframe(1), 2  # level 2: warn_at_caller's caller
    while frame is not None and _in_package(frame.f_code.co_filename):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def _in_package(filename: str) -> bool:
    return os.path.abspath(filename).startswith(_PACKAGE_DIR)
