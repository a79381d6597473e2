"""The search box of the tail (and any view that searches jobs): the job query language
(``core/query.py``) typed in a combobox that completes field names and the ``data.`` paths of
recent jobs, with a line under it for the last mistake.

``filter`` is the last query that compiled: a bad one shows its message and leaves the rows
as they were. The recent paths are read at most once every ``PATHS_EVERY`` seconds, on a
thread of their own, never per keystroke.

A ``group:`` term also names the failures stored without a fingerprint
(``core/error_groups.py``), which takes a read (one aggregation, seconds on a large history):
never on the kernel's thread. The query is checked at once (a mistake shows as typed), then
resolved on the box's ``mjq-query-groups`` thread (``live/latest.py``: one at a time, the
newest text wins, a result for text since changed is dropped), which sets ``filter`` and
calls back; and again every ``GROUPS_EVERY`` seconds while it is the box's query, calling
back when new failures changed it. A query without ``group:`` compiles at once and reads
nothing. A failed read shows as the mistake, the last good filter stays.
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
from ...core.query import ParsedQuery, field_names, parse_query
from ...errors import JobQueueError
from ...live.latest import Latest
from .. import markup

if TYPE_CHECKING:
    from ...core.queue import JobQueue

PATHS_EVERY = 5.0  # seconds between reads of the recent jobs' data paths
GROUPS_EVERY = 10.0  # seconds between reads of the groups of failures without a fingerprint
RECENT = 100  # jobs whose data paths are offered
MAX_OPTIONS = 40
STATUS_WORDS = ("waiting", "working", "done", "failed", "cancelled")
PLACEHOLDER = "search: status:failed data.customer:42 error:Timeout run:>1m …"


class QueryBox(W.VBox):
    """A query's text (``text``, a Combobox: its ``value`` is the query) and the message of
    its last mistake (``error``); ``filter`` the MongoDB filter of the last good query
    ({} for none). ``on_change(callback)`` hears of each new good query: on the kernel's
    thread, or on the box's thread for a ``group:`` query (so a callback only assigns traits
    or signals a thread of its own, as the tail's does)."""

    def __init__(self, queue: JobQueue, width: str = "24em") -> None:
        self.queue = queue
        self.filter: dict[str, Any] = {}
        self._callbacks: list[Callable[[], None]] = []
        self._groups = GroupMembers(queue, max_age=GROUPS_EVERY)
        self._lock = threading.RLock()  # the filter, the error line, the callbacks: one writer
        self._wanted: ParsedQuery | None = None  # the group: query whose resolution counts
        self._resolved: ParsedQuery | None = None  # the group: query ``filter`` comes from
        self._resolver = Latest(self._resolve, GROUPS_EVERY, "mjq-query-groups")
        self._said_by: str | None = None  # the mistake shown: of the "text", of a "read"
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
        """Close once the reads under way (the recent paths, the error groups: each bounded)
        are over: a closed view leaves no thread behind."""
        self._read_at = float("inf")  # no read starts after this
        with self._lock:
            self._wanted = None  # a resolution under way changes nothing now
            self._callbacks.clear()
        self._resolver.close()
        if self._reader is not None:
            self._reader.join(timeout=10)
        super().close()

    def _typed(self, change: Any = None) -> None:
        """On the kernel's thread: check the query (no read); compile it, or have the box's
        thread resolve its ``group:`` terms."""
        text = self.value
        try:
            parsed = parse_query(text.strip())
        except JobQueueError as exc:  # QuerySyntaxError among them
            with self._lock:
                self._wanted = self._resolved  # the filter in force stays current
                self._mistake(str(exc), "text")
            self._resolver.set(self._wanted)
        else:
            with self._lock:
                self._wanted = parsed if parsed.grouped else None
                self._mistake(None)
                if not parsed.grouped:
                    self._resolved = None
                    self._good(parsed.filter())
            self._resolver.set(self._wanted)
        self._offer(text)

    def _resolve(self, parsed: ParsedQuery) -> None:
        """On the box's thread: ``parsed``'s ``group:`` terms read; the filter changes if
        ``parsed`` is still the query wanted and its filter is new."""
        try:
            compiled = parsed.filter(self._groups)
        except (JobQueueError, PyMongoError) as exc:
            said = str(exc) if isinstance(exc, JobQueueError) else type(exc).__name__
            with self._lock:  # a failed read of the error groups, as a mistake
                if parsed is self._wanted and self._said_by != "text":
                    self._mistake(said, "read")
            return
        with self._lock:
            if parsed is not self._wanted:
                return  # the user typed on: the newest text wins
            if self._said_by == "read":
                self._mistake(None)
            if parsed is not self._resolved or compiled != self.filter:
                self._resolved = parsed
                self._good(compiled)

    def _good(self, compiled: dict[str, Any]) -> None:
        """Under ``_lock``: ``compiled`` is the filter, the callbacks hear of it."""
        self.filter = compiled
        for callback in list(self._callbacks):
            callback()

    def _mistake(self, said: str | None, by: str | None = None) -> None:
        """Under ``_lock``: show ``said`` under the box, a mistake of the text or of a read
        (``by``); None hides the line."""
        self._said_by = by if said is not None else None
        value = (
            ""
            if said is None
            else markup.wrap(f"<span class='mjq-warn'>{markup.escape(said)}</span>")
        )
        if self.error.value != value:
            self.error.value = value
        display = "none" if said is None else None
        if self.error.layout.display != display:
            self.error.layout.display = display

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
