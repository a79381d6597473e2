"""Hostile strings for every place that shows data, names or errors, and the checks that
what shows them keeps them text: in HTML fragments, and in the HTML widgets of a view."""

from __future__ import annotations

from html.parser import HTMLParser

import ipywidgets as widgets

# Each breaks out of an element or a quoted attribute in its own way.
XSS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    "' onmouseover='alert(1)",
    "\"'><svg onload=alert(1)>",
    "'><img src=x onerror=alert(1)>",
]
# All of them in one value, for a field whose text a test compares whole.
XSS_IN_ONE = '<script>alert("x")</script><img src=x onerror=alert(1)>"\'><b>'

OUR_TAGS = {"div", "style", "span", "b", "code", "dl", "dt", "dd", "details", "summary", "pre",
            "table", "thead", "tbody", "tr", "th", "td"}  # fmt: skip
OUR_ATTRIBUTES = {"class", "title", "style", "rowspan", "data-state"}  # values: fixed sets


class _Markup(HTMLParser):
    """Every tag and attribute name in a fragment, and its text."""

    def __init__(self, fragment: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.text: list[str] = []
        self.feed(fragment)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)
        self.styling = tag == "style"

    def handle_endtag(self, tag):
        self.styling = False

    def handle_data(self, data):
        if not getattr(self, "styling", False):
            self.text.append(data)


def assert_inert(fragment: str) -> str:
    """No tag or attribute the display did not write itself; returns the visible text."""
    markup = _Markup(fragment)
    assert markup.tags <= OUR_TAGS, markup.tags - OUR_TAGS
    assert markup.attributes <= OUR_ATTRIBUTES, markup.attributes - OUR_ATTRIBUTES
    lowered = fragment.lower()
    for tag in ("<script", "<img", "<svg"):
        assert tag not in lowered, tag
    return "".join(markup.text)


def html_values(widget: widgets.Widget) -> list[str]:
    """The value of every HTML widget in ``widget``'s tree (what a browser renders as HTML)."""
    values = []
    if isinstance(widget, (widgets.HTML, widgets.HTMLMath)):
        values.append(widget.value)
    for child in getattr(widget, "children", ()):
        values.extend(html_values(child))
    for name in ("tail", "publisher"):  # composite widgets the dashboard holds
        inner = getattr(widget, name, None)
        if isinstance(inner, widgets.Widget) and inner is not widget:
            values.extend(html_values(inner))
    return values


def assert_escaped(widget: widgets.Widget) -> None:
    """No payload of XSS stands unescaped in any HTML ``widget`` renders."""
    for value in html_values(widget):
        for payload in [*XSS, XSS_IN_ONE]:
            assert payload not in value
