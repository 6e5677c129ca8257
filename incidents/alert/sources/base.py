"""What every alert source shares: the normalised event a parser returns, ParseError, and the helpers that make
a sender's fields safe to store (cleaned strings, sane timestamps, only http(s) links, redacted secrets)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from incidents.redaction import REDACTED, redact_keys, redact_text, text  # noqa: F401  (the parsers' shared cleaning)


class ParseError(ValueError):
    """The payload is JSON but not a shape this source sends; the message says what is missing."""


class OptionsError(ValueError):
    """An integration option a source checks itself (the generic source's mapping) is invalid: `fields` names
    each bad part ({"mapping.title": ["Required."]}), the message says it all in one line."""

    def __init__(self, message: str, fields: dict[str, list[str]]):
        super().__init__(message)
        self.fields = fields


class Kind(StrEnum):
    TRIGGER = "trigger"  # a new problem (OpsGenie Create, Rollbar new_item): upsert, counts as an occurrence
    REPEAT = "repeat"  # another occurrence (Rollbar occurrence, exp_repeat_item, item_velocity)
    REACTIVATE = "reactivate"  # Rollbar reactivated_item / reopened_item
    ACKNOWLEDGE = "acknowledge"
    UNACKNOWLEDGE = "unacknowledge"
    NOTE = "note"
    CLOSE = "close"  # OpsGenie Close / Delete, Rollbar resolved_item
    INFO = "info"  # known actions that only annotate an existing alert (tags, owner, team ...)
    ESCALATE = "escalate"  # OpsGenie Escalate: only alertId is known
    PRIORITY = "priority"  # OpsGenie/JSM UpdatePriority: the open alert's severity becomes the event's `severity`
    DEPLOY = "deploy"
    IGNORE = "ignore"  # a test event or an unknown action/event name: stored, answered 2xx, nothing else


@dataclass(frozen=True)
class ParsedEvent:
    source: str
    event: str  # the sender's action / event name, as sent (cleaned)
    kind: Kind
    fingerprint: str | None = None
    external_id: str | None = None
    title: str = ""
    description: str = ""
    severity: str | None = None
    environment: str | None = None
    link: str | None = None
    occurred_at: datetime | None = None
    bump: bool = False  # counts as one more occurrence of the alert
    dedup_key: str | None = None  # identity of this delivery when the source has one (else: body hash)
    actor: str | None = None
    note: str | None = None
    reason: str = ""  # why an IGNORE was ignored, or a one-line summary of INFO/ESCALATE
    deploy: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()  # labels as "key:value" or plain words, cleaned with `tag`
    # The firing episode this event belongs to, when the sender re-sends the same one (Alertmanager's startsAt):
    # a repeat of the alert's current episode moves last-seen without counting another occurrence.
    occurrence: str | None = None


# Timestamps outside this window are treated as absent: they come from broken clocks or hostile input.
_MIN_TS = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
_MAX_TS = datetime(2200, 1, 1, tzinfo=UTC).timestamp()


def scalar_text(value: Any, limit: int) -> str:
    """Like text(), but also accepts ints (ids arrive as either)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)[:limit]
    return text(value, limit)


def dig(payload: Any, *path: str) -> Any:
    """payload[a][b]... or None when any step is missing or not an object."""
    for key in path:
        if not isinstance(payload, dict):
            return None
        payload = payload.get(key)
    return payload


def obj(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def timestamp(value: Any, unit: float = 1.0) -> datetime | None:
    """Epoch number in `unit` seconds (1e-3 for ms, 1e-9 for ns) to aware UTC; None if absent or absurd."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = value * unit
        if not (_MIN_TS <= seconds <= _MAX_TS):
            return None
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, ValueError, OSError):
        return None


_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def rfc3339(value: Any) -> datetime | None:
    """An RFC 3339 time (nanoseconds allowed, cut to microseconds) as aware UTC; None when absent, malformed,
    without an offset or absurd, which includes Go's zero time "0001-01-01T00:00:00Z" (Alertmanager's "not set")."""
    match = _RFC3339.fullmatch(text(value, 64))
    if match is None:
        return None
    date, clock, fraction, zone = match.groups()
    zone = "+00:00" if zone in ("Z", "z") else zone
    try:
        parsed = datetime.fromisoformat(f"{date}T{clock}{(fraction or '')[:7]}{zone}")
    except ValueError:
        return None
    return parsed.astimezone(UTC) if timestamp(parsed.timestamp()) else None


_TAG_CHARS = re.compile(r"[^\w.:/-]+")


def tag(key: Any, value: Any = None) -> str | None:
    """A label as an incident tag ("severity:critical", or "critical" alone): lower-case, other characters as
    "-", at most 50 (the incident's tag rule); None when nothing is left."""
    raw = text(key, 200) if value is None else f"{text(key, 100)}:{text(value, 100)}"
    cleaned = _TAG_CHARS.sub("-", raw.strip().lower()).strip("-")[:50]
    return cleaned or None


def http_link(value: Any) -> str | None:
    """Only http(s) links are kept: anything else (javascript:, data:) would be a stored XSS in the UI."""
    link = text(value, 1000)
    return link if link.lower().startswith(("https://", "http://")) and " " not in link else None


def fingerprint(value: str) -> str:
    """Fingerprints longer than the column are hashed, so two long aliases never collide by truncation."""
    if len(value) <= 255:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


# parse(payload, headers, options): headers with lower-case names; options are the integration's settings
# ({"site_url": ..., "severity_label": ...}). One ParsedEvent per alert in the body, at least one.
Parser = Callable[[dict, Mapping[str, str], Mapping[str, Any]], list[ParsedEvent]]
# verify(raw, headers, secret, now): None when the signature is valid, else the reason it is not.
Verifier = Callable[[bytes, Mapping[str, str], str, float], str | None]


@dataclass(frozen=True)
class SourceSpec:
    """Everything the app knows of a source: its name in URLs and the database, how people call it, what its
    users set up in the sender, its pure functions and the rules that apply when an integration has none."""

    name: str
    label: str
    setup: str  # for the CLI and the integrations page: where the URL goes in the sender, which headers to set
    parse: Parser
    redact: Callable[[dict], bool]
    verify: Verifier | None = None  # for senders that sign their requests with the integration's secret
    default_rules: list[dict] = field(default_factory=list)  # same shape as an integration's rules
    signed: bool = False  # the integration cannot work without a secret (refused at creation)
    # Request headers `parse` reads (an event type, say): kept with the delivery so that a replay reads them too.
    keep_headers: tuple[str, ...] = ()
    # The sender re-sends the same body on purpose (Alertmanager's repeat interval): an identical body is then not
    # a retry to drop; the events' episodes (`occurrence`) keep the counts right instead.
    resends: bool = False
    # Options this source checks itself, by key: check(value or None) -> the value stored, or OptionsError.
    # Every one is checked when an integration is saved, so a required one (generic's mapping) is never missing.
    option_checks: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
