"""Failed jobs stored without a fingerprint (pymjq's plain-string errors, another program's,
ones failed before fingerprints) as error groups: grouped by (type, message) in the server,
each distinct pair fingerprinted here (``core/fingerprint.py``). ``q.errors()`` merges the
pairs into its groups; a ``group:`` query (``core/query.py``) matches their jobs through
``GroupMembers``, which finds the pairs whose group starts with the prefix typed.

A pair's jobs are named by filters built from the stored text as values only (``$eq`` and
``$in`` of values, never an operator), as they were grouped: a missing type reads as
"Error", a missing message as "".
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pymongo.errors import ExecutionTimeout

from ..errors import JobQueueError
from .fingerprint import fingerprint
from .job import Status

if TYPE_CHECKING:
    from .queue_base import QueueBase

MAX_TRACEBACK_TAIL = 4000  # characters of a traceback's end read for its innermost frame
MAX_TIME_MS = 10_000  # what the server may spend on the read of the pairs (as a find's read)
MAX_MEMBER_CHARS = 4_000_000  # characters of messages one group: term may name (BSON: 16 MB)
KEPT_GROUPS = 50_000  # pairs whose group is remembered between reads (~0.1 ms each to compute)

# a failure stored without a fingerprint
UNMARKED = {"status": Status.FAILED.value, "error.group": {"$exists": False}}
IS_TEXT = {"$eq": [{"$type": "$error"}, "string"]}
# the (type, message) a failure without a fingerprint is grouped by; "s": a plain string
KEY = {
    "t": {"$cond": [IS_TEXT, "Error", {"$ifNull": ["$error.type", "Error"]}]},
    "m": {"$cond": [IS_TEXT, "$error", {"$ifNull": ["$error.message", ""]}]},
    "s": IS_TEXT,
}
# the end of the traceback of a failure without a fingerprint (for its innermost frame); a
# pair's traceback is the greatest of its jobs' ($max: the same one on every read)
TAIL = {
    "$cond": [
        {"$and": [{"$not": ["$error.group"]}, {"$eq": [{"$type": "$error.traceback"}, "string"]}]},
        {
            "$substrCP": [
                "$error.traceback",
                {
                    "$max": [
                        0,
                        {"$subtract": [{"$strLenCP": "$error.traceback"}, MAX_TRACEBACK_TAIL]},
                    ]
                },
                MAX_TRACEBACK_TAIL,
            ]
        },
        "",
    ]
}


def key_fingerprint(key: Mapping[str, Any], tail: str | None) -> dict[str, str]:
    """The fingerprint of a pair (``KEY`` as the server made it), with its traceback's end."""
    return fingerprint(**_texts(key), traceback=tail or "")


def members(keys: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Filters matching exactly the failures without a fingerprint whose pair is one of
    ``keys``: one per type (and one for plain strings), its messages an ``$in`` of strings."""
    strings: list[str] = []
    by_type: dict[str, list[str]] = {}
    odd: list[dict[str, Any]] = []  # a type or message that is no text: one filter each
    for key in keys:
        kind, message = key.get("t"), key.get("m")
        if key.get("s"):
            strings.append(str(message))
        elif isinstance(kind, str) and isinstance(message, str):
            by_type.setdefault(kind, []).append(message)
        else:
            odd.append({**UNMARKED, "error.type": _value(kind, "Error"),
                        "error.message": _value(message, "")})  # fmt: skip
    found = [{**UNMARKED, "error": {"$in": strings}}] if strings else []
    for kind, messages in by_type.items():
        member = {**UNMARKED, "error.type": _value(kind, "Error"),
                  "error.message": {"$in": messages + [None] * ("" in messages)}}  # fmt: skip
        if kind == "Error" and "" in messages:  # no type, no message: not a plain string
            member["error"] = {"$not": {"$type": "string"}}
        found.append(member)
    return found + odd


def _value(value: Any, default: str) -> dict[str, Any]:
    """Equal to ``value`` (as a value); the default also matches a missing field."""
    return {"$in": [default, None]} if value == default else {"$eq": value}


def pairs(queue: QueueBase) -> list[tuple[str, dict[str, Any]]]:
    """(group, pair) for each distinct (type, message) of ``queue``'s failures without a
    fingerprint, ring and history: one aggregation (``MAX_TIME_MS``), one row per pair."""
    pipeline: list[dict[str, Any]] = [
        {"$match": UNMARKED},
        {"$unionWith": {"coll": queue.collection.name, "pipeline": [{"$match": UNMARKED}]}},
        {"$group": {"_id": KEY, "tb": {"$max": TAIL}}},
    ]
    try:
        rows = list(queue.history_collection.aggregate(pipeline, maxTimeMS=MAX_TIME_MS))
    except ExecutionTimeout:
        raise JobQueueError(
            f"reading the error groups of failures stored without a fingerprint ran over "
            f"{MAX_TIME_MS / 1000:g} s and was stopped"
        ) from None
    return [(_group(**_texts(row["_id"]), tail=row.get("tb") or ""), row["_id"]) for row in rows]


def _texts(key: Mapping[str, Any]) -> dict[str, str]:
    return {"kind": str(key.get("t") or "Error"), "message": str(key.get("m") or "")}


@functools.lru_cache(maxsize=KEPT_GROUPS)
def _group(kind: str, message: str, tail: str) -> str:
    """A pair's group (remembered: a search box reads the same pairs again and again)."""
    return fingerprint(kind, message, tail)["group"]


class GroupMembers:
    """What ``compile_query(groups=...)`` asks of a ``group:`` term on ``queue``: the filters
    of the failures without a fingerprint whose group starts with a prefix. Reads the pairs
    on first use, and again only when ``max_age`` seconds passed (None: never again), so a
    search box re-reads at most that often and a query with no ``group:`` term never."""

    def __init__(self, queue: QueueBase, max_age: float | None = None) -> None:
        self.queue, self.max_age = queue, max_age
        self._read_at: float | None = None
        self._pairs: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, prefix: str) -> list[dict[str, Any]]:
        now, read_at = time.monotonic(), self._read_at
        if read_at is None or (self.max_age is not None and now - read_at > self.max_age):
            self._pairs, self._read_at = pairs(self.queue), now
        keys = [key for group, key in self._pairs if group.startswith(prefix)]
        if sum(len(str(key.get("m"))) for key in keys) > MAX_MEMBER_CHARS:
            raise JobQueueError(
                f"group:{prefix} names over {MAX_MEMBER_CHARS:,} characters of distinct "
                "messages stored without a fingerprint: give more of the group's key"
            )
        return members(keys)
