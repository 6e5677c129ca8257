"""Sentry integration-platform webhooks ("Sentry App" / internal integration): {action, installation, data, actor},
the resource named by the Sentry-Hook-Resource header, signed with HMAC-SHA256 of the raw body keyed with the
client secret (contracts/more/sentry.md).

The Sentry issue is the alert (fingerprint = its id), so an `issue` webhook and an `event_alert` rule firing on the
same issue land on one alert. Sentry does not sign its timestamp: an old or missing one is no reason to refuse."""

from __future__ import annotations

import hashlib
import hmac
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
    http_link,
    obj,
    redact_keys,
    redact_text,
    rfc3339,
    scalar_text,
    tag,
    text,
    timestamp,
)
from incidents.singleline import one_line

SOURCE = "sentry"
LABEL = "Sentry"
SETUP = ("In Sentry, Settings > Developer Settings > Custom Integrations > New Internal Integration: paste this URL "
         "as the Webhook URL (the token stays in ?token=: Sentry sends no custom headers), subscribe to Issue "
         "events or add the integration to an alert rule, and give us its Client Secret.")

ISSUE_ACTIONS: dict[str, Kind] = {
    "created": Kind.TRIGGER,
    "resolved": Kind.CLOSE,
    "assigned": Kind.INFO,
    "ignored": Kind.INFO,  # older deliveries' name for archived
    "archived": Kind.INFO,
    "unresolved": Kind.REACTIVATE,
}
# A Sentry alert rule firing is someone's decision that this matters: it opens an incident at fatal and error.
# A new issue alone (every new error, any environment) stays an alert.
DEFAULT_RULES: list[dict] = [
    {"events": ["event_alert.triggered"], "severities": ["fatal"], "incident_severity": "SEV1"},
    {"events": ["event_alert.triggered"], "severities": ["error"], "incident_severity": "SEV2"},
]

_LEVELS = frozenset({"debug", "info", "warning", "error", "fatal"})
_SAFE_ID = re.compile(r"^[\w.-]{1,100}$")
_SIGNATURE_HEADER = "sentry-hook-signature"


def level(value: Any) -> str | None:
    name = text(value, 10).lower()
    return name if name in _LEVELS else None


def _id(value: Any, what: str) -> str:
    found = scalar_text(value, 100)
    if not _SAFE_ID.match(found):
        raise ParseError(f"Sentry {what}: the issue id is missing or malformed.")
    return found


def _pairs(value: Any) -> dict[str, str]:
    """Sentry event tags: [["environment", "prod"], ...] (or {"key":..,"value":..} objects) as a dict."""
    found: dict[str, str] = {}
    for item in value[:100] if isinstance(value, list) else []:
        if isinstance(item, list | tuple) and len(item) == 2:
            key, val = item
        else:
            key, val = obj(item).get("key"), obj(item).get("value")
        if text(key, 100) and text(val, 200):
            found.setdefault(text(key, 100), text(val, 200))
    return found


def _tags(*pairs: tuple[str, Any]) -> tuple[str, ...]:
    found = (tag(key, text(value, 100)) for key, value in pairs if text(value, 100))
    return tuple(dict.fromkeys(t for t in found if t))


def _issue_reason(action: str, data: dict, issue: dict, actor: str) -> str:
    by = f" by {actor}" if actor else ""
    if action == "assigned":
        assignee = obj(data.get("assignee")) or obj(issue.get("assignedTo"))
        who = text(assignee.get("name"), 120) or text(assignee.get("email"), 120) or "someone"
        return f"Sentry: assigned to {who}{by}"
    substatus = text(issue.get("substatus"), 40)
    return f"Sentry: archived{f' ({substatus})' if substatus else ''}{by}"


def _issue(action: str, payload: dict, headers: Mapping[str, str]) -> ParsedEvent:
    event = f"issue.{action}"
    kind = ISSUE_ACTIONS.get(action)
    if kind is None:
        return ParsedEvent(SOURCE, event, Kind.IGNORE, reason=f"Unsupported Sentry issue action {action!r}: ignored.")
    data = obj(payload.get("data"))
    issue = data.get("issue")
    if not isinstance(issue, dict):
        raise ParseError(f"Sentry {event}: 'data.issue' must be an object.")
    issue_id = _id(issue.get("id"), event)
    actor = text(dig(payload, "actor", "name"), 120)
    short_id = text(issue.get("shortId"), 100)
    project = text(obj(issue.get("project")).get("slug"), 100)
    severity = level(issue.get("level"))
    request_id = text(headers.get("request-id"), 100)
    if kind == Kind.TRIGGER:
        dedup = f"issue.created:{issue_id}"  # an issue is created once: any re-delivery is the same one
    else:
        dedup = f"request:{request_id}" if _SAFE_ID.match(request_id) else None
    return ParsedEvent(
        SOURCE, event, kind,
        fingerprint=fingerprint(issue_id),
        external_id=issue_id,
        title=one_line(text(issue.get("title"), 500)) or (f"Sentry issue {short_id or issue_id}"),
        description=text(issue.get("culprit"), 15_000),
        severity=severity,
        link=http_link(issue.get("web_url")) or http_link(data.get("web_url")) or http_link(issue.get("permalink")),
        occurred_at=rfc3339(issue.get("firstSeen")) if kind == Kind.TRIGGER else None,
        # An issue that regressed is the problem happening again (Rollbar's reactivated_item).
        bump=kind == Kind.TRIGGER or (kind == Kind.REACTIVATE and issue.get("substatus") == "regressed"),
        dedup_key=dedup,
        actor=actor or None,
        reason=_issue_reason(action, data, issue, actor) if kind == Kind.INFO else "",
        tags=_tags(("project", project), ("level", severity), ("platform", issue.get("platform"))),
    )


def _event_alert(action: str, payload: dict) -> ParsedEvent:
    event_name = f"event_alert.{action}"
    if action != "triggered":
        return ParsedEvent(SOURCE, event_name, Kind.IGNORE,
                           reason=f"Unsupported Sentry event_alert action {action!r}: ignored.")
    data = obj(payload.get("data"))
    event = data.get("event")
    if not isinstance(event, dict):
        raise ParseError(f"Sentry {event_name}: 'data.event' must be an object.")
    issue_id = _id(event.get("issue_id"), event_name)
    event_id = text(event.get("event_id"), 64)
    event_id = event_id.lower() if _SAFE_ID.match(event_id) else ""
    rule = text(data.get("triggered_rule"), 200) or text(dig(data, "issue_alert", "title"), 200)
    pairs = _pairs(event.get("tags"))
    environment = text(event.get("environment"), 100) or pairs.get("environment", "")[:100]
    severity = level(event.get("level")) or level(pairs.get("level"))
    return ParsedEvent(
        SOURCE, event_name, Kind.TRIGGER,
        fingerprint=fingerprint(issue_id),
        external_id=issue_id,
        title=one_line(text(event.get("title"), 500) or text(event.get("message"), 500)) or f"Sentry issue {issue_id}",
        description=text(event.get("culprit"), 15_000),
        severity=severity,
        environment=environment or None,
        link=http_link(event.get("web_url")),
        occurred_at=rfc3339(event.get("datetime")) or timestamp(event.get("timestamp")),
        bump=True,
        # A retry of this rule's delivery is dropped; another rule firing on the same event is the same
        # occurrence (last seen moves, the count does not).
        dedup_key=f"event_alert:{issue_id}:{event_id}:{rule}" if event_id else None,
        occurrence=event_id or None,
        actor=text(dig(payload, "actor", "name"), 120) or None,
        reason=f"Sentry: alert rule {rule!r} fired" if rule else "Sentry: an alert rule fired",
        tags=_tags(("level", severity), ("environment", environment), ("release", pairs.get("release"))),
    )


def parse(payload: dict, headers: Mapping[str, str], options: Mapping[str, Any]) -> list[ParsedEvent]:
    """One event per delivery. The resource comes from Sentry-Hook-Resource; without the header (a replay of a
    stored body) it is read from the body's shape. installation, metric_alert, comment... are ignored."""
    action = text(payload.get("action"), 64)
    if not action:
        if "triggering_rules" in payload or "project_slug" in payload:
            return [ParsedEvent(SOURCE, "legacy", Kind.IGNORE, reason=(
                "Sentry legacy WebHooks plugin body: not supported, use an internal integration: ignored."))]
        raise ParseError("Missing 'action': this is not a Sentry integration webhook body.")
    if not isinstance(payload.get("data"), dict):
        raise ParseError(f"Sentry {action}: 'data' must be an object.")
    resource = text(headers.get("sentry-hook-resource"), 64).lower()
    if not resource:
        data = payload["data"]
        resource = "issue" if "issue" in data else "event_alert" if "event" in data else ""
    if resource == "issue":
        return [_issue(action, payload, headers)]
    if resource == "event_alert":
        return [_event_alert(action, payload)]
    what = f"{resource}.{action}" if resource else action
    return [ParsedEvent(SOURCE, what, Kind.IGNORE,
                        reason=f"Unsupported Sentry webhook {what!r}: ignored.")]


def verify(raw: bytes, headers: Mapping[str, str], secret: str, now: float) -> str | None:
    """None when Sentry-Hook-Signature is the HMAC-SHA256 hex of the raw body keyed with the client secret.
    The timestamp is not signed, so it proves nothing: `now` is unused and its absence is not an error."""
    if not secret:
        return "no client secret configured"
    given = text(headers.get(_SIGNATURE_HEADER), 200).lower()
    if not given:
        return "missing Sentry-Hook-Signature"
    expected = hmac.new(secret.encode("utf-8"), raw, hashlib.sha256).hexdigest().encode("ascii")
    if not hmac.compare_digest(expected, given.encode("utf-8", "replace")):
        return "Sentry-Hook-Signature does not match the body"
    return None


def redact(payload: dict) -> bool:
    """Events carry the request they captured: cookies and secret headers come as [name, value] pairs, alert
    settings as {name, value} objects, which key-based redaction cannot see, and query strings as text."""
    found = redact_keys(payload)
    stack: list[Any] = [payload]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            name, value = node.get("name"), node.get("value")
            if (isinstance(name, str) and isinstance(value, str | int | float) and value not in ("", REDACTED)
                    and redact_keys({name: value})):
                node["value"], found = REDACTED, True
            for key, value in node.items():
                if key == "query_string" and isinstance(value, str) and value:
                    hidden = redact_text(value)
                    if hidden != value:
                        node[key], found = hidden, True
                elif isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(node, list):
            for item in node:
                if (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)
                        and isinstance(item[1], str) and item[1] not in ("", REDACTED)
                        and redact_keys({item[0]: item[1]})):
                    item[1], found = REDACTED, True
                elif isinstance(item, dict | list):
                    stack.append(item)
    return found


SPEC = SourceSpec(name="sentry", label=LABEL, setup=SETUP, parse=parse, redact=redact, verify=verify,
                  default_rules=DEFAULT_RULES, signed=True, keep_headers=("Sentry-Hook-Resource",))
