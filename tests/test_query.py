"""The job query language (core/query.py): generated queries match on the server exactly the
documents a plain-Python predicate picks; mistakes are one positioned QuerySyntaxError; what
the user types is never an operator, a script or an unanchored regular expression."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mjq_notebook.core.query import compile_query
from mjq_notebook.errors import QuerySyntaxError

from .support.query_oracle import NOW, job_documents, queries


@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.data())
def test_generated_queries_match_as_the_predicate_says(db, data):
    docs = data.draw(st.lists(job_documents(), min_size=1, max_size=25))
    db.jobs.delete_many({})
    db.jobs.insert_many(docs)
    ids = [doc["_id"] for doc in docs]
    for _ in range(4):
        text, predicate = data.draw(queries(ids))
        try:
            compiled = compile_query(text, now=NOW)
        except QuerySyntaxError as exc:  # generated from the grammar: it must read
            raise AssertionError(f"{text!r} did not compile: {exc}") from None
        found = {doc["_id"] for doc in db.jobs.find(compiled, {"_id": 1})}
        expected = {doc["_id"] for doc in docs if predicate(doc)}
        assert found == expected, (text, compiled)


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("stauts:failed", "unknown field `stauts` at 1; did you mean `status`?", 1),
        ("status:failed datta.x:1", "unknown field `datta.x` at 15; did you mean `data`?", 15),
        ("status:faild", "unknown status `faild` at 8; did you mean `failed`?", 8),
        ('data.name:"two words', "unbalanced quote at 11", 11),
        ("data.x:", "empty value for `data.x` at 8", 8),
        ("attempts:>x", "bad number `x` at 11", 11),
        ("run:>5parsecs", "bad duration `5parsecs` at 6", 6),
        ("created:<2026-13-01", "bad time `2026-13-01` at 10", 10),
        ("id:xyz", "bad id `xyz` at 4", 4),
        ("data.$where:1", "bad data path `data.$where` at 1", 1),
        ("-", "nothing after `-` at 1", 1),
        ("x" * 100_000, "query too long (100,000 characters; at most 2,000) at 2001", 2001),
        ("a " * 51, "too many terms (at most 50) at 101", 101),
    ],
)
def test_a_mistake_is_one_positioned_message(text, message, position):
    with pytest.raises(QuerySyntaxError) as raised:
        compile_query(text)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)
    assert raised.value.position == position


HOSTILE = ["$where", '{"$gt": ""}', ".*.*.*.*.*.*.*.*.*.*x", "\\", "$$ROOT", "a|b", "(a+)+$"]


def _operators(value):
    """Every key starting with $ in a compiled filter, and every regex in it."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _operators(item)
    elif isinstance(value, list):
        for item in value:
            yield from _operators(item)


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_are_literal(db, value):
    docs = [
        {"data": {"x": value, "y": f"{value}tail"}, "worker": f"{value}:1:aa"},
        {"data": {"x": "other"}},
    ]
    db.jobs.insert_many(docs)
    quoted = json.dumps(value)  # a quoted value: the backslash escaped as the syntax says
    for text, expected in [
        (f"data.x:{quoted}", 1),
        (f"data.y:{quoted}*", 1),
        (f"worker:{quoted}", 1),
        (quoted, 1),
        (f"-data.x:{quoted}", 1),
    ]:
        compiled = compile_query(text)
        keys = {key for key, _ in _operators(compiled)}
        assert "$where" not in keys and "$function" not in keys and "$accumulator" not in keys
        for key, item in _operators(compiled):
            if key == "$regex":
                assert item == "^" + re.escape(value)
        assert db.jobs.count_documents(compiled) == expected, text


def test_a_regex_is_escaped_and_anchored():
    compiled = compile_query("data.x:.*.*.*.*x* worker:(a+)+")
    regexes = [item for key, item in _operators(compiled) if key == "$regex"]
    assert regexes == ["^" + re.escape(".*.*.*.*x"), "^" + re.escape("(a+)+")]


def test_free_words_are_searched_as_the_tail_searched(db):
    db.jobs.insert_many([
        {"data": {"Customer": {"name": "ACME Corp", "tags": ["vip", 42]}}},
        {"data": "plain text"},
        {"data": 1234},
        {"data": {"other": True}},
    ])  # fmt: skip

    def hits(text):
        return sorted(str(doc["data"]) for doc in db.jobs.find(compile_query(text)))

    assert (
        hits("acme")
        == hits("customer")
        == hits("VIP")
        == hits("42")
        == ["{'Customer': {'name': 'ACME Corp', 'tags': ['vip', 42]}}"]
    )
    assert hits("23") == ["1234"]
    assert hits("true") == ["{'other': True}"]
    assert hits('"plain t"') == ["plain text"]
    assert hits("acme -vip") == [] and len(hits("-acme")) == 3
