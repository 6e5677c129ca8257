"""PagerDuty V3 webhook subscriptions: {event{id, event_type, resource_type, occurred_at, agent, data}}, one event
per delivery, signed with HMAC-SHA256 of the raw body (contracts/more/pagerduty.md).

The PagerDuty incident is the alert (fingerprint = its id); the event id names the delivery, so a retry is never
counted twice."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

from incidents.alert.sources.base import (
    Kind,
    ParsedEvent,
    ParseError,
    SourceSpec,
    fingerprint,
    http_link,
    obj,
    redact_keys,
    rfc3339,
    scalar_text,
    tag,
    text,
)

SOURCE = "pagerduty"
LABEL = "PagerDuty"
SETUP = ("In PagerDuty, Integrations > Generic Webhooks (v3) > New Webhook: paste this URL, add a custom header "
         "X-Incidents-Token with the token (or keep ?token=...), and give us the signing secret PagerDuty shows once.")

EVENTS: dict[str, Kind] = {
    "incident.triggered": Kind.TRIGGER,
    "incident.acknowledged": Kind.ACKNOWLEDGE,
    "incident.unacknowledged": Kind.UNACKNOWLEDGE,
    "incident.resolved": Kind.CLOSE,
    "incident.reassigned": Kind.INFO,
    "incident.escalated": Kind.ESCALATE,
    "incident.priority_updated": Kind.INFO,
    "incident.annotated": Kind.NOTE,
    "incident.reopened": Kind.REACTIVATE,
}
_OPENING = ["incident.triggered", "incident.reopened"]
# Priorities when the account has them (P1..P5 by default), else the urgency PagerDuty always sets.
DEFAULT_RULES: list[dict] = [
    {"events": _OPENING, "severities": ["P1"], "incident_severity": "SEV1"},
    {"events": _OPENING, "severities": ["P2"], "incident_severity": "SEV2"},
    {"events": _OPENING, "severities": ["high"], "incident_severity": "SEV2"},
]

_SIGNATURE_HEADER = "x-pagerduty-signature"
_MAX_SIGNATURES = 10  # one per active secret: a handful during rotation
_SAFE_ID = re.compile(r"^[\w.-]{1,100}$")


def _names(refs: Any) -> str:
    """"A, B" from a list of references ({summary} objects)."""
    if not isinstance(refs, list):
        return ""
    return ", ".join(name for name in (text(obj(ref).get("summary"), 120) for ref in refs[:20]) if name)


def severity(incident: dict) -> str | None:
    """The incident's priority name (P1..P5 unless renamed), else its urgency (high, low)."""
    return (text(obj(incident.get("priority")).get("summary"), 32)
            or text(incident.get("urgency"), 32).lower() or None)


def _tags(incident: dict) -> tuple[str, ...]:
    """service:<name>, urgency:<high|low> and team:<name> for each team."""
    pairs = [("service", obj(incident.get("service")).get("summary")), ("urgency", incident.get("urgency"))]
    teams = incident.get("teams")
    pairs += [("team", obj(team).get("summary")) for team in (teams[:10] if isinstance(teams, list) else [])]
    found = (tag(key, text(value, 100)) for key, value in pairs if text(value, 100))
    return tuple(dict.fromkeys(t for t in found if t))


def _reason(event_type: str, incident: dict, actor: str) -> str:
    by = f" by {actor}" if actor else ""
    assignees = _names(incident.get("assignees")) or "nobody"
    if event_type == "incident.reassigned":
        return f"PagerDuty: reassigned to {assignees}{by}"
    if event_type == "incident.escalated":
        policy = text(obj(incident.get("escalation_policy")).get("summary"), 120)
        return f"PagerDuty: escalated{f' ({policy})' if policy else ''} to {assignees}"
    if event_type == "incident.priority_updated":
        return f"PagerDuty: priority set to {severity(incident) or 'none'}{by}"
    return ""


def parse(payload: dict, headers: Mapping[str, str], options: Mapping[str, Any]) -> list[ParsedEvent]:
    """One ParsedEvent per delivery (V3 never batches); other event types and resources are ignored."""
    event = payload.get("event")
    if not isinstance(event, dict):
        raise ParseError("Missing 'event' object: this is not a PagerDuty V3 webhook body.")
    event_type = text(event.get("event_type"), 64)
    if not event_type:
        raise ParseError("PagerDuty: 'event.event_type' is required.")
    kind = EVENTS.get(event_type)
    if kind is None:
        why = "PagerDuty test event" if event_type == "pagey.ping" else f"Unsupported PagerDuty event {event_type!r}"
        return [ParsedEvent(SOURCE, event_type, Kind.IGNORE, reason=f"{why}: ignored.")]
    data = event.get("data")
    if not isinstance(data, dict):
        raise ParseError(f"PagerDuty {event_type}: 'event.data' must be an object.")
    # incident.annotated carries an incident_note whose `incident` is a reference; the others the incident itself.
    incident = obj(data.get("incident")) if kind == Kind.NOTE else data
    incident_id = scalar_text(incident.get("id"), 100)
    if not _SAFE_ID.match(incident_id):
        raise ParseError(f"PagerDuty {event_type}: the incident id is missing or malformed.")
    event_id = scalar_text(event.get("id"), 100)
    actor = text(obj(event.get("agent")).get("summary"), 120)
    number = scalar_text(incident.get("number"), 20)
    # A note's `incident` is a reference: its name is the summary ("[#10] Test Incident").
    title = " ".join((text(incident.get("title"), 500) or text(incident.get("summary"), 500)).split()) or (
        f"PagerDuty incident #{number}" if number else f"PagerDuty incident {incident_id}")
    note = text(data.get("content"), 20_000) if kind == Kind.NOTE else ""
    return [ParsedEvent(
        SOURCE, event_type, kind,
        fingerprint=fingerprint(incident_id),
        external_id=incident_id,
        title=title,
        description=text(obj(incident.get("body")).get("details"), 15_000),
        severity=severity(incident) if kind != Kind.NOTE else None,
        link=http_link(incident.get("html_url")),
        occurred_at=rfc3339(event.get("occurred_at")),
        bump=kind == Kind.TRIGGER,
        dedup_key=event_id or None,
        actor=actor or None,
        note=note or None,
        reason=_reason(event_type, incident, actor),
        tags=_tags(incident) if kind != Kind.NOTE else (),
    )]


def verify(raw: bytes, headers: Mapping[str, str], secret: str, now: float) -> str | None:
    """None when any `v1=` entry of X-PagerDuty-Signature is the HMAC-SHA256 hex of the raw body with `secret`
    (several entries while a secret rotates); the scheme has no timestamp, so `now` is unused."""
    if not secret:
        return "no signing secret configured"
    header = headers.get(_SIGNATURE_HEADER) or ""
    if not header:
        return "missing X-PagerDuty-Signature"
    candidates = [part.strip()[3:] for part in header.split(",")[:_MAX_SIGNATURES]
                  if part.strip().lower().startswith("v1=")]
    if not candidates:
        return "no v1 signature in X-PagerDuty-Signature"
    expected = hmac.new(secret.encode("utf-8"), raw, hashlib.sha256).hexdigest().encode("ascii")
    matches = [hmac.compare_digest(expected, c.lower().encode("utf-8", "replace")) for c in candidates]
    return None if any(matches) else "X-PagerDuty-Signature does not match the body"


def redact(payload: dict) -> bool:
    """Nothing secret is documented in the body; blank secret-looking keys anyway (custom fields, notes)."""
    return redact_keys(payload)


SPEC = SourceSpec(name="pagerduty", label=LABEL, setup=SETUP, parse=parse, redact=redact, verify=verify,
                  default_rules=DEFAULT_RULES, signed=True)
