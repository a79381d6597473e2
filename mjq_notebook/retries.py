"""Our own bounded retries of a write that met a transient fault, in one place.

A write may fail before the server applies it (a connection closed, a node that is not or no
longer primary) or after (a ``writeConcernError``: applied, the reply an error; a reply lost
with its connection). Every write of the queue is made safe to send again (client-made ids,
conditional updates, tokens), so ``retried`` sends it again a few times, telling it that an
earlier attempt may have been applied. The server's own retryable writes are not needed for
this (and the embedded server turns them off, see ``server/embedded.py``); where a URI turns
them on, pymongo retries once first and we retry on top, harmlessly.

A server that stays away (no server selected in time) is not retried here: that is an outage,
which the callers ride out or report (``outage.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from pymongo.errors import (
    BulkWriteError,
    ClientBulkWriteException,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
    WriteConcernError,
)

log = logging.getLogger("mjq_notebook")

ATTEMPTS = 4  # tries of one write in all
FIRST_PAUSE_S = 0.05  # before the second try; doubles after each
# "not primary" and "shutting down": the write was refused and can be sent again
NOT_PRIMARY_CODES = frozenset({91, 189, 10107, 11600, 11602, 13435, 13436})
# a write concern the server can never satisfy: sending again does not help
HOPELESS_WRITE_CONCERN_CODES = frozenset({79, 100})

_T = TypeVar("_T")


def retried(write: Callable[[bool], _T], what: str = "a write") -> _T:
    """``write(again)``, sent again on a transient fault up to ``ATTEMPTS`` times in all;
    ``again`` is True from the second try on: an earlier one may have been applied, and the
    write must then find out rather than apply twice. The last error is raised."""
    pause = FIRST_PAUSE_S
    for attempt in range(ATTEMPTS):
        try:
            return write(attempt > 0)
        except Exception as exc:
            if attempt == ATTEMPTS - 1 or not transient(exc):
                raise
            log.info("%s met %s: %s; trying again", what, type(exc).__name__, exc)
        time.sleep(pause)
        pause *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def transient(exc: BaseException) -> bool:
    """True for a fault that sending the write again may get past (see the module's
    docstring); False for an outage and for errors of the write itself."""
    if isinstance(exc, ServerSelectionTimeoutError):
        return False  # no server now: an outage, for the caller
    if isinstance(exc, ConnectionFailure):  # closed connection, AutoReconnect, NotPrimaryError
        return True
    if isinstance(exc, PyMongoError) and exc.has_error_label("RetryableWriteError"):
        return True
    if isinstance(exc, WriteConcernError):
        return exc.code not in HOPELESS_WRITE_CONCERN_CODES
    if isinstance(exc, BulkWriteError):  # insert_many: only write-concern errors
        details = exc.details or {}
        concern = details.get("writeConcernErrors") or []
        hopeful = all(e.get("code") not in HOPELESS_WRITE_CONCERN_CODES for e in concern)
        return bool(concern) and hopeful and not details.get("writeErrors")
    if isinstance(exc, ClientBulkWriteException):
        if exc.write_errors:
            return False
        if exc.error is not None:
            return transient(exc.error)
        concern = exc.write_concern_errors or []
        return bool(concern) and all(
            e.get("code") not in HOPELESS_WRITE_CONCERN_CODES for e in concern
        )
    if isinstance(exc, OperationFailure):
        return exc.code in NOT_PRIMARY_CODES
    return False
