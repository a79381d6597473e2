"""Which names a queue may have: what its companions are called, and what the server allows.

A queue ``<q>`` keeps plain collections beside it, ``<q>.history``, ``<q>.meta``,
``<q>.workers``, ``<q>.audit``, ``<q>.attempts``, ``<q>.metrics`` and ``<q>.metrics_hours``
(the rollups: minutes, hours). A queue named like one of those would take the place of
another queue's companion (a capped, evictable history), so such names are refused, as are
the names MongoDB reserves or rejects, and names whose companions would exceed the server's
namespace limit.
Everything here is checked before anything is created.
"""

from __future__ import annotations

from ..errors import QueueNameError

# the collections a queue keeps beside it
COMPANIONS = (
    ".history", ".meta", ".workers", ".audit", ".attempts", ".metrics", ".metrics_hours",
)  # fmt: skip
# the ``<q>.meta`` document of the queue's counts: ``published`` (counters.py), ``pruned``
# (retention.py), read by ``counts()`` (reads.py)
COUNTERS_ID = "counters"
# MongoDB 6.0+: a namespace, "<database>.<collection>", is at most 255 bytes (UTF-8)
MAX_NAMESPACE_BYTES = 255


def check_queue_name(database: str, name: str) -> None:
    """QueueNameError saying why ``name`` can't be a queue's in ``database``; None if it can."""
    problem = name_problem(database, name)
    if problem:
        raise QueueNameError(f"can't use {name!r} as a queue name: {problem}; nothing was created")


def name_problem(database: str, name: str) -> str | None:
    """Why ``name`` can't be a queue's name in ``database`` (a short phrase), or None."""
    if not isinstance(name, str):
        return f"a queue name is a string, not {type(name).__name__}"
    if not name:
        return "it is empty"
    if "$" in name or "\0" in name:
        return "MongoDB names can't contain '$' or NUL"
    if name.startswith(".") or name.endswith(".") or ".." in name:
        return "MongoDB names can't start or end with '.' nor contain '..'"
    if name.startswith("system."):
        return "names starting with 'system.' are MongoDB's own"
    suffix = companion_suffix(name)
    if suffix:
        return (
            f"a name ending in {suffix!r} is the companion of a queue (here of "
            f"{name[: -len(suffix)]!r}; a queue keeps {', '.join(COMPANIONS)} beside it)"
        )
    longest = f"{database}.{name}{max(COMPANIONS, key=len)}"
    size = len(longest.encode("utf-8", "surrogatepass"))
    if size > MAX_NAMESPACE_BYTES:
        return (
            f"its companion {longest!r} would be {size} bytes, over MongoDB's namespace limit "
            f"of {MAX_NAMESPACE_BYTES} (the database's name, a dot and the collection's)"
        )
    return None


def companion_suffix(name: str) -> str | None:
    """The companion suffix ``name`` ends in (``.history``...), or None."""
    return next((suffix for suffix in COMPANIONS if name.endswith(suffix)), None)
