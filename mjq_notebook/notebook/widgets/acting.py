"""Who acts through a widget: the ``Steering`` every action of a widget goes through (so it
is recorded in the queue's audit), the "read-only" note a viewer's widgets show in place of
their action controls, and the line a refused action shows.

``actor=None`` means the person at this notebook (``Actor.here("notebook")``); a page's kernel
passes ``Actor.page()``. A read-only actor's widgets build no action control at all, and a
handler reached anyway goes to a Steering that refuses (``ReadOnlyError``) before touching
the queue.
"""

from __future__ import annotations

from ...core.audit import Actor
from ..markup import escape

READ_ONLY_TEXT = "you can see everything here and change nothing"


def actor_or_here(actor: Actor | None) -> Actor:
    """``actor``, or the person at this notebook when None."""
    return Actor.here("notebook") if actor is None else actor


def refused(action: str) -> str:
    """What a read-only widget says when an action reaches it anyway."""
    return f"read-only: can't {action}"


def read_only_html(actor: Actor) -> str:
    """The badge and the line a read-only widget shows where its actions would be."""
    why = "this page was opened with the viewer's token" if actor.via == "page" else (
        f"its actor is a {actor.role}"
    )  # fmt: skip
    tip = f"{READ_ONLY_TEXT}: {why}"
    return (
        f"<span class='mjq-badge mjq-s-paused mjq-read-only' title='{escape(tip)}'>read-only"
        f"</span> <span class='mjq-dim' style='font-size:11px'>{escape(tip)}</span>"
    )
