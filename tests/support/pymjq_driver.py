"""Drive the real pymjq 1.2.0 (Python 2 code) from a venv of its own with pymongo 3.13.

Run by that venv's python, never imported by the tests: ``python pymjq_driver.py DB COMMAND
[N]``, the server's URI in ``MJQ_PYMJQ_URI`` (never printed). Two shims make pymjq run on
Python 3: its package folder on ``sys.path`` (its ``__init__`` does ``from jobqueue import``)
and ``find(tailable=True)`` turned into ``cursor_type=CursorType.TAILABLE`` (pymongo 3
dropped the keyword). Commands print one line per job, flushed:

- ``pub N``: publish N jobs ``{"n": i, "by": "pymjq", "run": <this run>}``; prints each id.
- ``next N``: ``q.next()`` N times (stops at the first StopIteration); prints each id.
- ``iterate``: ``for job in q``, for ever; prints each id as it is handed out.
- ``hold``: ``for job in q``, and keep the first job (``working``) until killed.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time

import pymongo
from pymongo.collection import Collection

# shim 1: its folder on sys.path (importing the package itself fails on that import)
sys.path.insert(0, importlib.util.find_spec("pymjq").submodule_search_locations[0])

_find = Collection.find


def _find_tailable(self, *args, tailable=False, **kwargs):  # shim 2
    if tailable:
        kwargs["cursor_type"] = pymongo.CursorType.TAILABLE
    return _find(self, *args, **kwargs)


Collection.find = _find_tailable

from jobqueue import JobQueue  # noqa: E402  (needs the shims above)


def main() -> None:
    db_name, command, *rest = sys.argv[1:]
    count = int(rest[0]) if rest else 0
    client = pymongo.MongoClient(os.environ["MJQ_PYMJQ_URI"], serverSelectionTimeoutMS=20000)
    q = JobQueue(client[db_name], silent=True)
    if command == "pub":
        run = f"{os.getpid()}-{time.time()}"
        for n in range(count):
            q.pub({"n": n, "by": "pymjq", "run": run})  # returns True, not the id
            say(q.q.find_one({"data.n": n, "data.run": run}, {"_id": 1})["_id"])
    elif command == "next":
        for _ in range(count):
            try:
                say(q.next()["_id"])
            except StopIteration:
                break
    elif command == "iterate":
        for job in q:
            say(job["_id"])
    elif command == "hold":
        for job in q:
            say(job["_id"])
            while True:
                time.sleep(60)
    else:
        raise SystemExit(f"unknown command {command!r}")


def say(value: object) -> None:
    print(value, flush=True)


if __name__ == "__main__":
    main()
