"""``Lifecycle``: the shown/closed life cycle every widget here shares.

A widget made of ipywidgets boxes has three moments to get right, and each widget would
otherwise write them itself:

- ``close()`` runs once: it stops the widget's background work, closes every widget in its
  tree (a nested ``Lifecycle`` widget closes itself), then the widget.
- ``Widget.__del__`` calls ``close()`` on a widget whose ``__init__`` failed half-way; that
  close must not trip over the attributes ``__init__`` never made. Until ``_opened()`` (the
  end of ``__init__``) a close closes only the widget's own comm.
- A live widget whose last view goes (its cell re-run or cleared) stops following the queue,
  and follows it again when shown once more: ``_follow_views`` has the front end count the
  views; ``_no_longer_shown`` and ``_shown_again`` run as the count reaches and leaves zero.

And one moment after the kernel is gone: the output keeps a static HTML snapshot beside the
widget (``_snapshot_html``), which front ends that can't show the widget show instead:
GitHub, nbviewer, nbconvert, and JupyterLab/Notebook 7 for a notebook that is not trusted.
A trusted notebook in Lab or Notebook 7 still says "model not found": their widget renderer
is always chosen first and has no fallback (unless Settings > Save Widget State
Automatically kept the widgets' last state in the notebook).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ipywidgets as widgets


class Lifecycle:
    """Mixin for an ipywidgets ``Box`` subclass; list it first: ``class Tail(Lifecycle, VBox)``.

    Subclasses call ``_opened()`` once ``__init__`` has made everything ``close()`` closes,
    and override ``_halt`` (stop background work, on close); live widgets also call
    ``_follow_views`` and override ``_no_longer_shown`` and ``_shown_again``.
    """

    _life = "building"  # a class default: "building" until _opened(), then "open", "closed"

    @property
    def _closed(self) -> bool:
        """True before ``__init__`` finished and after ``close()``: do nothing live then."""
        return self._life != "open"

    def _opened(self) -> None:
        """The end of ``__init__``: from here ``close()`` closes everything."""
        if self._life == "building":
            self._life = "open"

    def _follow_views(self, widget: widgets.Widget | None = None) -> None:
        """Have the front end count the views of ``widget`` (default: this one), and call
        ``_no_longer_shown()`` when the last goes, ``_shown_again()`` when one comes back."""
        watched: Any = self if widget is None else widget
        watched._view_count = 0
        watched.observe(self._views_changed, names="_view_count")

    def _views_changed(self, change: dict[str, Any]) -> None:
        old, new = change["old"] or 0, change["new"] or 0
        if self._closed:
            return
        if old > 0 and new == 0:
            self._no_longer_shown()
        elif new > 0 and old == 0:
            self._shown_again()

    def _no_longer_shown(self) -> None:
        """No view shows the widget any more: stop background work (keep what it shows)."""

    def _shown_again(self) -> None:
        """A view shows the widget again after ``_no_longer_shown()``."""

    def _snapshot_html(self) -> str | None:
        """Static HTML of what the widget shows now, for front ends without the widget."""
        return None

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any] | None:
        bundle = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]  # the ipywidgets class after this mixin
        if bundle and not self._closed:
            snapshot = self._snapshot_html()
            if snapshot:
                bundle["text/html"] = snapshot
        return bundle

    def _halt(self) -> None:
        """``close()``: stop background work and forget callbacks, before the parts close."""

    def close(self) -> None:
        """Stop what the widget runs and close it with every widget it is made of."""
        if self._life == "closed":
            return
        built, self._life = self._life == "open", "closed"
        if built:
            self._halt()
            for part in _parts(self):
                part.close()
        super().close()  # type: ignore[misc]  # the ipywidgets class after this mixin


def _parts(widget: widgets.Widget) -> Iterator[widgets.Widget]:
    """Every widget in ``widget``'s tree, deepest first; a ``Lifecycle`` widget's own parts
    are left to its ``close()``."""
    for child in getattr(widget, "children", ()):
        if not isinstance(child, Lifecycle):
            yield from _parts(child)
        yield child
