"""Inbound alert sources: each is one pure `parse(payload, headers, options) -> [ParsedEvent, ...]`, registered
in SOURCES.

Parsers never touch the database or the clock; anything they cannot read raises ParseError (400, kept as
`rejected`). Everything they return is already safe to store: strings are cleaned of NUL bytes and lone
surrogates (PostgreSQL refuses both), capped to column sizes, timestamps are sane and timezone-aware.
A body may carry several alerts (Alertmanager and Grafana send groups): one event each, applied in one transaction.
A new source is one module that imports its helpers from `base` (never from this package) and ends with its
`SPEC`, plus that SPEC's line in SOURCES.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from incidents.alert.sources import alertmanager, generic, grafana, jsm, opsgenie, pagerduty, rollbar, sentry
from incidents.alert.sources.base import (
    REDACTED,
    Kind,
    OptionsError,
    ParsedEvent,
    ParseError,
    SourceSpec,
    dig,
    fingerprint,
    http_link,
    obj,
    redact_keys,
    redact_text,
    scalar_text,
    tag,
    text,
    timestamp,
)

__all__ = ["REDACTED", "SOURCES", "Kind", "OptionsError", "ParseError", "ParsedEvent", "SourceSpec", "dig",
           "fingerprint", "http_link", "obj", "parse", "redact_keys", "redact_text", "scalar_text", "tag", "text",
           "timestamp"]

# The one registration of a source: its module's SPEC here. The Source enum, the webhook route, the CLI and the
# integrations page all read this dict.
SOURCES: dict[str, SourceSpec] = {spec.name: spec for spec in (
    opsgenie.SPEC, rollbar.SPEC, jsm.SPEC, alertmanager.SPEC, grafana.SPEC, sentry.SPEC, pagerduty.SPEC,
    generic.SPEC)}


def parse(source: str, payload: Any, headers: Mapping[str, str] | None = None,
          options: Mapping[str, Any] | None = None) -> list[ParsedEvent]:
    """Dispatch to the source's parser: the events of one delivery, at least one. A non-object payload is
    unreadable for every source; `headers` are the request's, with lower-case names."""
    if not isinstance(payload, dict):
        raise ParseError(f"Expected a JSON object, got {type(payload).__name__}.")
    events = SOURCES[source].parse(payload, headers or {}, options or {})
    if not events:
        raise ParseError(f"The {source} body holds no alert.")
    return list(events)
