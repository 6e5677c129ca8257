"""What of an inbound body or header may be stored: text cleaned of what PostgreSQL refuses, secrets redacted.

Shared by every webhook (alert sources, Shortcut) and pure: no Flask, no database, no domain."""

from __future__ import annotations

import re
from typing import Any

_BAD_CHARS = re.compile(r"[\x00\ud800-\udfff]")
_SECRET_KEY = re.compile(r"access_?token|api_?key|secret|password|passwd|authorization|cookie|token", re.I)
REDACTED = "[redacted]"


def text(value: Any, limit: int) -> str:
    """A string field, or "" when absent or not a string; cleaned and capped."""
    if not isinstance(value, str):
        return ""
    return _BAD_CHARS.sub("\ufffd", value).strip()[:limit]


def _is_secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None


# Payload keys repeat endlessly (every delivery of a source has the same ones): the answer per key, remembered in
# a plain dict, which a walk reads far faster than through lru_cache's wrapper. Bounded: keys are the sender's.
_SECRET_KEYS: dict[str, bool] = {}
_KNOWN_KEYS = 4096
_SCALAR = (str, int, float)
_CONTAINER = (dict, list)


def redact_keys(payload: Any) -> bool:
    """Replace the values of secret-looking keys in place, at any depth; True if anything was replaced.

    Iterative, because JSON nested close to the parser's depth limit would overflow a recursive walk. It runs on
    every delivery's whole body, so the key is judged first (one dict look-up) and tuples serve isinstance."""
    found = False
    known = _SECRET_KEYS
    stack = [payload]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                secret = known.get(key) if isinstance(key, str) else False
                if secret is None:
                    secret = _is_secret_key(key)
                    if len(known) < _KNOWN_KEYS:
                        known[key] = secret
                if secret and isinstance(value, _SCALAR) and value not in ("", REDACTED):
                    node[key] = REDACTED
                    found = True
                elif isinstance(value, _CONTAINER):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, _CONTAINER))
    return found


# A secret-looking key and its value in a body that is not JSON we could read (truncated, too deep, another
# format): "key": "value" / "key": 123 and key=value. Keys are bounded, so the scan stays linear on any input.
_TEXT_PAIR = re.compile(r'"((?:[^"\\\n]|\\.){1,200})"(\s*:\s*)("(?:[^"\\]|\\.)*"|[-+.\w]+)'
                        r'|(?<![\w.-])([\w.-]{1,200})(=)([^&\s"]*)')


def redact_text(body: str) -> str:
    """`body` with the values of secret-looking keys replaced, for bodies redact_keys cannot walk."""
    def hide(m: re.Match) -> str:
        key, sep, value = (m.group(1), m.group(2), m.group(3)) if m.group(1) else (m.group(4), m.group(5), m.group(6))
        if not _is_secret_key(key) or value in ("", '""', f'"{REDACTED}"', REDACTED):
            return m.group(0)
        return f'"{key}"{sep}"{REDACTED}"' if m.group(1) else f"{key}{sep}{REDACTED}"
    return _TEXT_PAIR.sub(hide, body)
