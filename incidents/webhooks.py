"""Plumbing every inbound webhook shares (alert sources, Shortcut): the `/webhooks` blueprint and what of a
delivery is stored (redacted body, safe headers, the error of a failed one). Imports no domain."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint

from incidents.extensions import csrf
from incidents.redaction import redact_keys, redact_text, text

# Each domain adds its own route (alert: /<source>, tracker: /shortcut); web.py registers it after importing them.
hooks = Blueprint("webhooks", __name__, url_prefix="/webhooks")
csrf.exempt(hooks)  # senders authenticate with a token or a signature, never a session cookie

SAFE_HEADERS = ("Content-Type", "Content-Length", "User-Agent", "X-Forwarded-For", "X-Request-Id")


def lowercase_headers(environ: dict) -> dict[str, str]:
    """The request's headers by lower-case name, as werkzeug's `EnvironHeaders` lists them (HTTP_* entries, and
    a non-empty Content-Type and Content-Length), read from the WSGI environ in one pass: werkzeug title-cases
    every name on each pass."""
    found = {key[5:].replace("_", "-").lower(): value for key, value in environ.items()
             if key.startswith("HTTP_") and key not in _BODY_HEADERS_AS_HTTP}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            found[key.replace("_", "-").lower()] = environ[key]
    return found


_BODY_HEADERS_AS_HTTP = frozenset({"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"})


def describe_error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:2000]


def safe_headers(headers, remote_addr: str | None, extra: tuple[str, ...] = ()) -> dict:
    """Only headers that help debugging and carry no secret (never the token, cookies or Authorization), and the
    `extra` ones a sender's parser reads (its event type), so that a replay reads them too."""
    kept = {name: text(headers.get(name), 300) for name in (*SAFE_HEADERS, *extra) if headers.get(name)}
    if remote_addr:
        kept["Remote-Addr"] = text(remote_addr, 64)
    return kept


def stored_body(raw: bytes, payload: Any = None, redact: Callable[[dict], bool] = redact_keys) -> str:
    """The text kept for inspection, secrets redacted whatever the outcome (processed, rejected, failed): a JSON
    payload goes through `redact` (a source's own, for objects) and is re-serialised when that found anything;
    a body that is not readable JSON keeps its text with the values of secret-looking keys blanked.

    `payload` is redacted in place: parse it first."""
    if isinstance(payload, dict | list):
        found = redact(payload) if isinstance(payload, dict) else redact_keys(payload)
        if found:
            return json.dumps(payload, ensure_ascii=True)
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        body = json.dumps(payload, ensure_ascii=True) if payload is not None else raw.decode("utf-8", "replace")
    if not isinstance(payload, dict | list):
        body = redact_text(body)
    return body.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL
