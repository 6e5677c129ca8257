"""Grafana webhook contact point: unified alerting (version "1", Alertmanager's envelope, one event per alert)
and the legacy format of Grafana 10 and older (one rule, one event); contracts/more/grafana.md.

Unified alerts are identified, grouped into episodes and mapped exactly as Alertmanager's (alertmanager.py):
Grafana's `fingerprint` covers the rule's labels, its rule uid included, so it does not collide across orgs.
Legacy alerts are the rule: "grafana-rule:<orgId>:<ruleId>". Requests may be signed: `verify` checks
X-Grafana-Alerting-Signature (HMAC-SHA256 hex of the body, or of "<timestamp>:" + body when Grafana is told to
send X-Grafana-Alerting-Timestamp, which is then held to TOLERANCE seconds of our clock).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

from incidents.alert.sources.alertmanager import (
    alert_event,
    group_events,
    label_tags,
    severity_label,
    string_map,
    url_lines,
)
from incidents.alert.sources.base import (
    Kind,
    ParsedEvent,
    ParseError,
    SourceSpec,
    fingerprint,
    http_link,
    redact_keys,
    scalar_text,
    text,
)
from incidents.singleline import one_line

SOURCE = "grafana"
LABEL = "Grafana"
SETUP = ("In Grafana, Alerting > Contact points > + Add contact point, integration Webhook: paste this URL "
         "without ?token=... and, under Optional Webhook settings, put the token in Authorization Header "
         "Credentials (scheme Bearer). With a secret on this integration, set HMAC Signature > Secret to it, keep "
         "the header X-Grafana-Alerting-Signature and set Timestamp Header to X-Grafana-Alerting-Timestamp.")

# Same as Alertmanager's; "alerting" is the legacy format's firing.
DEFAULT_RULES: list[dict] = [
    {"events": ["firing", "alerting"], "severities": ["critical"], "incident_severity": "SEV1"},
    {"events": ["firing", "alerting"], "severities": ["error", "high", "major"], "incident_severity": "SEV2"},
]

# The documented default header, and the one grafana/alerting's hmac.go used when it was added.
SIGNATURE_HEADERS = ("x-grafana-alerting-signature", "x-grafana-alert-signature")
TIMESTAMP_HEADER = "x-grafana-alerting-timestamp"
TOLERANCE = 300  # seconds; Grafana enforces none, so the receiver picks (Slack's five minutes)
_SIGNATURE = re.compile(r"[0-9a-f]{64}")

# Legacy rule states: alerting and no_data are problems, ok ends them; paused and pending are not news.
LEGACY_STATES: dict[str, Kind] = {"alerting": Kind.TRIGGER, "no_data": Kind.TRIGGER, "ok": Kind.CLOSE}


def verify(raw: bytes, headers: Mapping[str, str], secret: str, now: float) -> str | None:
    """None when the request carries Grafana's HMAC of this body under `secret`, else why not (never the secret).

    A signed timestamp must be within TOLERANCE seconds of `now` either way: a captured request replayed later
    is refused. Without the timestamp header Grafana signs the body alone and there is no replay protection."""
    if not secret:  # an empty key is one anybody can sign with
        return "No HMAC secret is configured for this integration."
    given = next((headers[name] for name in SIGNATURE_HEADERS if headers.get(name)), "").strip().lower()
    if not given:
        return "Missing X-Grafana-Alerting-Signature header."
    stamp = headers.get(TIMESTAMP_HEADER)
    if stamp is not None:
        stamp = stamp.strip()
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
            return "Malformed X-Grafana-Alerting-Timestamp header."
        message = stamp.encode() + b":" + raw
    else:
        message = raw
    expected = hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
    if not (_SIGNATURE.fullmatch(given) and hmac.compare_digest(expected, given)):
        return "Invalid X-Grafana-Alerting-Signature."
    if stamp is not None and abs(now - int(stamp)) > TOLERANCE:
        return "Stale X-Grafana-Alerting-Timestamp: signed more than five minutes away from now."
    return None


def _values(value: Any) -> str:
    """"B=44.2394, C=1" from {refId: number}; Grafana's evaluation results at the time of the notification."""
    if not isinstance(value, dict):
        return ""
    pairs = []
    for ref, number in sorted(value.items(), key=lambda item: str(item[0])):
        if isinstance(number, bool) or not isinstance(number, int | float):
            continue
        shown = str(number) if isinstance(number, int) else f"{number:.6g}"
        pairs.append(f"{text(ref, 50)}={shown}")
    return ", ".join(pairs[:50])


def _test_notification(alert: dict) -> bool:
    """The synthetic alert Grafana's "Test" button sends unless the user customised it: nothing to track."""
    return (string_map(alert.get("labels")) == {"alertname": "TestAlert", "instance": "Grafana"}
            and string_map(alert.get("annotations")).get("summary") == "Notification test")


def _unified(payload: dict, options: Mapping[str, Any] | None) -> list[ParsedEvent]:
    external = payload.get("externalURL")

    def build(alert: Any, n: int) -> ParsedEvent:
        if isinstance(alert, dict) and _test_notification(alert):
            return ParsedEvent(SOURCE, "test", Kind.IGNORE, reason="Grafana test notification: the integration works.")
        item = alert if isinstance(alert, dict) else {}
        values = _values(item.get("values"))
        value_string = text(item.get("valueString"), 1000)
        lines = [f"Values: {values}"] if values else [f"Value: {value_string}"] if value_string else []
        lines += url_lines([("Rule", item.get("generatorURL")), ("Dashboard", item.get("dashboardURL")),
                            ("Panel", item.get("panelURL")), ("Silence", item.get("silenceURL")),
                            ("Image", item.get("imageURL")), ("Grafana", external)])
        links = (item.get("panelURL"), item.get("dashboardURL"), item.get("generatorURL"), external)
        return alert_event(SOURCE, LABEL, alert, n, options, links=links, lines=lines)

    return group_events(SOURCE, LABEL, payload, build)


def _int_id(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**18 else None


def _legacy(payload: dict, options: Mapping[str, Any] | None) -> list[ParsedEvent]:
    """A legacy rule notification: one event for the rule, keyed by org and rule id."""
    state = text(payload.get("state"), 64)
    if not state:
        raise ParseError("Grafana legacy alert: 'state' is required.")
    rule_id = _int_id(payload.get("ruleId"))
    if rule_id is None:
        raise ParseError("Grafana legacy alert: 'ruleId' must be an integer.")
    if rule_id == 0:  # no saved rule has id 0: this is the notification channel's "Send Test"
        return [ParsedEvent(SOURCE, state, Kind.IGNORE, reason="Grafana test notification: the integration works.")]
    kind = LEGACY_STATES.get(state.lower())
    if kind is None:
        return [ParsedEvent(SOURCE, state, Kind.IGNORE, reason=f"Grafana legacy alert state {state!r}: ignored.")]
    org = _int_id(payload.get("orgId")) or 1  # absent in old versions: the main org
    tags = string_map(payload.get("tags"))
    name = one_line(text(payload.get("ruleName"), 500))
    matches = []
    for match in payload.get("evalMatches") if isinstance(payload.get("evalMatches"), list) else []:
        if isinstance(match, dict) and (metric := one_line(text(match.get("metric"), 200))):
            value = match.get("value")
            shown = scalar_text(value, 40) if not isinstance(value, float) else f"{value:.6g}"
            matches.append(f"{metric} = {shown or '?'}")
    lines = matches[:20] + url_lines([("Rule", payload.get("ruleUrl")), ("Image", payload.get("imageUrl"))])
    description = "\n\n".join(filter(None, [text(payload.get("message"), 5000), "\n".join(lines)]))
    sev = tags.get(severity_label(options), "")[:16].lower() or None
    return [ParsedEvent(
        SOURCE, state.lower(), kind,
        fingerprint=fingerprint(f"grafana-rule:{org}:{rule_id}"),
        title=name or one_line(text(payload.get("title"), 500)) or f"Grafana rule {rule_id}",
        description=description,
        severity=sev,
        environment=next((tags[k][:100] for k in ("environment", "env") if tags.get(k)), None),
        link=http_link(payload.get("ruleUrl")),
        bump=kind == Kind.TRIGGER,
        tags=label_tags(tags),
    )]


def parse(payload: dict, headers: Mapping[str, str] | None = None,
          options: Mapping[str, Any] | None = None) -> list[ParsedEvent]:
    """Unified alerting (version "1") one event per alert, or a legacy body (ruleId, state) as one event."""
    version = scalar_text(payload.get("version"), 20)
    if version == "1":
        return _unified(payload, options)
    if version == "4":
        raise ParseError("This is an Alertmanager body (version \"4\"): send it to an alertmanager integration.")
    if version:
        raise ParseError(f"Grafana webhook version {version!r} is not supported (expected \"1\").")
    if "ruleId" in payload or "ruleName" in payload:
        return _legacy(payload, options)
    raise ParseError("Neither a Grafana alerting body (version \"1\") nor a legacy one (ruleId, state): custom "
                     "payload templates are not supported.")


def redact(payload: dict) -> bool:
    """Grafana sends no credentials in the body; a label or annotation named like a secret is blanked."""
    return redact_keys(payload)


SPEC = SourceSpec(name="grafana", label=LABEL, setup=SETUP, parse=parse, redact=redact, verify=verify,
                  default_rules=DEFAULT_RULES, resends=True)
