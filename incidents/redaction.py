"""What of an inbound body or header may be stored: text cleaned of what PostgreSQL refuses, secrets redacted.

Shared by every webhook (alert sources, Shortcut) and pure: no Flask, no database, no domain."""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None  # payload keys repeat endlessly: remember the answer


def redact_keys(payload: Any) -> bool:
    """Replace the values of secret-looking keys in place, at any depth; True if anything was replaced.

    Iterative, because JSON nested close to the parser's depth limit would overflow a recursive walk."""
    found = False
    stack = [payload]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if (isinstance(value, str | int | float) and isinstance(key, str) and _is_secret_key(key)
                        and value not in ("", REDACTED)):
                    node[key] = REDACTED
                    found = True
                    continue
                if isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, dict | list))
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
