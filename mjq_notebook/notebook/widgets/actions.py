"""What the tail offers to do: "Retry all failed…" (with a confirmation row: "Retry 12 jobs")
and, for the selected job in its detail: Retry (failed), Cancel job (waiting or
delayed; a second click on "Confirm cancel" does it), Run now (a delayed job or a retry in
back-off) and, for a working job whose worker is lost, a note saying when it can be taken
again (``formatting.lost_note``) and Release now (``q.reclaim`` with the document shown, so
only the attempt the user saw is ended); Edit and retry for a failed job (``edit_retry.py``).
The detail it goes with shows the job's attempts (``detail_html``).

One word, one meaning: the buttons that send failed jobs back to waiting, with more attempts,
say "Retry" as ``q.retry`` does (the core calls it requeueing, ``core/parts/requeue.py``);
handing back a lost worker's job is "Release now" (the core's reclaim, ``leases.py``).

The buttons act through the widget's ``Steering`` (so each action is recorded in the queue's
audit, with who) on the kernel's thread; ``show`` may be called from the watcher's thread
too (the tail calls both under its lock). A read-only viewer gets none of the buttons. An
action's outcome goes to the tail's message line through ``say``; errors (a refusal
included) are said, never raised into the notebook.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import ipywidgets as W

from ...core.job import Job
from ...errors import ReadOnlyError
from ...text import utc
from ..display import escape, job_html
from ..formatting import lost_note
from ..markup import wrap
from .acting import refused
from .edit_retry import EditRetry

if TYPE_CHECKING:
    from ...core.audit import Steering

log = logging.getLogger("mjq_notebook")

_FIT = {"width": "auto"}  # buttons are 148 px by default: the labels would be cut
CANCEL = "Cancel job"
CONFIRM = "Confirm cancel"
REQUEUE_SCAN = 10_000  # failed jobs a search looks through for "Retry all failed…"
RETRY, RETRY_ALL, DONT = "Retry", "Retry all failed…", "Don't retry"  # the buttons' labels
RELEASE_HINT = "Release now hands it back at once"


def is_delayed(job: Mapping[str, Any], now: dt.datetime) -> bool:
    """A waiting job not claimable yet: published with a delay, or a retry in back-off."""
    available = job.get("available_at")
    return (
        job.get("status") == "waiting"
        and isinstance(available, dt.datetime)
        and utc(available) > now
    )


class JobActions(W.HBox):
    """The selected job's buttons, and ``note`` (an HTML line the tail shows above the
    detail). ``changed(job_id)`` is called after an action changed the job. Every action
    goes through ``steering`` (recorded in the queue's audit); a read-only steering gets no
    buttons at all (their attributes are None), and a handler called anyway is refused."""

    def __init__(
        self, steering: Steering, say: Callable[..., None], changed: Callable[[Any], None]
    ) -> None:
        self.steering = steering
        self.queue = steering.queue
        self._say = say
        self._changed = changed
        self._job: Job | None = None
        self._worker_lost = False
        self._confirming = False  # "Confirm cancel" is showing
        self.note = W.HTML()
        self.edit = EditRetry(steering, say, changed)  # its parts are None when read-only
        # what the tail shows under its message line: the note, the edit-and-retry editor
        self.panel = W.VBox([self.note] + ([self.edit.box] if self.edit.box else []))
        self._story: tuple[Any, list[dict[str, Any]] | None] = (None, None)
        self.requeue_button = self.cancel_job_button = self.keep_button = None
        self.run_now_button = self.release_button = None
        if steering.read_only:
            super().__init__([])
            return
        hidden = {"display": "none", **_FIT}
        self.requeue_button = W.Button(
            description=RETRY,
            icon="redo",
            tooltip="run this failed job again: back to waiting, with one more attempt",
            layout=hidden,
        )
        self.cancel_job_button = W.Button(
            description=CANCEL,
            icon="ban",
            tooltip="a waiting job becomes cancelled: final, never run (asks to confirm)",
            layout=dict(hidden),
        )
        self.keep_button = W.Button(
            description="Keep it", tooltip="don't cancel", layout=dict(hidden)
        )
        self.run_now_button = W.Button(
            description="Run now",
            icon="forward",
            tooltip="make this delayed job (or retry in back-off) due now",
            layout=dict(hidden),
        )
        self.release_button = W.Button(
            description="Release now",
            icon="undo",
            tooltip="its worker is lost: hand this attempt back to waiting now, not at the "
            "end of its lease (if the worker comes back, it can't finish it)",
            button_style="warning",
            layout=dict(hidden),
        )
        super().__init__(
            [
                self.requeue_button,
                self.cancel_job_button,
                self.keep_button,
                self.run_now_button,
                self.release_button,
                self.edit.button,
            ]
        )
        self.requeue_button.on_click(self._requeue)
        self.cancel_job_button.on_click(self._cancel)
        self.keep_button.on_click(lambda _b: self._ask(False))
        self.run_now_button.on_click(self._run_now)
        self.release_button.on_click(self._release)

    def show(self, job: Job | None, worker_lost: bool, now: dt.datetime | None = None) -> None:
        """The buttons (and the note) for ``job`` as shown now; ``worker_lost``: its worker
        reads as lost in the registry. A new job, or one no longer waiting, drops a pending
        confirmation."""
        now = now or dt.datetime.now(dt.timezone.utc)
        before, self._job, self._worker_lost = self._job, job, worker_lost
        status = None if job is None else job.get("status")
        same = before is not None and job is not None and before.id == job.id
        if not same or status != "waiting":
            self._ask(False)
        lost = status == "working" and worker_lost
        _visible(self.requeue_button, status == "failed")
        _visible(self.cancel_job_button, status == "waiting")
        _visible(self.run_now_button, job is not None and is_delayed(job, now))
        _visible(self.release_button, lost)
        self.edit.show(job)
        hint = "" if self.steering.read_only else f"; {RELEASE_HINT}"
        note = f"{lost_note(job, now)}{hint}" if lost and job is not None else ""
        value = wrap(f'<span class="mjq-warn">⚠ {escape(note)}</span>') if note else ""
        if self.note.value != value:
            self.note.value = value

    def detail_html(self, job: Job, worker_lost: bool) -> str:
        """The job's detail with its Attempts section (``q.story``: one indexed find, again
        only when the job's attempts or status changed)."""
        return job_html(job, worker_lost=worker_lost, attempts=self.story(job))

    def story(self, job: Job) -> list[dict[str, Any]] | None:
        """``job``'s attempts, read when its attempt or status changed; None if unreadable."""
        key = (job.id, job.get("attempts"), job.get("status"), job.get("max_attempts"))
        if self._story[0] != key:
            try:
                self._story = (key, self.queue.story(job))
            except Exception as exc:  # a display must not raise: shown without them
                log.info("mjq: the attempts of job %s could not be read: %r", job.id, exc)
                return None
        return self._story[1]

    # -- actions (the kernel's thread) --------------------------------------------------------

    def _ask(self, confirm: bool) -> None:
        """Show (or drop) the confirmation step of Cancel job."""
        self._confirming = confirm
        if self.cancel_job_button is None:  # read-only: no buttons
            return
        self.cancel_job_button.description = CONFIRM if confirm else CANCEL
        self.cancel_job_button.button_style = "danger" if confirm else ""
        _visible(self.keep_button, confirm)

    def _cancel(self, _button: Any = None) -> None:
        job = self._job
        if job is None or job.get("status") != "waiting":  # what the buttons offer, only
            return
        if not self._confirming and not self.steering.read_only:
            self._ask(True)
            self._say(f"cancel job {job.id}? It will never run. Confirm cancel to do it.")
            return
        self._ask(False)
        self._act(job, "cancel", self.steering.cancel, "is cancelled", "was no longer waiting")

    def _run_now(self, _button: Any = None) -> None:
        job = self._job
        if job is not None and job.get("status") == "waiting":
            self._act(
                job, "run now", self.steering.promote, "is due now", "was not delayed", "waiting"
            )

    def _release(self, _button: Any = None) -> None:
        job = self._job
        if job is not None and job.get("status") == "working" and self._worker_lost:
            # the document shown: only the attempt the user saw is ended
            self._act(
                job,
                "release",
                self.steering.reclaim,
                "is waiting again",
                "was no longer held by that attempt",
                "waiting",
            )

    def _requeue(self, _button: Any = None) -> None:
        if self._job is not None:
            self._act(
                self._job,
                "retry",
                self.steering.retry,
                "is waiting again",
                "was not failed",
                "waiting",
            )

    def _act(
        self,
        job: Job,
        name: str,
        call: Callable[[Any], bool],
        done: str,
        not_done: str,
        reached: str | None = None,
    ) -> None:
        """Do ``call(job)`` and say how it went; the message "job … {done}" holds while the
        job stays in the status it ``reached`` (the tail's ``say`` clears it when it moves)."""
        try:
            ok = call(job)
        except ReadOnlyError:
            self._say(refused(name))
            return
        except Exception as exc:  # shown, never raised into the notebook
            log.info("mjq: %s of job %s failed: %r", name, job.id, exc)
            self._say(f"{name} failed: {type(exc).__name__}")
            return
        if ok:
            self._say(f"job {job.id} {done}", (job.id, reached) if reached else None)
        else:
            self._say(f"job {job.id} {not_done}: nothing done")
        self._changed(job.id)


class RequeueAll:
    """ "Retry all failed…" and its confirmation row (``confirm_box``: the count, "Retry 12
    jobs", "Don't retry"). ``term()`` gives the tail's search (compiled); ``changed()``
    follows a retry. It goes through ``steering``; a read-only one gets no widgets (all None)."""

    def __init__(
        self,
        steering: Steering,
        say: Callable[[str], None],
        term: Callable[[], dict[str, Any]],
        changed: Callable[[], None],
    ) -> None:
        self.steering, self.queue = steering, steering.queue
        self._say, self._term, self._changed = say, term, changed
        self._pending: dict[str, Any] | None = None
        self.button = self.yes = self.no = None
        self.label = self.confirm_box = None
        if steering.read_only:
            return
        self.button = W.Button(
            description=RETRY_ALL,
            tooltip="run every failed job matching the filter again (asks to confirm)",
            layout=_FIT,
        )
        self.label = W.HTML()
        self.yes = W.Button(description=RETRY, button_style="danger", layout=_FIT)
        self.no = W.Button(description=DONT, layout=_FIT)
        self.confirm_box = W.HBox([self.label, self.yes, self.no], layout={"display": "none"})
        self.button.on_click(self._ask)
        self.yes.on_click(self._confirm)
        self.no.on_click(self.drop)

    def _ask(self, _button: Any = None) -> None:
        if (
            self.steering.read_only
            or self.label is None
            or self.confirm_box is None
            or not self.yes
        ):
            self._say(refused("retry all"))  # a read-only one has no confirmation row
            return
        term = self._term()
        try:
            if term:
                failed = self.queue.find({"$and": [term, {"status": "failed"}]}, limit=REQUEUE_SCAN)
                ids = [job.id for job in failed]
                query, count = {"_id": {"$in": ids}}, len(ids)
            else:
                query, count = None, self.queue.counts(warn=False)["failed"]
        except Exception as exc:  # shown, never raised into the notebook
            self._say(f"could not count the failed jobs: {type(exc).__name__}")
            return
        if not count:
            self._say("no failed jobs match this filter")
            return
        self._pending = {"query": query}
        plural = "job" if count == 1 else "jobs"
        self.label.value = f"<b>Retry {count:,} failed {plural} matching this filter?</b>"
        self.yes.description = f"Retry {count:,} {plural}"  # says what it does, and to how many
        self.confirm_box.layout.display = None

    def _confirm(self, _button: Any = None) -> None:
        pending = self._pending
        self.drop()
        if pending is None:
            return
        try:
            count = self.steering.retry_failed(pending["query"])
        except ReadOnlyError:
            self._say(refused("retry all"))
            return
        except Exception as exc:
            self._say(f"retry all failed: {type(exc).__name__}")
            return
        self._say(f"retried {count:,} failed job{'' if count == 1 else 's'}: waiting again")
        self._changed()

    def filtered(self, status: str | None) -> None:
        """The tail's filter changed to ``status`` (None: all): the button shows where failed
        jobs can, and a pending confirmation goes."""
        if self.button is not None:
            self.button.layout.display = None if status in (None, "failed") else "none"
        self.drop()

    def drop(self, _button: Any = None) -> None:
        """Hide the confirmation row (the filter changed, or "Don't retry")."""
        self._pending = None
        if self.confirm_box is not None:
            self.confirm_box.layout.display = "none"


def _visible(button: W.Widget | None, visible: bool) -> None:
    if button is None:  # read-only: not made
        return
    display = None if visible else "none"
    if button.layout.display != display:
        button.layout.display = display
