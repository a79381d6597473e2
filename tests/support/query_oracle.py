"""Job queries generated as (text, predicate) pairs, for the query language's property test:
each predicate is plain Python over a job document, written from the README's meaning of a
term, never from the compiler. Also the documents the queries run on."""

from __future__ import annotations

import datetime as dt
import operator
from typing import Any

from bson import ObjectId
from hypothesis import strategies as st

NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.timezone.utc)
WORDS = ["ab", "abc", "Time", "timeout", "42", "x y", "7"]
STATUSES = ["waiting", "working", "done", "failed", "cancelled"]
CMP = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
DEPTH = 4

times = st.one_of(
    st.none(), st.integers(-3 * 86_400, 0).map(lambda s: NOW + dt.timedelta(seconds=s))
)
scalars = st.one_of(st.integers(-5, 50), st.sampled_from(WORDS), st.booleans())
data = st.fixed_dictionaries(
    {},
    optional={
        "n": scalars,
        "s": st.sampled_from(WORDS),
        "x": st.fixed_dictionaries({}, optional={"y": scalars, "Time": st.sampled_from(WORDS)}),
    },
)
error = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["TimeoutError", "KeyError", "ValueError"]),
        "message": st.sampled_from(["took 42 s", "no key ab", "Timeout reached", ""]),
        "group": st.sampled_from(["ab12", "ab34", "cd56"]),
    }
)


@st.composite
def job_documents(draw: Any) -> dict[str, Any]:
    created = draw(times)
    doc: dict[str, Any] = {
        "_id": ObjectId(),
        "status": draw(st.sampled_from(STATUSES)),
        "data": draw(st.one_of(data, st.sampled_from(WORDS), st.integers(0, 50))),
        "ts": {"created": created, "started": draw(times), "done": draw(times)},
        "worker": draw(st.sampled_from([None, "web-1:12:aa", "web-2:7:bb", "db:1:cc"])),
    }
    if draw(st.booleans()):
        doc["attempts"] = draw(st.integers(0, 3))
    if doc["status"] == "failed" or draw(st.booleans()):
        doc["error"] = draw(error)
    return doc


def _path(doc: Any, path: str) -> tuple[bool, Any]:
    for key in path.split("."):
        if not isinstance(doc, dict) or key not in doc:
            return False, None
        doc = doc[key]
    return True, doc


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _holds(value: Any, word: str, depth: int = DEPTH) -> bool:
    """The word in the value as text (any case), or in a key or value inside it."""
    if isinstance(value, bool):
        return word in ("true" if value else "false")
    if isinstance(value, (str, int, float)):
        return word in str(value).lower()
    if isinstance(value, dict) and depth:
        return any(word in k.lower() or _holds(v, word, depth - 1) for k, v in value.items())
    if isinstance(value, list) and depth:
        return any(_holds(v, word, depth - 1) for v in value)
    return False


def _time(doc: dict[str, Any], name: str) -> dt.datetime | None:
    value = (doc.get("ts") or {}).get(name)
    return value.replace(tzinfo=dt.timezone.utc) if isinstance(value, dt.datetime) else None


@st.composite
def terms(draw: Any, ids: list[ObjectId]) -> tuple[str, Any]:
    """One term's text and its predicate."""
    kind = draw(st.sampled_from([
        "status", "data_eq", "data_cmp", "data_prefix", "error", "worker", "host", "id",
        "attempts", "time", "day", "span", "group", "word",
    ]))  # fmt: skip
    if kind == "status":
        names = draw(st.lists(st.sampled_from(STATUSES), min_size=1, max_size=2))
        return f"status:{','.join(names)}", lambda d: d["status"] in names
    if kind.startswith("data"):
        path = draw(st.sampled_from(["n", "s", "x.y", "x.Time"]))
        if kind == "data_eq":
            value = draw(st.one_of(st.integers(-5, 50), st.sampled_from(WORDS)))
            text = f'"{value}"' if " " in str(value) else str(value)
            if isinstance(value, int) or value.isdigit():  # a number: itself or its text
                value = int(value)
                return f"data.{path}:{text}", lambda d: _eq_number(d, path, value)
            return f"data.{path}:{text}", lambda d: _path(d["data"], path) == (True, value)
        if kind == "data_cmp":
            op, n = draw(st.sampled_from(list(CMP))), draw(st.integers(-5, 50))
            return f"data.{path}:{op}{n}", lambda d: _cmp_number(d, path, op, n)
        prefix = draw(st.sampled_from(["a", "ab", "T", "x ", "4"]))
        text = f'"{prefix}"*' if " " in prefix else f"{prefix}*"
        return f"data.{path}:{text}", lambda d: _starts(_path(d["data"], path)[1], prefix)
    if kind == "error":
        word = draw(
            st.sampled_from(
                ["timeouterror", "KeyError", "42", "reach", "ab", "x", "error", "Timeout"]
            )
        )
        return f"error:{word}", lambda d: _error(d, word.lower())
    if kind in ("worker", "host"):
        prefix = draw(st.sampled_from(["web", "web-1", "db", "web-1:12", "x"]))
        if kind == "host":
            prefix = prefix.split(":")[0]
            return f"host:{prefix}", lambda d: _starts((d["worker"] or "").split(":")[0], prefix)
        return f"worker:{prefix}", lambda d: _starts(d["worker"], prefix)
    if kind == "id":
        prefix = str(draw(st.sampled_from(ids)))[: draw(st.integers(1, 24))]
        return f"id:{prefix}", lambda d: str(d["_id"]).startswith(prefix)
    if kind == "attempts":
        op, n = draw(st.sampled_from(["", *CMP])), draw(st.integers(0, 3))
        compare = CMP.get(op, operator.eq)
        return f"attempts:{op}{n}", lambda d: "attempts" in d and compare(d["attempts"], n)
    if kind in ("time", "day", "span"):
        return draw(_times(kind))
    if kind == "group":
        prefix = draw(st.sampled_from(["ab", "ab1", "cd56", "e"]))
        return f"group:{prefix}", lambda d: _starts((d.get("error") or {}).get("group"), prefix)
    word = draw(st.sampled_from(["ab", "TIME", "42", "true", "y", "x", "s"]))
    hexy = all(c in "0123456789abcdefABCDEF" for c in word)
    return (
        word,
        lambda d: (
            _holds(d["data"], word.lower()) or (hexy and str(d["_id"]).startswith(word.lower()))
        ),
    )


@st.composite
def _times(draw: Any, kind: str) -> tuple[str, Any]:
    op = draw(st.sampled_from(list(CMP)))
    amount, unit = draw(st.integers(0, 80)), draw(st.sampled_from(list(UNITS)))
    seconds = amount * UNITS[unit]
    if kind == "span":
        name = draw(st.sampled_from(["wait", "run"]))
        start, end = ("created", "started") if name == "wait" else ("started", "done")

        def span(d: dict[str, Any]) -> bool:
            a, b = _time(d, start), _time(d, end)
            return a is not None and b is not None and CMP[op]((b - a).total_seconds(), seconds)

        return f"{name}:{op}{amount}{unit}", span
    name = draw(st.sampled_from(["created", "started", "done"]))
    if kind == "day":
        day = (NOW - dt.timedelta(days=draw(st.integers(0, 3)))).date()
        start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)

        def on(d: dict[str, Any]) -> bool:
            t = _time(d, name)
            return t is not None and start <= t < start + dt.timedelta(days=1)

        return f"{name}:{day.isoformat()}", on
    since = NOW - dt.timedelta(seconds=seconds)

    def when(d: dict[str, Any]) -> bool:
        t = _time(d, name)
        return t is not None and CMP[op](t, since)

    return f"{name}:{op}{amount}{unit}", when


def _eq_number(doc: dict[str, Any], path: str, n: int) -> bool:
    found, value = _path(doc["data"], path)
    return found and ((_is_number(value) and value == n) or value == str(n))


def _cmp_number(doc: dict[str, Any], path: str, op: str, n: int) -> bool:
    found, value = _path(doc["data"], path)
    return found and _is_number(value) and CMP[op](value, n)


def _starts(value: Any, prefix: str) -> bool:
    return isinstance(value, str) and value.startswith(prefix)


def _error(doc: dict[str, Any], word: str) -> bool:
    error = doc.get("error") or {}
    return word in error.get("type", "").lower() or word in error.get("message", "").lower()


@st.composite
def queries(draw: Any, ids: list[ObjectId]) -> tuple[str, Any]:
    """A query of one to three terms, some negated: its text and predicate."""
    parts = draw(st.lists(terms(ids), min_size=1, max_size=3))
    negate = draw(st.lists(st.booleans(), min_size=len(parts), max_size=len(parts)))
    text = " ".join(("-" if no else "") + t for (t, _), no in zip(parts, negate, strict=True))
    preds = [(p, no) for (_, p), no in zip(parts, negate, strict=True)]
    return text, lambda d: all(p(d) != no for p, no in preds)
