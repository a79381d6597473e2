"""A MongoClient for a URI: checked with a ping, errors that say where (never a password)."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from ..errors import ServerUnavailable

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.database import Database

ENV_VARS = ("MJQ_MONGODB_URI", "MONGODB_URI")


def mask_uri(uri: str) -> str:
    """The URI with any password replaced by ``***``, safe for messages and reprs."""
    return re.sub(r"(?<=://)([^:/@]+):([^@/]*)@", r"\1:***@", uri)


def env_uri() -> str | None:
    """The URI from MJQ_MONGODB_URI or MONGODB_URI, if either is set."""
    return next((os.environ[v] for v in ENV_VARS if os.environ.get(v)), None)


def client_for(uri: str, *, timeout: float = 5.0, **kwargs: Any) -> MongoClient:
    """A ``MongoClient`` for ``uri`` that has answered a ping, or ``ServerUnavailable``."""
    from pymongo import MongoClient
    from pymongo.errors import ConfigurationError, ConnectionFailure, InvalidURI

    ms = int(timeout * 1000)
    options = dict(tz_aware=True, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms)
    try:
        client = MongoClient(uri, **{**options, **kwargs})
    except (InvalidURI, ConfigurationError, ValueError) as exc:
        raise ServerUnavailable(f"invalid MongoDB URI {mask_uri(uri)}: {exc}") from None
    try:
        client.admin.command("ping")
    except ConnectionFailure as exc:
        client.close()
        reason = failure_reason(exc)
        raise ServerUnavailable(
            f"no MongoDB server answered at {mask_uri(uri)} within {timeout:g}s ({reason})"
        ) from None
    return client


def wire_version(db: Database) -> int:
    """The server's ``maxWireVersion``: which MongoDB features it has (21: 7.0, 25: 8.0)."""
    return int(db.command("hello").get("maxWireVersion", 0))


def failure_reason(exc: BaseException) -> str:
    """``Type: reason`` from pymongo's message: its first clause, without the addresses,
    time-outs, topology or credentials it may carry."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    for cut in (" (configured timeouts", ", Timeout:", ", Topology Description:"):
        text = text.split(cut)[0]
    text = re.sub(r"(^|, )\S+:\d+: ", r"\1", mask_uri(text)).strip()  # "host:port: ..."
    if len(text) > 120:
        text = text[:117] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
