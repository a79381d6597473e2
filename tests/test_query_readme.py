"""Every query example of the README ("Finding jobs", the marked block) is a test: it compiles,
and ``q.find`` on a small queue of known jobs matches the ones its comment describes."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from bson import ObjectId

README = Path(__file__).resolve().parents[1] / "README.md"
MARK = "<!-- query-examples:"

# what each example finds among the jobs below (names in data.name)
EXPECTED = {
    "status:failed": {"timeout", "keyerror"},
    "status:failed,cancelled": {"timeout", "keyerror", "cancelled"},
    "data.customer:42": {"timeout", "text42"},
    "data.customer:>=50": {"rush", "cancelled"},
    "data.region:eu-*": {"text42"},
    'data.note:"rush order"': {"rush"},
    "error:TimeoutError": {"timeout"},
    'error:"timed out"': {"timeout"},
    "worker:web-1": {"timeout"},
    "host:web": {"timeout", "text42"},
    "id:6b14": {"timeout", "rush"},
    "attempts:>1": {"timeout"},
    "created:>1h": {"timeout", "rush"},
    "done:<2026-12-01": {"keyerror"},
    "created:2026-11-20": {"keyerror"},
    "wait:>30s": {"timeout"},
    "run:>1m": {"timeout"},
    "group:3fa9": {"timeout"},
    "-status:done": {"timeout", "keyerror", "rush", "cancelled"},
    "status:failed -data.plan:pro": {"keyerror"},
    "rush": {"rush"},
}


def readme_examples() -> list[str]:
    """The queries of the README's marked block (each line: the query, then a comment)."""
    text = README.read_text(encoding="utf-8")
    block = text[text.index(MARK) :].split("```text\n", 1)[1].split("```", 1)[0]
    return [re.split(r"\s+#", line, maxsplit=1)[0].strip() for line in block.splitlines()]


def _fixture(queue) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    ago = lambda **kw: now - dt.timedelta(**kw)  # noqa: E731
    old = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.timezone.utc)

    def job(oid, name, status, data, created, started=None, done=None, **more):
        return {"_id": ObjectId(oid), "status": status, "data": {"name": name, **data},
                "ts": {"created": created, "started": started, "done": done}, "attempts": 1,
                "max_attempts": 3, "worker": None, **more}  # fmt: skip

    history = [
        job("6b1400000000000000000001", "timeout", "failed", {"customer": 42, "plan": "pro"},
            ago(minutes=30), ago(minutes=29), ago(minutes=27), attempts=2, worker="web-1:10:aa",
            error={"type": "TimeoutError", "message": "upstream timed out after 30 s",
                   "group": "3fa9c1"}),
        job("5a0000000000000000000002", "text42", "done", {"customer": "42", "region": "eu-west"},
            ago(days=2), ago(days=2, seconds=-2), ago(days=2, seconds=-5),
            worker="web-2:200:cc"),
        job("5a0000000000000000000003", "keyerror", "failed", {"customer": 7, "plan": "free"},
            old, old + dt.timedelta(seconds=1), old + dt.timedelta(seconds=2), worker="db-1:300:dd",
            error={"type": "KeyError", "message": "'profile'", "group": "77b0e2"}),
        job("5a0000000000000000000004", "cancelled", "cancelled", {"customer": 55}, ago(hours=3)),
    ]  # fmt: skip
    queue.history_collection.insert_many(history)
    queue.collection.insert_one(
        job("6b14ff0000000000000000ff", "rush", "waiting", {"customer": 100, "note": "rush order"},
            ago(seconds=10))
    )  # fmt: skip


def test_the_readme_examples_are_all_here():
    assert readme_examples() == list(EXPECTED)


def test_each_readme_example_matches_what_it_says(queue):
    _fixture(queue)
    for query, names in EXPECTED.items():
        found = {job["data"]["name"] for job in queue.find(query)}
        assert found == names, query
