"""Turn "no server" into ``ServerUnavailable``, and keep displays from waiting long for one.

pymongo reports an unreachable server as one of several ``ConnectionFailure`` errors, with
addresses, topology and time-outs in the text. Public methods of the queue raise one short
``ServerUnavailable`` instead (``unavailable_as_error``): which server (host:port from the
client's topology, never a password) and what to do. Displays bound their wait for a server
that is away (``display_deadline``), so a cell shows "unavailable" in about two seconds.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

from ..errors import ServerUnavailable
from ..server.client import failure_reason

DISPLAY_TIMEOUT_S = 2.0  # a display (repr, _repr_html_) says "unavailable" within this
ADVICE = "start one with `mjq serve`, or set MJQ_MONGODB_URI to a running server"

_F = TypeVar("_F", bound=Callable[..., Any])


def unavailable_as_error(func: _F) -> _F:
    """Decorate a public method (or a function whose first argument is a queue, database or
    client) so that pymongo's ``ConnectionFailure`` family leaving it becomes
    ``ServerUnavailable``: a short message naming the server (no password) and what to do.

    Costs one try/except per call; a ``ServerUnavailable`` raised inside passes unchanged.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            from pymongo.errors import ConnectionFailure

            if not isinstance(exc, ConnectionFailure):
                raise
            # from None: the message says what happened; the cause stays on __context__
            raise server_unavailable(exc, args[0] if args else None) from None

    return cast(_F, wrapper)


def display_timeout(func: _F) -> _F:
    """Run the method ``func`` within ``display_deadline(self)``: for reprs."""

    @functools.wraps(func)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with display_deadline(self):
            return func(self, *args, **kwargs)

    return cast(_F, wrapper)


@contextlib.contextmanager
def display_deadline(owner: Any) -> Iterator[None]:
    """Bound the block's wait for a server that is away to about ``DISPLAY_TIMEOUT_S``.

    A ping probes the server (``owner``: a JobQueue, Database, Collection or MongoClient) for
    up to half that time. If it answers, the block runs unbounded, so a slow read of a big
    queue on a live server is not shown as "unavailable". If not, the block runs under a
    ``pymongo.timeout`` that is already nearly spent: the wait has been had, its reads only
    need to fail (pymongo's server selection then still takes about half a second).
    """
    import pymongo
    from pymongo.errors import ConnectionFailure

    deadline = time.monotonic() + DISPLAY_TIMEOUT_S / 2
    answered = True
    while True:
        try:
            with pymongo.timeout(max(deadline - time.monotonic(), 0.05)):
                _client_of(owner).admin.command("ping")
        except ConnectionFailure:
            # a socket that died with the old server fails at once: ask again until due
            if time.monotonic() < deadline - 0.05:
                continue
            answered = False
        except Exception:
            pass  # not a client, or the ping was refused: let the block find out itself
        break
    if answered:
        yield
        return
    with pymongo.timeout(0.05):
        yield


class Backoff:
    """The pause between attempts while a server is away: doubles from ``first`` up to
    ``cap``, and starts again at ``first`` after ``reset()`` (once an attempt succeeds)."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self.first, self.cap = first, cap
        self.pause = first

    def wait(self, stop: threading.Event | None = None) -> bool:
        """Sleep the current pause (cut short by ``stop``), then double it; True if stopped."""
        pause, self.pause = self.pause, min(self.pause * 2, self.cap)
        if stop is None:
            time.sleep(pause)
            return False
        return stop.wait(pause)

    def reset(self) -> None:
        self.pause = self.first


class OutageLog:
    """Says once that the server is unreachable and once that it is back, however many
    threads and retries meet the outage in between (a worker's claims, saves and heartbeats
    all report to one)."""

    def __init__(self, logger: logging.Logger, where: str) -> None:
        self._log = logger
        self._where = where
        self._since: float | None = None
        self._lock = threading.Lock()

    def away(self, exc: BaseException, doing: str) -> None:
        """Report an outage met while ``doing`` something: logged for the first one only."""
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        self._log.warning(
            "MongoDB unreachable while %s for %s (%s); retrying until it is back",
            doing,
            self._where,
            failure_reason(exc),
        )

    def back(self) -> None:
        """Report that a request succeeded: logs the end of an outage, once."""
        if self._since is None:  # the common case, without the lock
            return
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            self._log.warning(
                "MongoDB reachable again for %s after %.1fs", self._where, time.monotonic() - since
            )


def server_unavailable(exc: BaseException, owner: Any = None) -> ServerUnavailable:
    """A ``ServerUnavailable`` for the pymongo connection error ``exc``; ``owner`` (a
    JobQueue, Database, Collection or MongoClient) tells which server was tried."""
    from pymongo.errors import ServerSelectionTimeoutError

    where = _server_address(owner)
    reason = failure_reason(exc)
    if isinstance(exc, ServerSelectionTimeoutError):
        what = f"no MongoDB server answered at {where}"
    else:
        what = f"the MongoDB server at {where} stopped answering"
    return ServerUnavailable(f"{what} ({reason}); {ADVICE}")


def _server_address(owner: Any) -> str:
    """``host:port[,host:port]`` from the client's topology: never a password (nor a
    ``scheme://``, which widgets keep out of what they show)."""
    try:
        hosts = [
            host if port is None else f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            for host, port in _client_of(owner).topology_description.server_descriptions()
        ]
    except Exception:
        hosts = []
    return ",".join(sorted(hosts)) if hosts else "the configured MongoDB URI"


def _client_of(owner: Any) -> Any:
    """The MongoClient behind a JobQueue, Database or Collection (or the client itself)."""
    from pymongo.collection import Collection
    from pymongo.database import Database

    # isinstance, not getattr: a Database makes any unknown attribute a Collection
    if isinstance(owner, Collection):
        return owner.database.client
    if isinstance(owner, Database):
        return owner.client
    db = vars(owner).get("db") if hasattr(owner, "__dict__") else None  # a JobQueue
    return db.client if isinstance(db, Database) else owner
