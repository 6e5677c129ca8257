"""The one parser of JSON from outside (API bodies, webhook deliveries, JSON typed into forms).

A document nested deeper than MAX_DEPTH is refused like any invalid JSON (a ValueError): nesting close to the
interpreter's recursion limit makes `json.loads` raise RecursionError, and even a document it can read would
make every later recursive step (serialising, validating, rendering) fail instead: a 500 from input."""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 100  # real payloads (Rollbar occurrences with their frames) stay far below it


class TooDeep(ValueError):
    """The document is nested deeper than MAX_DEPTH."""

    def __init__(self, limit: int = MAX_DEPTH):
        super().__init__(f"The JSON is nested deeper than {limit} levels.")


def loads(raw: str | bytes, *, max_depth: int = MAX_DEPTH, **kwargs) -> Any:
    """`json.loads(raw, **kwargs)`, raising TooDeep (a ValueError) beyond `max_depth` levels of arrays/objects."""
    try:
        data = json.loads(raw, **kwargs)
    except RecursionError:
        raise TooDeep(max_depth) from None
    if _openings(raw) > max_depth and depth(data) > max_depth:
        raise TooDeep(max_depth)
    return data


def _openings(raw: str | bytes) -> int:
    """How many `[` and `{` the text holds: a bound on its depth, counted at C speed, so that walking the parsed
    document (most of a webhook delivery's parsing time) is needed only for a text with more than the limit."""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{")
    return raw.count(b"[") + raw.count(b"{")


def depth(value: Any) -> int:
    """Levels of nested arrays and objects (a scalar is 0); iterative, so any depth is measured safely."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest
