"""The job query language's words: a query's text cut into terms (``-field:>value*``, quoted
values, free words), each knowing where it starts so a mistake can point at it.

``query.py`` gives the terms their meaning; this module only reads the text.
"""

from __future__ import annotations

import dataclasses

from ..errors import QuerySyntaxError

MAX_LENGTH = 2_000  # characters of a query: a longer one is a mistake (or an attack)
MAX_TERMS = 50
OPERATORS = (">=", "<=", ">", "<")  # the two-character ones first


@dataclasses.dataclass(frozen=True)
class Term:
    """One term: ``-field:op value*``. ``field`` is None for a free word; ``position`` (1-based)
    is where the term starts, ``at`` where its value starts; ``prefix`` a trailing ``*``
    outside quotes."""

    field: str | None
    value: str
    position: int
    at: int
    negated: bool = False
    op: str = ""
    prefix: bool = False
    quoted: bool = False


def terms_of(text: str) -> list[Term]:
    """The terms of ``text``, in order; QuerySyntaxError at the first that can't be read."""
    if len(text) > MAX_LENGTH:
        raise QuerySyntaxError(
            f"query too long ({len(text):,} characters; at most {MAX_LENGTH:,}) at "
            f"{MAX_LENGTH + 1}",
            MAX_LENGTH + 1,
        )
    terms: list[Term] = []
    i = 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        if len(terms) == MAX_TERMS:
            raise QuerySyntaxError(f"too many terms (at most {MAX_TERMS}) at {i + 1}", i + 1)
        term, i = _term(text, i)
        terms.append(term)
    return terms


def _term(text: str, start: int) -> tuple[Term, int]:
    """The term starting at ``start`` and the index just after it."""
    i = start
    negated = text[i] == "-"
    if negated:
        i += 1
        if i == len(text) or text[i].isspace():
            raise QuerySyntaxError(f"nothing after `-` at {start + 1}", start + 1)
    field = None
    if text[i] != '"':
        end = _word_end(text, i)
        name, colon, _ = text[i:end].partition(":")
        if colon:
            field, i = name, i + len(name) + 1
            if not name:
                raise QuerySyntaxError(f"a field name is missing before `:` at {i}", i)
    op = next((o for o in OPERATORS if field is not None and text.startswith(o, i)), "")
    i += len(op)
    at = i
    quoted = i < len(text) and text[i] == '"'
    if quoted:
        value, i = _quoted(text, i)
    else:
        end = _word_end(text, i)
        value, i = text[i:end], end
        if '"' in value:
            where = i - len(value) + value.index('"') + 1
            raise QuerySyntaxError(
                f"a quote inside a word at {where}; quote the whole value", where
            )
    prefix = False
    if quoted and i < len(text) and text[i] == "*":
        prefix, i = True, i + 1
    elif not quoted and value.endswith("*") and field is not None:
        prefix, value = True, value[:-1]
    if i < len(text) and not text[i].isspace():
        raise QuerySyntaxError(f"expected a space after the quoted value at {i + 1}", i + 1)
    if not value and not quoted and not prefix:
        what = f"`{field}`" if field is not None else "the term"
        raise QuerySyntaxError(f"empty value for {what} at {at + 1}", at + 1)
    term = Term(field, value, start + 1, at + 1, negated, op, prefix, quoted)
    return term, i


def _word_end(text: str, i: int) -> int:
    while i < len(text) and not text[i].isspace():
        i += 1
    return i


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The text between the quote at ``start`` and its closing quote (``\\"`` and ``\\\\``
    stand for a quote and a backslash), and the index after the closing quote."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in '"\\':
            out.append(text[i + 1])
            i += 2
        elif char == '"':
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    raise QuerySyntaxError(f"unbalanced quote at {start + 1}", start + 1)
