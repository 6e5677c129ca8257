"""The one Markdown renderer: Markdown to HTML, then nh3 keeps only safe tags and attributes."""

import threading

import markdown as md
import nh3
from markupsafe import Markup

_EXTENSIONS = ["extra", "sane_lists", "nl2br"]
_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "div", "dl", "dt", "em", "h1", "h2", "h3",
    "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "s", "span", "strong", "sub", "sup",
    "table", "tbody", "td", "th", "thead", "tr", "ul",
}
_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "th": {"align"}, "td": {"align"}}


_local = threading.local()


def _converter() -> md.Markdown:
    """One converter per thread: building one loads every extension, which costs more than converting."""
    converter = getattr(_local, "converter", None)
    if converter is None:
        converter = _local.converter = md.Markdown(extensions=_EXTENSIONS, output_format="html")
    return converter


def render_markdown(text: str | None) -> Markup:
    """Render untrusted Markdown to HTML that is safe to put in a page."""
    if not text:
        return Markup("")
    html = _converter().reset().convert(text)
    clean = nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
    return Markup(clean)  # noqa: S704 - sanitised by nh3 just above
