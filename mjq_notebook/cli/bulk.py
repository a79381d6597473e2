"""``mjq retry|cancel|promote QUERY``: act on every job matching a query, after saying how
many and (on a terminal, unless ``--yes``) asking; prints how many changed. The action goes
through ``Steering`` (one audit entry, by this user through mjq)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from ..core.job import ACTS_ON
from ..text import printable

if TYPE_CHECKING:
    from ..core.audit import Steering

# what each command does, as a question and as a report
VERBS = {"retry": ("Retry", "retried"), "cancel": ("Cancel", "cancelled"),
         "promote": ("Run now", "made due now")}  # fmt: skip


def act(steering: Steering, action: str, query: str, yes: bool) -> int:
    """Count the matches ``action`` would change, confirm, act; the command's exit status
    (1 when nothing was done for want of a confirmation)."""
    noun, (ask, did) = ACTS_ON[action], VERBS[action]
    shown = printable(query)
    count = steering.queue.count_matches(query, action)  # a query that can't be read: exit 2
    if not count:
        print(f"mjq: 0 {noun} jobs match `{shown}`: nothing done")
        return 0
    jobs = f"{count:,} {noun} job{'s' * (count != 1)}"
    if not yes:
        if not sys.stdin.isatty():
            print(f"mjq {action}: {jobs} match `{shown}`; no terminal to confirm on: add --yes "
                  "(nothing done)", file=sys.stderr)  # fmt: skip
            return 1
        answer = input(f"{ask} {jobs} matching `{shown}`? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("mjq: nothing done", file=sys.stderr)
            return 1
    method = {"retry": steering.retry_all, "cancel": steering.cancel_all,
              "promote": steering.promote_all}[action]  # fmt: skip
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        with tqdm(total=count, unit="job", file=sys.stderr, leave=False) as bar:
            changed = method(query, progress=lambda done, total: _advance(bar, done, total))
    else:
        changed = method(query)
    print(f"mjq: {did} {changed:,} {noun} job{'s' * (changed != 1)} matching `{shown}`")
    return 0


def _advance(bar: object, done: int, total: int) -> None:
    bar.total = total  # type: ignore[attr-defined]  # a tqdm
    bar.update(done - bar.n)  # type: ignore[attr-defined]
