"""The few exceptions mjq-notebook raises, all under one base class."""

from __future__ import annotations

import queue


class JobQueueError(Exception):
    """Base class of every mjq-notebook error."""


class Empty(JobQueueError, queue.Empty):
    """No job became available within the time-out given to ``next()`` or ``claim()``."""


class InvalidQueueError(JobQueueError, TypeError):
    """The collection can't serve as a queue (it exists but is not capped)."""


class PublishError(JobQueueError, ValueError):
    """Data can't be stored (not BSON-encodable, or over 16 MiB); nothing was written."""


class LeaseLostError(JobQueueError):
    """The job is no longer held by this worker: its lease expired and it was claimed again."""


class ServerUnavailable(JobQueueError, ConnectionError):
    """No MongoDB server could be reached (the message names the URI tried, password masked)."""


class DataLossWarning(UserWarning):
    """Jobs that never finished were evicted from the capped collection."""
