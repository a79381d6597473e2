"""The search box of the tail (and any view that searches jobs): the job query language
(``core/query.py``) typed in a combobox that completes field names and the ``data.`` paths of
recent jobs, with a line under it for the last mistake.

``filter`` is the last query that compiled: a bad one shows its message and leaves the rows
as they were. The recent paths are read at most once every ``PATHS_EVERY`` seconds, on a
thread of their own, never per keystroke. A ``group:`` term also names the failures stored
without a fingerprint (``core/error_groups.py``): their groups are read (one aggregation) when
such a term is typed, at most once every ``GROUPS_EVERY`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as W
from pymongo.errors import PyMongoError

from ...core.error_groups import GroupMembers
from ...core.query import compile_query, field_names
from ...errors import JobQueueError
from .. import markup

if TYPE_CHECKING:
    from ...core.queue import JobQueue

PATHS_EVERY = 5.0  # seconds between reads of the recent jobs' data paths
GROUPS_EVERY = 10.0  # seconds one read of the groups of failures without a fingerprint serves
RECENT = 100  # jobs whose data paths are offered
MAX_OPTIONS = 40
STATUS_WORDS = ("waiting", "working", "done", "failed", "cancelled")
PLACEHOLDER = "search: status:failed data.customer:42 error:Timeout run:>1m …"


class QueryBox(W.VBox):
    """A query's text (``text``, a Combobox: its ``value`` is the query) and the message of
    its last mistake (``error``); ``filter`` the MongoDB filter of the last good query
    ({} for none). ``on_change(callback)`` hears of each new good query."""

    def __init__(self, queue: JobQueue, width: str = "24em") -> None:
        self.queue = queue
        self.filter: dict[str, Any] = {}
        self._callbacks: list[Callable[[], None]] = []
        self._groups = GroupMembers(queue, max_age=GROUPS_EVERY)
        self._paths: list[str] = []
        self._read_at = -PATHS_EVERY
        self._reading = threading.Lock()
        self._reader: threading.Thread | None = None
        self.text = W.Combobox(
            placeholder=PLACEHOLDER, ensure_option=False, continuous_update=True,
            layout={"width": width},
        )  # fmt: skip
        self.error = W.HTML(layout={"display": "none"})
        self.error.add_class("mjq-query-error")
        super().__init__([self.text, self.error], layout={"width": "auto"})
        self.text.observe(self._typed, "value")

    @property
    def value(self) -> str:
        return str(self.text.value)

    @value.setter
    def value(self, text: str) -> None:
        self.text.value = text

    def on_change(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def close(self) -> None:
        """Close once a read of the recent paths under way is over (one bounded read): a
        closed view leaves no thread behind."""
        self._read_at = float("inf")  # no read starts after this
        if self._reader is not None:
            self._reader.join(timeout=10)
        self._callbacks.clear()
        super().close()

    def _typed(self, change: Any = None) -> None:
        text = self.value
        try:
            compiled = compile_query(text.strip(), groups=self._groups)
        except (JobQueueError, PyMongoError) as exc:  # QuerySyntaxError among them
            said = str(exc) if isinstance(exc, JobQueueError) else type(exc).__name__
            message = markup.escape(said)  # a failed read of the error groups, as a mistake
            self.error.value = markup.wrap(f"<span class='mjq-warn'>{message}</span>")
            self.error.layout.display = None
        else:
            self.error.value, self.error.layout.display = "", "none"
            self.filter = compiled
            for callback in list(self._callbacks):
                callback()
        self._offer(text)

    def _offer(self, text: str) -> None:
        """Complete the word being typed: options are the text with it completed."""
        if time.monotonic() - self._read_at >= PATHS_EVERY and self._reading.acquire(False):
            self._read_at = time.monotonic()
            self._reader = threading.Thread(
                target=self._read_paths, name="mjq-query-paths", daemon=True
            )
            self._reader.start()
        head, _, word = text.rpartition(" ")
        head = f"{head} " if head else ""
        sign = "-" if word.startswith("-") else ""
        word = word[len(sign) :]
        options = [f"{head}{sign}{done}" for done in completions(word, self._paths)]
        if options != list(self.text.options):
            self.text.options = options[:MAX_OPTIONS]

    def _read_paths(self) -> None:
        try:
            jobs = self.queue.jobs(limit=RECENT)
            self._paths = data_paths(job.get("data") for job in jobs)
        except Exception:  # a suggestion is not worth an error: the next read may do
            pass
        finally:
            self._reading.release()


def completions(word: str, paths: list[str]) -> list[str]:
    """What ``word`` (the start of a term) may become: field names, data paths, statuses."""
    if word.startswith("status:"):
        done, _, last = word[len("status:") :].rpartition(",")
        done = f"status:{done}," if done else "status:"
        return [f"{done}{name}" for name in STATUS_WORDS if name.startswith(last) and last != name]
    if ":" in word:
        return []
    names = [f"{name}:" for name in field_names() if name != "data"]
    return [name for name in [*paths, *names] if name.startswith(word) and name != word]


def data_paths(datas: Any, depth: int = 3) -> list[str]:
    """The ``data.`` paths of ``datas`` (``data.customer:``), the most frequent first."""
    seen: Counter[str] = Counter()

    def walk(value: Any, path: str, left: int) -> None:
        if isinstance(value, dict) and left:
            for key, item in value.items():
                if isinstance(key, str) and key and not key.startswith("$") and "." not in key:
                    walk(item, f"{path}.{key}", left - 1)
        elif path != "data":
            seen[f"{path}:"] += 1

    for data in datas:
        walk(data, "data", depth)
    return [path for path, _ in seen.most_common(MAX_OPTIONS)]
