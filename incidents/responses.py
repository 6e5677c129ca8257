"""HTTP rules every domain's views share: where a redirect may lead, and which pages a browser must not keep."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import make_response


def safe_next(target: str | None, fallback: str) -> str:
    """`target` when it is a path on this site, else `fallback`: a next= or back= parameter never leaves the site.

    Browsers read a backslash as a slash and drop tabs and line breaks, so "/\\evil.example" or "/\\t/evil.example"
    would be "//evil.example", another host: any of those characters refuses the target."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return fallback
    if "\\" in target or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target):
        return fallback
    parts = urlsplit(target)
    return fallback if parts.scheme or parts.netloc else target


def no_store(rv):
    """The response (any view return value) with Cache-Control: no-store, for pages showing a secret once."""
    response = make_response(rv)
    response.headers["Cache-Control"] = "no-store"
    return response
