"""The job query language of every search box, ``q.find`` and ``mjq find``: parsed once,
compiled to a MongoDB filter over job documents (the ring and history alike).

SCAFFOLD: only ``status:``, ``group:`` and ``data.<path>:value`` (exact) so far; the whole
language replaces this module (issue 25, item 1). The two names below are its contract.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..errors import QuerySyntaxError


def compile_query(text: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The MongoDB filter matching the jobs ``text`` asks for ({} for an empty text);
    QuerySyntaxError, pointing at the position, when it can't be read. ``now`` anchors
    relative times (``created:>1h``); by default the current time."""
    terms: list[dict[str, Any]] = []
    position = 1
    for word in text.split(" "):
        if word:
            name, sep, value = word.partition(":")
            if not sep or not value:
                raise QuerySyntaxError(f"expected field:value at {position}", position)
            if name == "status":
                terms.append({"status": {"$in": value.split(",")}})
            elif name == "group":
                terms.append({"error.group": value})
            elif name.startswith("data."):
                terms.append({name: value})
            else:
                raise QuerySyntaxError(f"unknown field `{name}` at {position}", position)
        position += len(word) + 1
    return {"$and": terms} if terms else {}
