"""HTML (and a little plain text) for jobs, lists of jobs, queues and summary tables.

This module is the display layer's one import path (``from .notebook.display import
job_html``, ``from ..display import escape``); the code lives in four modules beside it:

- ``formatting``: plain text: one-line data previews, the one row builder of job lists
  (durations, times and "ago" come from ``mjq_notebook.text``);
- ``markup``: ``escape``, the stylesheet (``_static/display.css``), badges and counts;
- ``job_detail``: one job (``job_html``);
- ``tables``: job lists, a queue's view and summary tables.

Every value that comes from a job (data, result, error, ids, worker names; keys as well as
values) goes through ``escape``; class names are only ever chosen from fixed sets. One small
stylesheet travels with every fragment: its ``--mjq-*`` variables fall back to JupyterLab's
``--jp-*`` ones, with dark values for JupyterLab, Notebook and VS Code dark themes.
Collapsible parts are plain ``<details>``: no JavaScript, so saved notebooks and static
viewers show the same thing. Nothing here imports IPython, and pandas only to show a summary.
"""

from __future__ import annotations

from .audit_table import audit_html, audit_text
from .errors_table import errors_html, errors_text
from .formatting import data_preview, job_cells, job_list_text, live_cell
from .job_detail import job_html
from .markup import LOST_EXPLAINED, counts_html, escape, status_badge, stylesheet
from .queues_html import queues_html
from .tables import job_list_html, queue_html, summary_html
from .workers_html import workers_html

STYLE = stylesheet()  # the <style> block every fragment includes, from _static/display.css

__all__ = [
    "LOST_EXPLAINED",
    "STYLE",
    "audit_html",
    "audit_text",
    "counts_html",
    "data_preview",
    "errors_html",
    "errors_text",
    "escape",
    "job_cells",
    "job_html",
    "job_list_html",
    "job_list_text",
    "live_cell",
    "queue_html",
    "queues_html",
    "status_badge",
    "stylesheet",
    "summary_html",
    "workers_html",
]
