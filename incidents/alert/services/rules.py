"""Which alerts open an incident, and at what severity: an integration's rules, or its source's defaults."""

from __future__ import annotations

from typing import Any

from incidents.alert.sources import SOURCES, ParsedEvent
from incidents.errors import Invalid
from incidents.incident.models import Severity

_RULE_KEYS = {"events", "severities", "environments", "incident_severity"}


def default_rules(source: str) -> list[dict]:
    """The rules of an integration that has none of its own: its source module's DEFAULT_RULES."""
    return SOURCES[source].default_rules


def validate_rules(rules: Any) -> list[dict] | None:
    """None (use the defaults) or a list of rules; each rule lists events, severities, environments
    (all optional, empty = any) and the incident severity to open (null = keep it as an alert only)."""
    if rules is None:
        return None
    if not isinstance(rules, list):
        raise Invalid("Rules must be a JSON list of objects.", {"rules": ["Expected a list."]})
    for n, rule in enumerate(rules, 1):
        if not isinstance(rule, dict) or set(rule) - _RULE_KEYS:
            raise Invalid(f"Rule {n} must be an object with only: {', '.join(sorted(_RULE_KEYS))}.",
                          {"rules": [f"Rule {n} is invalid."]})
        for key in ("events", "severities", "environments"):
            value = rule.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise Invalid(f"Rule {n}: {key} must be a list of strings.", {"rules": [f"Rule {n}: bad {key}."]})
        sev = rule.get("incident_severity")
        if sev is not None and sev not in Severity.__members__:
            raise Invalid(f"Rule {n}: incident_severity must be one of {', '.join(Severity)} or null.",
                          {"rules": [f"Rule {n}: bad incident_severity."]})
    return rules


def match_rules(rules: list[dict], parsed: ParsedEvent, event: str) -> Severity | None:
    """The incident severity of the first rule matching this event, or None (no rule, or a keep-only rule)."""
    severity = (parsed.severity or "").lower()
    environment = (parsed.environment or "").lower()
    for rule in rules:
        if rule.get("events") and event not in rule["events"]:
            continue
        if rule.get("severities") and severity not in [s.lower() for s in rule["severities"]]:
            continue
        if rule.get("environments") and environment not in [e.lower() for e in rule["environments"]]:
            continue
        sev = rule.get("incident_severity")
        return Severity(sev) if sev else None
    return None
