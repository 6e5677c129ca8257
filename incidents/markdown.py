"""The one Markdown renderer: Markdown to HTML, then nh3 keeps only safe tags and attributes."""

import re
import threading
from urllib.parse import urlsplit

import markdown as md
import nh3
from flask import current_app, has_app_context
from markupsafe import Markup

from incidents.urls import public_base_url

_EXTENSIONS = ["extra", "sane_lists", "nl2br"]
_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "div", "dl", "dt", "em", "h1", "h2", "h3",
    "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "s", "span", "strong", "sub", "sup",
    "table", "tbody", "td", "th", "thead", "tr", "ul",
}
_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "th": {"align"}, "td": {"align"}}
_HOST = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?")


_local = threading.local()


def _converter() -> md.Markdown:
    """One converter per thread: building one loads every extension, which costs more than converting."""
    converter = getattr(_local, "converter", None)
    if converter is None:
        converter = _local.converter = md.Markdown(extensions=_EXTENSIONS, output_format="html")
    return converter


def image_hosts(config) -> tuple[str, ...]:
    """MARKDOWN_IMAGE_HOSTS, checked: host names (with an optional port) that Markdown may load images from."""
    hosts = config.get("MARKDOWN_IMAGE_HOSTS") or []
    if isinstance(hosts, str):
        hosts = [h for h in hosts.replace(",", " ").split() if h]
    hosts = tuple(str(h).strip().lower() for h in hosts)
    for host in hosts:
        if not _HOST.fullmatch(host):
            raise ValueError(f"MARKDOWN_IMAGE_HOSTS: {host!r} is not a host name (like images.example.com)")
    return hosts


def _allowed_origins() -> frozenset[str]:
    """Origins of absolute image URLs that may load: the configured hosts over https, and this site itself."""
    if not has_app_context():
        return frozenset()
    origins = {f"https://{host}" for host in image_hosts(current_app.config)}
    base = urlsplit(public_base_url())
    if base.scheme and base.netloc:
        origins.add(f"{base.scheme}://{base.netloc}".lower())
    return frozenset(origins)


def _image_filter(origins: frozenset[str]):
    """nh3's attribute filter: an <img> keeps its src only for this site or an allowed host (no tracking pixels)."""
    def keep(tag: str, attribute: str, value: str) -> str | None:
        if tag != "img" or attribute != "src":
            return value
        src = value.strip()
        if "\\" in src or any(ord(c) < 0x20 for c in src):
            return None  # browsers read "\" as "/" and drop tabs and newlines: "/\host" is another host
        parts = urlsplit(src)
        if not parts.scheme and not parts.netloc:
            return value  # relative: this site
        return value if f"{parts.scheme}://{parts.netloc}".lower() in origins else None
    return keep


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
        # Only when there is an image to judge: a Python callback per attribute costs more than the check.
        attribute_filter=_image_filter(_allowed_origins()) if "<img" in html.lower() else None,
    )
    return Markup(clean)  # noqa: S704 - sanitised by nh3 just above
