"""Rollbar project webhooks: {event_name, data{item|occurrence|deploy|url}} (CONTRACTS.md B)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from incidents.alert.sources.base import (
    Kind,
    ParsedEvent,
    ParseError,
    SourceSpec,
    http_link,
    obj,
    redact_keys,
    scalar_text,
    text,
    timestamp,
)
from incidents.singleline import one_line

SOURCE = "rollbar"

EVENTS: dict[str, Kind] = {
    "new_item": Kind.TRIGGER,
    "occurrence": Kind.REPEAT,
    "exp_repeat_item": Kind.REPEAT,
    "item_velocity": Kind.REPEAT,
    "reactivated_item": Kind.REACTIVATE,
    "reopened_item": Kind.REACTIVATE,
    "resolved_item": Kind.CLOSE,
    "deploy": Kind.DEPLOY,
}
# Events that are one occurrence of the item: they bump the count, and their occurrence uuid names them.
_OCCURRENCE_EVENTS = frozenset({"new_item", "occurrence", "exp_repeat_item", "item_velocity", "reactivated_item"})
_UUID_KEYED = frozenset({"new_item", "occurrence", "exp_repeat_item", "reactivated_item"})

LEVELS = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "critical"}
_LEVEL_NAMES = {"debug": "debug", "info": "info", "warning": "warning", "warn": "warning", "error": "error",
                "critical": "critical", "fatal": "critical"}
_SAFE_UUID = re.compile(r"^[0-9A-Fa-f-]{8,64}$")


def level(value: Any) -> str | None:
    """Rollbar levels arrive as ints (item.level: 40, 50) or names (occurrence.level: "error")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return LEVELS.get(value)
    return _LEVEL_NAMES.get(text(value, 10).lower())


def _item_id(item: dict, event: str) -> str:
    value = item.get("id")
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**30:
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 30:
        return value
    raise ParseError(f"Rollbar {event}: 'data.item.id' must be an integer.")


def body_summary(occurrence: dict) -> str:
    """One line from whichever of the four body shapes this occurrence has."""
    body = obj(occurrence.get("body"))
    trace = obj(body.get("trace"))
    chain = body.get("trace_chain")
    if not trace and isinstance(chain, list) and chain:
        trace = obj(chain[0])
    if trace:
        exc = obj(trace.get("exception"))
        cls, msg = text(exc.get("class"), 200), text(exc.get("message"), 800)
        return f"{cls}: {msg}" if cls and msg else cls or msg
    message = body.get("message")
    if isinstance(message, dict):
        return text(message.get("body"), 1000)
    crash = obj(body.get("crash_report"))
    raw = text(crash.get("raw"), 2000)
    return raw.splitlines()[0][:1000] if raw else ""


def _deploy(event: str, data: dict) -> ParsedEvent:
    deploy = data.get("deploy")
    if not isinstance(deploy, dict):
        raise ParseError("Rollbar deploy: 'data.deploy' must be an object.")
    environment = text(deploy.get("environment"), 100)
    revision = scalar_text(deploy.get("revision"), 100)
    user = text(deploy.get("local_username"), 120)
    deploy_id = scalar_text(deploy.get("id"), 40)
    info = {"id": deploy_id, "environment": environment, "revision": revision, "user": user,
            "comment": text(deploy.get("comment"), 500)}
    summary = f"Deploy {revision[:12] or '(no revision)'} to {environment or '(no environment)'}"
    return ParsedEvent(
        SOURCE, event, Kind.DEPLOY, environment=environment or None,
        occurred_at=timestamp(deploy.get("finish_time")) or timestamp(deploy.get("start_time")),
        dedup_key=f"deploy:{deploy_id}" if deploy_id else None, actor=user or None,
        reason=summary + (f" by {user}" if user else ""), deploy=info,
    )


def parse(payload: dict, headers: Mapping[str, str] | None = None,
          options: Mapping[str, Any] | None = None) -> list[ParsedEvent]:
    """One event per delivery: Rollbar sends one item event at a time."""
    return [parse_event(payload)]


def parse_event(payload: dict) -> ParsedEvent:
    event = text(payload.get("event_name"), 64)
    if not event:
        raise ParseError("Missing 'event_name': this is not a Rollbar webhook body.")
    if event == "test":
        return ParsedEvent(SOURCE, event, Kind.IGNORE, reason="Rollbar test event: the integration works.")
    kind = EVENTS.get(event)
    if kind is None:
        return ParsedEvent(SOURCE, event, Kind.IGNORE, reason=f"Unsupported Rollbar event {event!r}: ignored.")
    data = payload.get("data")
    if not isinstance(data, dict):
        raise ParseError(f"Rollbar {event}: 'data' must be an object.")
    if kind == Kind.DEPLOY:
        return _deploy(event, data)
    item = data.get("item")
    if not isinstance(item, dict):
        raise ParseError(f"Rollbar {event}: 'data.item' must be an object.")
    item_id = _item_id(item, event)
    occurrence = obj(data.get("occurrence")) or obj(item.get("last_occurrence"))
    uuid = scalar_text(occurrence.get("uuid"), 64)
    if not _SAFE_UUID.match(uuid):
        uuid = ""
    summary = body_summary(occurrence)
    link = http_link(data.get("url")) or (f"https://rollbar.com/item/uuid/?uuid={uuid}" if uuid else None)
    is_occurrence = event in _OCCURRENCE_EVENTS
    reason = ""
    if event == "item_velocity":
        trigger = obj(data.get("trigger"))
        threshold = scalar_text(trigger.get("threshold"), 20)
        window = text(trigger.get("window_size_description"), 60) or scalar_text(trigger.get("window_size"), 20)
        reason = f"Rollbar: high occurrence rate ({threshold or '?'} occurrences in {window or '?'})"
    elif event == "exp_repeat_item":
        reason = f"Rollbar: occurrence #{scalar_text(data.get('occurrences'), 20) or '?'} of this item"
    return ParsedEvent(
        SOURCE, event, kind,
        fingerprint=item_id,
        title=one_line(text(item.get("title"), 500) or summary[:500]) or f"Rollbar item {item_id}",
        description=summary,
        severity=level(item.get("level")) or level(occurrence.get("level")),
        environment=text(item.get("environment"), 100) or text(occurrence.get("environment"), 100) or None,
        link=link,
        occurred_at=(timestamp(occurrence.get("timestamp")) or timestamp(item.get("last_occurrence_timestamp")))
        if is_occurrence else None,
        bump=is_occurrence,
        # One occurrence uuid can appear under several events (new_item and occurrence of the same error),
        # so the key is scoped by event and item; events without an occurrence fall back to the body hash.
        dedup_key=f"{event}:{item_id}:{uuid.lower()}" if uuid and event in _UUID_KEYED else None,
        reason=reason,
    )


def redact(payload: dict) -> bool:
    """Occurrences carry the project's access_token in metadata (and request cookies): never stored."""
    return redact_keys(payload)


_PRODUCTION = ["production", "prod", "live"]  # Rollbar's own examples call production "live"
_OPENING = ["new_item", "reactivated_item", "reopened_item", "item_velocity"]
# A new, returning or fast-growing critical or error item in production opens an incident.
DEFAULT_RULES: list[dict] = [
    {"events": _OPENING, "severities": ["critical"], "environments": _PRODUCTION, "incident_severity": "SEV1"},
    {"events": _OPENING, "severities": ["error"], "environments": _PRODUCTION, "incident_severity": "SEV2"},
]

SPEC = SourceSpec(name="rollbar", label="Rollbar", parse=parse, redact=redact, default_rules=DEFAULT_RULES,
                  setup="Paste this URL into Rollbar: Settings > Notifications > Webhook. No header to set: the token "
                        "travels in the URL.")
