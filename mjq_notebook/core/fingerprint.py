"""An error's fingerprint: which failures are "the same error", whatever ids, numbers, paths
or quoted values their messages carry.

``fingerprint(kind, message, traceback)`` gives the ``pattern`` (the message with its variable
parts as placeholders: ``<n>``, ``<id>``, ``<hex>``, ``<str>``, ``<path>``, ``<addr>``,
``<url>``), the ``frame`` (the innermost traceback frame as ``module:function``, without a
line number: lines move between releases) and the ``group`` (12 hex digits of the SHA-1 of
type, pattern and frame). ``fail()`` stores all three with the error; ``q.errors()`` uses
the same function for errors stored without them (pymjq's, other programs', plain strings).
Pure: no I/O, no state.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

MAX_PATTERN = 200  # characters of a pattern kept
MAX_SCANNED = 4000  # characters of a message normalised (the rest can't change a pattern)
GROUP_DIGITS = 12

# In order: a quoted value may hold a path or a number, a URL a path and an address.
_RULES = [
    (re.compile(r"'[^'\n]{0,300}'|\"[^\"\n]{0,300}\"|`[^`\n]{0,300}`"), "<str>"),
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]{1,15}://[^\s'\"<>]{1,500}"), "<url>"),
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
        ),
        "<id>",
    ),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?\b"), "<addr>"),
    (re.compile(r"\[[0-9a-fA-F:]{2,39}\](?::\d{1,5})?"), "<addr>"),  # [::1]:8080
    (re.compile(r"(?:\b[A-Za-z]:)?(?:[\\/][\w.@~+-]{1,255}){2,}[\\/]?"), "<path>"),
    (re.compile(r"\b0[xX][0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"), "<id>"),
    (re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"), "<n>"),
]
_SPACE = re.compile(r"\s+")
# A traceback's frame line: File "path/to/module.py", line 12, in function
_FRAME = re.compile(r'File "([^"\n]*)", line \d+, in ([^\s]+)')


def pattern_of(message: str) -> str:
    """``message`` with its variable parts as placeholders, white space collapsed, cut to
    ``MAX_PATTERN`` characters."""
    text = message[:MAX_SCANNED]
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":  # KeyError's str() quotes
        text = text[1:-1]
    for rule, placeholder in _RULES:
        text = rule.sub(placeholder, text)
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= MAX_PATTERN else text[: MAX_PATTERN - 1] + "…"


def frame_of(traceback: str) -> str:
    """The innermost frame of a formatted traceback as ``module:function`` (the file's name
    without ``.py``); "" when the text names no frame."""
    frames = _FRAME.findall(traceback[-20_000:])
    if not frames:
        return ""
    path, function = frames[-1]
    name = re.split(r"[\\/]", path)[-1]
    return f"{name.removesuffix('.py')}:{function}"


def group_of(kind: str, pattern: str, frame: str) -> str:
    """The group's key: the first ``GROUP_DIGITS`` hex digits of SHA-1(type, pattern, frame)."""
    digest = hashlib.sha1(f"{kind}\n{pattern}\n{frame}".encode(), usedforsecurity=False)
    return digest.hexdigest()[:GROUP_DIGITS]


def fingerprint(kind: str, message: str, traceback: str = "") -> dict[str, str]:
    """``{"group", "pattern", "frame"}`` of an error of type ``kind``."""
    pattern, frame = pattern_of(message), frame_of(traceback)
    return {"group": group_of(kind, pattern, frame), "pattern": pattern, "frame": frame}


def error_parts(error: Any) -> tuple[str, str, str]:
    """(type, message, traceback) of a stored error, whatever its shape: our document, a
    document missing some of those, a plain string (pymjq), or anything else."""
    if isinstance(error, Mapping):
        kind, message, text = (error.get(k) for k in ("type", "message", "traceback"))
        return (
            kind if isinstance(kind, str) and kind else "Error",
            message if isinstance(message, str) else "" if message is None else str(message),
            text if isinstance(text, str) else "",
        )
    return "Error", "" if error is None else str(error), ""
