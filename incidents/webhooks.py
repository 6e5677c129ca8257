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
