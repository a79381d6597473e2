"""Our own bounded retries of a write that met a transient fault, in one place.

A write may fail before the server applies it (a connection closed, a node that is not or no
longer primary) or after (a ``writeConcernError``: applied, the reply an error; a reply lost
with its connection). Every write of the queue is made safe to send again (client-made ids,
conditional updates, tokens), so ``retried`` sends it again a few times, telling it that an
earlier attempt may have been applied. The server's own retryable writes are not needed for
this (and the embedded server turns them off, see ``server/embedded.py``); where a URI turns
them on, pymongo retries once first and we retry on top, harmlessly.

A server that stays away is not waited for here: the tries after the first run under a
deadline of ``BUDGET_S`` in all (pymongo's client-side timeout bounds their server selection
too), past which the fault is an outage, which the callers ride out and report
(``outage.py``). Without it a retry could wait out a restart of several seconds unnoticed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import pymongo
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
# the tries after the first, in all: more than the 2 s in which the embedded server's client
# finds a server again (its heartbeat), so a "not primary" is ridden out, and short enough
# that a server that went away is reported as an outage within a few seconds
BUDGET_S = 3.0
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
    deadline = 0.0
    for attempt in range(ATTEMPTS):
        try:
            if attempt == 0:
                return write(False)
            with pymongo.timeout(max(deadline - time.monotonic(), pause)):
                return write(True)
        except Exception as exc:
            if attempt == ATTEMPTS - 1 or not transient(exc):
                raise
            deadline = deadline or time.monotonic() + BUDGET_S
            if time.monotonic() + pause >= deadline:
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
            e.get("code") not in HOPELESS_WRITE_CONCERN_CODES  # type: ignore[attr-defined]  # typed WriteConcernError, are dicts
            for e in concern
        )
    if isinstance(exc, OperationFailure):
        return exc.code in NOT_PRIMARY_CODES
    return False
