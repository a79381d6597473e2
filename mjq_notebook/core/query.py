"""The job query language of every search box, ``q.find`` and ``mjq find``: parsed once
(``query_terms.py``), compiled here to a MongoDB filter over job documents (the ring and
history alike). The README's "Finding jobs" has the syntax.

What the user types is always a value, never an operator: no ``$where``, no JavaScript; a
regular expression only as ``^`` and ``re.escape``'d text (a prefix); text inside an
aggregation expression only as ``$literal``. Field paths are checked (no ``$``).
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bson import ObjectId

from ..errors import QuerySyntaxError
from .job import STATUSES
from .query_terms import Term, terms_of
from .query_values import DEPTH, cutoff, day_range, millis, needle, number, text_search

TIMES = {"created": "ts.created", "started": "ts.started", "done": "ts.done"}
SPANS = {"wait": ("ts.created", "ts.started"), "run": ("ts.started", "ts.done")}
FIELDS = ("status", "data", "error", "worker", "host", "id", "attempts", "group", *TIMES, *SPANS)
MONGO_OP = {">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}
PATH_PART = re.compile(r"[^\s$.\"*:]+")  # a key of a data path: no operator, no dot


Groups = Callable[[str], list[dict[str, Any]]]  # a group key's prefix -> filters of more jobs


def compile_query(
    text: str, *, now: dt.datetime | None = None, groups: Groups | None = None
) -> dict[str, Any]:
    """The MongoDB filter matching the jobs ``text`` asks for ({} for an empty text);
    QuerySyntaxError, pointing at the position, when it can't be read. ``now`` anchors
    relative times (``created:>1h``); by default the current time. ``groups(prefix)``, asked
    only for a ``group:`` term, gives the filters of the failures of those error groups
    stored without a fingerprint (``error_groups.GroupMembers`` reads them from a queue);
    without it, ``group:`` matches the stored fingerprint only."""
    return parse_query(text, now=now).filter(groups)


def parse_query(text: str, *, now: dt.datetime | None = None) -> ParsedQuery:
    """``text`` read and checked, every mistake found (QuerySyntaxError), without a read:
    ``.filter(groups)`` then resolves its ``group:`` terms (a search box does that off the
    kernel's thread when ``.grouped``)."""
    if not isinstance(text, str):
        raise TypeError(f"a query is text, not {type(text).__name__}")
    now = dt.datetime.now(dt.timezone.utc) if now is None else _utc(now)
    terms = list(terms_of(text))
    return ParsedQuery(tuple((term, _compile(term, now)) for term in terms))


@dataclass(frozen=True, eq=False)
class ParsedQuery:
    """A query's terms, each with its filter; ``group:`` terms not yet resolved."""

    parts: tuple[tuple[Term, dict[str, Any]], ...]

    @property
    def grouped(self) -> bool:
        """Whether ``filter(groups)`` would read (it has a ``group:`` term)."""
        return any(term.field == "group" for term, _ in self.parts)

    def filter(self, groups: Groups | None = None) -> dict[str, Any]:
        """The MongoDB filter (as ``compile_query``), ``group:`` terms resolved by ``groups``."""
        parts = []
        for term, part in self.parts:
            part = copy.deepcopy(part)  # each filter its own: a caller may keep or change it
            if groups is not None and term.field == "group":
                part = _group(part, term.value, groups)
            parts.append({"$nor": [part]} if term.negated else part)
        if not parts:
            return {}
        return parts[0] if len(parts) == 1 else {"$and": parts}


def field_names() -> tuple[str, ...]:
    """The fields a query names (``data`` takes a path: ``data.customer``), for autocomplete."""
    return FIELDS


def _compile(term: Term, now: dt.datetime) -> dict[str, Any]:
    if term.field is None:
        if not term.value:
            raise QuerySyntaxError(f"empty value at {term.at}", term.at)
        return _free_word(term.value)
    name = term.field
    head = name.split(".", 1)[0]
    if head not in FIELDS or (head != "data" and "." in name):
        guess = difflib.get_close_matches(name, FIELDS, n=1)
        hint = f"; did you mean `{guess[0]}`?" if guess else f" (fields: {', '.join(FIELDS)})"
        raise QuerySyntaxError(f"unknown field `{name}` at {term.position}{hint}", term.position)
    compiler = COMPILERS.get(head)
    if compiler is not None:
        return compiler(term)
    if head in TIMES:
        return _time(term, TIMES[head], now)
    return _span(term, *SPANS[head])


def _no(term: Term, what: str) -> QuerySyntaxError:
    return QuerySyntaxError(f"`{term.field}` takes {what} at {term.at}", term.at)


def _plain(term: Term, what: str) -> str:
    """The term's value when it may be neither compared, nor a prefix, nor empty."""
    if term.op or term.prefix:
        raise _no(term, what)
    if not term.value:
        raise QuerySyntaxError(f"empty value for `{term.field}` at {term.at}", term.at)
    return term.value


def _status(term: Term) -> dict[str, Any]:
    names = _plain(term, "status names (status:failed,cancelled)").split(",")
    at = term.at
    for name in names:
        if name not in STATUSES:
            guess = difflib.get_close_matches(name, STATUSES, n=1)
            hint = f"; did you mean `{guess[0]}`?" if guess else f" ({', '.join(STATUSES)})"
            raise QuerySyntaxError(f"unknown status `{name}` at {at}{hint}", at)
        at += len(name) + 1
    return {"status": {"$in": names}}


def _data(term: Term) -> dict[str, Any]:
    path = term.field or "data"
    parts = path.split(".")[1:]
    if any(not PATH_PART.fullmatch(part) for part in parts):
        raise QuerySyntaxError(
            f"bad data path `{path}` at {term.position}: keys separated by dots, no `$`",
            term.position,
        )
    value = term.value
    if term.prefix:
        if term.op:
            raise _no(term, "a comparison or a prefix, not both")
        return {path: {"$regex": "^" + re.escape(value)}} if value else {path: {"$exists": True}}
    found = None if term.quoted else number(value, term.at)
    if term.op:
        return {path: {MONGO_OP[term.op]: value if found is None else found}}
    if found is not None:
        return {path: {"$in": [found, value]}}
    if not term.quoted and value in ("true", "false"):
        return {path: {"$in": [value == "true", value]}}
    return {path: {"$eq": value}}


def _error(term: Term) -> dict[str, Any]:
    """The error's type or message holds the value (any case)."""
    value = {"$literal": needle(_plain(term, "an exception type or words of its message"))}
    inside = [{"$gte": [{"$indexOfCP": [{"$toLower": _text(f"$error.{key}")}, value]}, 0]}
              for key in ("type", "message")]  # fmt: skip
    return {"$expr": {"$or": inside}}


def _text(path: str) -> dict[str, Any]:
    """The field at ``path`` when it is text, else ""."""
    return {"$cond": [{"$eq": [{"$type": path}, "string"]}, path, ""]}


def _prefix(field: str, suffix: str = "") -> Callable[[Term], dict[str, Any]]:
    def compile_prefix(term: Term) -> dict[str, Any]:
        if term.op:
            raise _no(term, "a prefix, not a comparison")
        value = term.value
        if not value:
            raise QuerySyntaxError(f"empty value for `{term.field}` at {term.at}", term.at)
        if suffix and ":" in value:
            raise _no(term, "a host name (no `:`)")
        return {field: {"$regex": "^" + re.escape(value) + suffix}}

    return compile_prefix


def _group(stored: dict[str, Any], prefix: str, groups: Groups) -> dict[str, Any]:
    """A ``group:`` term: its ``stored`` match (the stored fingerprint starts with the
    prefix) or the failures stored without one whose fingerprint does (``groups``)."""
    more = groups(prefix)
    return {"$or": [stored, *more]} if more else stored


def _id(term: Term) -> dict[str, Any]:
    """A hex prefix: the range of ids it starts, which the ``_id`` index finds."""
    if term.op:
        raise _no(term, "a hex prefix of a job id")
    value = term.value.lower()
    if len(value) > 24 or not re.fullmatch(r"[0-9a-f]+", value):
        raise QuerySyntaxError(f"bad id `{term.value}` at {term.at}: up to 24 hex digits", term.at)
    return {"_id": {"$gte": ObjectId(value.ljust(24, "0")), "$lte": ObjectId(value.ljust(24, "f"))}}


def _attempts(term: Term) -> dict[str, Any]:
    if term.prefix:
        raise _no(term, "a number (attempts:>1)")
    found = number(term.value, term.at)
    if found is None or found != int(found):
        raise QuerySyntaxError(f"bad number `{term.value}` at {term.at}", term.at)
    return {"attempts": {MONGO_OP.get(term.op, "$eq"): int(found)}}


def _time(term: Term, path: str, now: dt.datetime) -> dict[str, Any]:
    """``>1h``: within the last hour; ``<1h``: before it; ``<2026-12-01``: before that day
    (UTC); ``2026-12-01``: that day; ``1h``: as ``>1h``."""
    if term.prefix:
        raise _no(term, "a time (created:>1h, created:<2026-12-01)")
    when, day = cutoff(term.value, now, term.at)
    if not term.op:
        if day:
            start, end = day_range(when)
            return {path: {"$gte": start, "$lt": end}}
        if when > now:
            raise _no(term, "a time with > or < (done:<2026-12-01T10:00)")
        return {path: {"$gt": when}}
    return {path: {MONGO_OP[term.op]: when}}


def _span(term: Term, start: str, end: str) -> dict[str, Any]:
    """``run:>1m``: jobs with both times whose span compares so (milliseconds, in the server)."""
    if not term.op or term.prefix:
        raise _no(term, f"a duration with > or < ({term.field}:>5s)")
    span = {"$subtract": [f"${end}", f"${start}"]}
    return {
        f"{start}": {"$type": "date"},
        f"{end}": {"$type": "date"},
        "$expr": {MONGO_OP[term.op]: [span, {"$literal": millis(term.value, term.at)}]},
    }


def _free_word(word: str) -> dict[str, Any]:
    """As the tail's search always did: the word starts the job's id, or any key or value of
    its data holds it (any case; numbers as their digits)."""
    found = text_search("$data", needle(word), DEPTH)
    if len(word) <= 24 and re.fullmatch(r"[0-9a-fA-F]+", word):
        return {"$or": [_id(Term("id", word, 1, 1)), {"$expr": found}]}
    return {"$expr": found}


COMPILERS: dict[str, Callable[[Term], dict[str, Any]]] = {
    "status": _status,
    "data": _data,
    "error": _error,
    "worker": _prefix("worker"),
    "host": _prefix("worker", "[^:]*:"),  # worker ids are host:pid:hex (registry.new_worker_id)
    "id": _id,
    "attempts": _attempts,
    "group": _prefix("error.group"),  # the stored fingerprint; ``_group`` adds the others
}


def _utc(when: dt.datetime) -> dt.datetime:
    return when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when
