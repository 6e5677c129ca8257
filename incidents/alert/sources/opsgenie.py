"""OpsGenie outgoing "Webhook" integration: {action, alert{...}, source, integrationId, ...} (CONTRACTS.md A)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from incidents.alert.sources.base import (
    REDACTED,
    Kind,
    ParsedEvent,
    ParseError,
    SourceSpec,
    dig,
    fingerprint,
    obj,
    redact_keys,
    scalar_text,
    text,
    timestamp,
)
from incidents.singleline import one_line

SOURCE = "opsgenie"

ACTIONS: dict[str, Kind] = {
    "Create": Kind.TRIGGER,
    "Acknowledge": Kind.ACKNOWLEDGE,
    "UnAcknowledge": Kind.UNACKNOWLEDGE,
    "AddNote": Kind.NOTE,
    "Close": Kind.CLOSE,
    "Delete": Kind.CLOSE,
    "Escalate": Kind.ESCALATE,
    "TakeOwnership": Kind.INFO,
    "AssignOwnership": Kind.INFO,
    "AddRecipient": Kind.INFO,
    "AddTeam": Kind.INFO,
    "AddTags": Kind.INFO,
    "RemoveTags": Kind.INFO,
    "UpdatePriority": Kind.PRIORITY,
}

_PRIORITY = re.compile(r"^p?([1-5])$", re.IGNORECASE)
_SAFE_ID = re.compile(r"^[\w.-]{1,100}$")


def severity(priority: Any) -> str | None:
    """P1..P5 from the integer 3 (older payloads) or the string "P1" (newer ones); anything else is None."""
    if isinstance(priority, int) and not isinstance(priority, bool):
        return f"P{priority}" if 1 <= priority <= 5 else None
    match = _PRIORITY.match(text(priority, 3))
    return f"P{match.group(1)}" if match else None


def _info(action: str, alert: dict, actor: str) -> str:
    """One line for the timeline describing an annotation-only action."""
    by = f" by {actor}" if actor else ""
    detail = {
        "AddTags": lambda: f"tags added: {text(alert.get('addedTags'), 200)}",
        "RemoveTags": lambda: f"tags removed: {text(alert.get('removedTags'), 200)}",
        "TakeOwnership": lambda: "ownership taken",
        "AssignOwnership": lambda: f"assigned to {text(alert.get('owner'), 200)}",
        "AddRecipient": lambda: f"recipient added: {text(alert.get('recipient'), 200)}",
        "AddTeam": lambda: f"team added: {text(alert.get('team'), 200)}",
    }[action]()
    return f"OpsGenie: {detail}{by}"


def parse(payload: dict, headers: Mapping[str, str] | None = None,
          options: Mapping[str, Any] | None = None) -> list[ParsedEvent]:
    """One event per delivery: OpsGenie sends one alert action at a time."""
    return [parse_event(payload)]


def parse_event(payload: dict) -> ParsedEvent:
    action = text(payload.get("action"), 64)
    if not action:
        raise ParseError("Missing 'action': this is not an OpsGenie webhook body.")
    kind = ACTIONS.get(action)
    if kind is None:
        return ParsedEvent(SOURCE, action, Kind.IGNORE, reason=f"Unknown OpsGenie action {action!r}: ignored.")
    alert = payload.get("alert")
    if not isinstance(alert, dict):
        raise ParseError(f"OpsGenie {action}: 'alert' must be an object.")
    alert_id = scalar_text(alert.get("alertId"), 255)
    actor = text(alert.get("userFullName"), 120) or text(alert.get("username"), 120) or text(
        dig(payload, "source", "name"), 120)
    link = f"https://app.opsgenie.com/alert/detail/{alert_id}/details" if _SAFE_ID.match(alert_id) else None

    if kind == Kind.ESCALATE:
        if not alert_id:
            raise ParseError("OpsGenie Escalate: 'alert.alertId' is required.")
        notify = obj(payload.get("escalationNotify"))
        target = text(notify.get("name"), 120) or text(notify.get("entity"), 120) or "someone"
        name = text(payload.get("escalationName"), 120)
        return ParsedEvent(SOURCE, action, kind, external_id=alert_id, link=link,
                           reason=f"OpsGenie: escalated{f' ({name})' if name else ''} to {target}")

    if kind == Kind.PRIORITY:
        return _priority_event(action, alert, alert_id, actor, link)

    alias = text(alert.get("alias"), 100_000)
    key = alias or alert_id
    if not key:
        raise ParseError(f"OpsGenie {action}: 'alert.alias' or 'alert.alertId' is required.")
    created = timestamp(alert.get("createdAt"), 1e-3)  # epoch milliseconds
    updated = timestamp(alert.get("updatedAt"), 1e-9)  # epoch nanoseconds
    tiny = scalar_text(alert.get("tinyId"), 20)
    title = one_line(text(alert.get("message"), 500)) or (
        f"OpsGenie alert #{tiny}" if tiny else f"OpsGenie alert {key[:80]}")
    return ParsedEvent(
        SOURCE, action, kind,
        fingerprint=fingerprint(key),
        external_id=alert_id or None,
        title=title,
        description=text(alert.get("description"), 15_000),
        severity=severity(alert.get("priority")),
        link=link,
        occurred_at=created if kind == Kind.TRIGGER else (updated or created),
        bump=kind == Kind.TRIGGER,  # a Create with the alias of an open alert is a repeat (OpsGenie counts it)
        actor=actor or None,
        note=text(alert.get("note"), 20_000) or None,
        reason=_info(action, alert, actor) if kind == Kind.INFO else "",
    )


def _priority_event(action: str, alert: dict, alert_id: str, actor: str, link: str | None) -> ParsedEvent:
    """UpdatePriority: the alert-action envelope whose `alert.priority` is the new priority (`alert.oldPriority`
    the one before, when sent), as the Opsgenie/JSM "Alert action data" pages list it; no captured sample exists
    (contracts/more/jsm-ops.md), so both fields are read leniently. A body without a readable new priority changes
    nothing: IGNORE, answered 2xx."""
    key = text(alert.get("alias"), 100_000) or alert_id
    new = severity(alert.get("priority"))
    if not key or new is None:
        return ParsedEvent(SOURCE, action, Kind.IGNORE,
                           reason="UpdatePriority without an alias or alertId and a P1..P5 priority: ignored.")
    old = severity(alert.get("oldPriority"))
    by = f" by {actor}" if actor else ""
    change = f"from {old} to {new}" if old and old != new else f"to {new}"
    updated = timestamp(alert.get("updatedAt"), 1e-9)
    return ParsedEvent(SOURCE, action, Kind.PRIORITY, fingerprint=fingerprint(key), external_id=alert_id or None,
                       severity=new, link=link, occurred_at=updated, actor=actor or None,
                       reason=f"OpsGenie: priority changed {change}{by}")


def redact(payload: dict) -> bool:
    """Escalate echoes the integration's custom headers (where our token travels); blank them all."""
    found = redact_keys(payload)
    headers = payload.get("headers")
    if isinstance(headers, dict) and headers:
        payload["headers"] = {str(k): REDACTED for k in headers}
        found = True
    return found


# Create of a P1 or P2 alert opens an incident; everything else stays an alert.
DEFAULT_RULES: list[dict] = [
    {"events": ["Create"], "severities": ["P1"], "incident_severity": "SEV1"},
    {"events": ["Create"], "severities": ["P2"], "incident_severity": "SEV2"},
]

SPEC = SourceSpec(name="opsgenie", label="OpsGenie", parse=parse, redact=redact, default_rules=DEFAULT_RULES,
                  setup="Paste this URL into OpsGenie's Webhook integration (Settings > Integrations > Webhook). "
                        "No header to set; to keep the token out of the URL, drop ?token=... and add a custom "
                        "header X-Incidents-Token with the token instead.")
