"""Edit and retry, in a failed job's detail: "Edit and retry" opens a JSON editor filled with
the job's data (as the publish form shows JSON), "Retry with this data" runs the job again
with what it holds (``q.retry(job, data=...)`` through the widget's ``Steering``, so the audit
says who; the data it had stays in the job's story). The editor is checked as the publish
form checks it (``publisher.check_json``: the same messages), and nothing is written while it
is invalid. A read-only viewer gets none of it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import ipywidgets as W

from ...errors import PublishError, ReadOnlyError
from ..markup import escape
from .acting import refused
from .publisher import _ERROR, _pretty, check_json

if TYPE_CHECKING:
    from ...core.audit import Steering

log = logging.getLogger("mjq_notebook")

_FIT = {"width": "auto"}
_MONOSPACE = (
    "<style>.mjq-edit-data textarea{font-family:var(--jp-code-font-family,monospace);"
    "font-size:var(--jp-code-font-size,13px)}</style>"
)
OPEN = "Edit and retry"
RETRY = "Retry with this data"


class EditRetry:
    """``button`` (shown for a failed job) and ``box`` (the editor, its buttons and the
    line saying what is wrong); both None for a read-only ``steering``. ``say`` reports the
    outcome on the tail's message line; ``changed(job_id)`` follows a retry."""

    def __init__(
        self, steering: Steering, say: Callable[[str], None], changed: Callable[[Any], None]
    ) -> None:
        self.steering, self._say, self._changed = steering, say, changed
        self._job: Mapping[str, Any] | None = None
        self.button = self.box = self.editor = self.retry_button = self.problem = None
        if steering.read_only:
            return
        self.button = W.Button(
            description=OPEN,
            icon="edit",
            tooltip="change this failed job's data and run it again (its old data is kept "
            "in its story)",
            layout={"display": "none", **_FIT},
        )
        self.editor = W.Textarea(layout={"width": "100%", "height": "8em"})
        self.editor.add_class("mjq-edit-data")  # not the publish form's "mjq-editor"
        self.retry_button = W.Button(
            description=RETRY, icon="redo", layout=_FIT, button_style="warning"
        )
        self.close_button = W.Button(description="Close", layout=_FIT)
        self.problem = W.HTML()
        buttons = W.HBox([self.retry_button, self.close_button])
        parts = [W.HTML(_MONOSPACE), self.editor, buttons, self.problem]
        self.box = W.VBox(parts, layout={"display": "none"})
        self.button.on_click(self.open)
        self.retry_button.on_click(self.retry)
        self.close_button.on_click(lambda _b: self.close())
        self.editor.observe(self._check, "value")

    def show(self, job: Mapping[str, Any] | None) -> None:
        """The button for ``job`` as shown now; the editor closes when the job changes or is
        no longer failed (it was retried, by someone else too)."""
        failed = job is not None and job.get("status") == "failed"
        same = job is not None and self._job is not None and job.get("_id") == self._job.get("_id")
        if not (same and failed):
            self.close()
        self._job = job
        if self.button is not None:
            display = None if failed else "none"
            if self.button.layout.display != display:
                self.button.layout.display = display

    def open(self, _button: Any = None) -> None:
        """The editor, filled with the job's data as indented JSON."""
        if self.editor is None or self.box is None or self._job is None:
            return
        self.editor.value, _ = _pretty(self._job.get("data"))
        self._check()
        self.box.layout.display = None

    def close(self) -> None:
        if self.box is not None and self.box.layout.display != "none":
            self.box.layout.display = "none"

    def _check(self, _change: Any = None) -> str:
        """What is wrong with the editor's JSON ("" when nothing), shown under it."""
        if self.editor is None or self.problem is None or self.retry_button is None:
            return ""
        _, problem = check_json(self.editor.value)
        self._show(problem)
        self.retry_button.disabled = bool(problem)
        return problem

    def _show(self, problem: str) -> None:
        if self.problem is not None:
            shown = f"<pre style='{_ERROR};margin:0'>{escape(problem)}</pre>" if problem else ""
            self.problem.value = shown

    def retry(self, _button: Any = None) -> None:
        """Retry the job with the editor's data; nothing written while it is invalid."""
        job = self._job
        if job is None or self.editor is None:
            return
        data, problem = check_json(self.editor.value)
        if problem:
            self._show(problem)
            return
        try:
            ok = self.steering.retry_with(job, data)
        except ReadOnlyError:
            self._say(refused("edit and retry"))
            return
        except PublishError as exc:
            self._show(str(exc))
            return
        except Exception as exc:  # shown, never raised into the notebook
            log.info("mjq: edit and retry of job %s failed: %r", job.get("_id"), exc)
            self._say(f"edit and retry failed: {type(exc).__name__}")
            return
        job_id = job.get("_id")
        if ok:
            self.close()
            self._say(f"job {job_id} is waiting again with the new data")
        else:
            self._say(f"job {job_id} was not failed: nothing done")
        self._changed(job_id)
