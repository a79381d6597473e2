"""The HTML pieces every display fragment shares: ``escape``, the packaged stylesheet
(``_static/display.css``), the ``<div class="mjq">`` wrapper, status badges and counts."""

from __future__ import annotations

import functools
import html
import importlib.resources
import re
from collections.abc import Mapping
from typing import Any

from ..core.job import STATUSES

LOST_EXPLAINED = (
    "jobs evicted from the capped collection before they finished: the ring is too small "
    "for the backlog (grow it: q.resize(), `mjq resize`)"
)


def escape(value: Any) -> str:
    """``value`` as text that HTML shows as written: ``str()``, then ``html.escape`` with
    quotes escaped too, so the result is safe in element text and in quoted attributes."""
    return html.escape(str(value), quote=True)


@functools.cache
def stylesheet() -> str:
    """The ``<style>`` block every fragment includes: ``_static/display.css``, read once from
    the installed package, without its comments and spare white space."""
    static = importlib.resources.files(__package__).joinpath("_static")
    css = static.joinpath("display.css").read_text(encoding="utf-8")
    return f"<style>{_minify(css)}</style>"


def _minify(css: str) -> str:
    """Comments out, white space folded, none around ``{ } ; : , >`` (notebooks store every
    output, so the stylesheet travels with each one)."""
    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    css = re.sub(r"\s+", " ", css)
    return re.sub(r" ?([{};:,>]) ?", r"\1", css).strip()


def wrap(body: str) -> str:
    """A fragment as it is shown: ``body`` in a ``<div class="mjq">`` with the stylesheet."""
    return f'<div class="mjq">{stylesheet()}{body}</div>'


def status_badge(status: Any) -> str:
    """A coloured pill with the status name (escaped); unknown statuses are grey."""
    name = str(status)
    kind = name if name in (*STATUSES, "lost") else "other"
    return f'<span class="mjq-badge mjq-s-{kind}">{escape(name)}</span>'


def counts_html(counts: Mapping[str, int]) -> str:
    """Badges "waiting 3", "done 120", …; a non-zero ``lost`` count in a warning colour with
    a visible line saying what it means (a title alone is lost in saved notebooks). ``lost``
    and ``cancelled`` show only when there are some (rare, and a badge more would wrap the
    dashboard's counters onto a second line)."""
    badges = []
    for name, number in counts.items():
        if name in _ONLY_IF_ANY and not number:
            continue
        text = f"{escape(name)} {_count(number)}"
        kind = name if name in (*STATUSES, "lost") else "other"
        title = f' title="{escape(LOST_EXPLAINED)}"' if name == "lost" else ""
        badges.append(f'<span class="mjq-badge mjq-s-{kind}"{title}>{text}</span>')
    line = f'<span class="mjq-head" style="margin:0">{" ".join(badges)}</span>'
    lost = counts.get("lost") or 0
    if lost:
        line += f'<div class="mjq-warn">⚠ {_count(lost)} lost: {escape(LOST_EXPLAINED)}</div>'
    return line


_ONLY_IF_ANY = ("lost", "cancelled")


def _count(number: Any) -> str:
    return f"{number:,}" if isinstance(number, int) else escape(number)
