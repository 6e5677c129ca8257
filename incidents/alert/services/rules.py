"""What an alert does to incidents: an integration's rules (or its source's defaults), first match wins.

A rule is a JSON object. Conditions, all optional, all must hold (an empty rule matches everything):
`events`, `severities`, `environments` (lists, case-insensitive, empty = any); `title_contains` (case-insensitive
substring); `title_regex` (RE2 syntax, searched with the linear-time `re2`, so no pattern can stall ingestion);
`tags` (every listed tag on the event, "key:value" or plain, exact and case-insensitive); `field` + `equals`
(a JMESPath expression on the delivery's JSON body, its value compared as text; a missing value never matches).
One action: `open` an incident at `incident_severity`; `route` it (open on `service`, a slug, and its team, or
on `team`); `attach` the alert to the open incident of the same service (the rule's `service`, else the
integration's), opening one if none is open; `alert_only`; `suppress` (stored and counted on the alert, which is
marked suppressed; no incident, no notification). A rule without `action` means what it always did: open at its
`incident_severity`, or keep as an alert when that is null.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import jmespath
import re2
import sqlalchemy as sa
from jmespath.exceptions import JMESPathError
from sqlalchemy.orm import Session

from incidents.alert.sources import SOURCES, ParsedEvent
from incidents.errors import Invalid
from incidents.incident.models import Severity

ACTIONS = ("open", "route", "attach", "alert_only", "suppress")
_LIST_KEYS = ("events", "severities", "environments", "tags")
_TEXT_KEYS = {"title_contains": 500, "title_regex": 500, "field": 500, "equals": 500, "service": 100, "team": 100}
_RULE_KEYS = {*_LIST_KEYS, *_TEXT_KEYS, "incident_severity", "action"}
MAX_RULES = 100


def default_rules(source: str) -> list[dict]:
    """The rules of an integration that has none of its own: its source module's DEFAULT_RULES."""
    return SOURCES[source].default_rules


def _refuse(n: int, key: str, message: str):
    """Invalid naming the rule and its field: `rules` for the JSON/CLI callers, `rules.N.key` for the form."""
    raise Invalid(f"Rule {n}: {message}", {"rules": [f"Rule {n}: {message}"], f"rules.{n}.{key}": [message]})


@functools.lru_cache(maxsize=512)
def compiled_regex(pattern: str):
    """RE2 compiled once per pattern (raises re2.error for a pattern RE2 refuses)."""
    return re2.compile(pattern)


@functools.lru_cache(maxsize=512)
def compiled_path(expression: str):
    return jmespath.compile(expression)


def validate_rules(rules: Any, session: Session | None = None) -> list[dict] | None:
    """None (use the defaults) or the list of rules, each checked: known keys, lists of strings, a regex RE2
    compiles, a JMESPath that parses, a known action and what it needs; with a session, that a routed service
    or team exists. Refused as Invalid naming the rule and the field."""
    if rules is None:
        return None
    if not isinstance(rules, list):
        raise Invalid("Rules must be a JSON list of objects.", {"rules": ["Expected a list."]})
    if len(rules) > MAX_RULES:
        raise Invalid(f"At most {MAX_RULES} rules.", {"rules": ["Too many rules."]})
    for n, rule in enumerate(rules, 1):
        if not isinstance(rule, dict) or set(rule) - _RULE_KEYS:
            raise Invalid(f"Rule {n} must be an object with only: {', '.join(sorted(_RULE_KEYS))}.",
                          {"rules": [f"Rule {n} is invalid."]})
        for key in _LIST_KEYS:
            value = rule.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                _refuse(n, key, f"{key} must be a list of strings.")
        for key, limit in _TEXT_KEYS.items():
            value = rule.get(key)
            if value is not None and (not isinstance(value, str) or len(value) > limit):
                _refuse(n, key, f"{key} must be text of at most {limit} characters.")
        if rule.get("title_regex"):
            try:
                compiled_regex(rule["title_regex"])
            except re2.error as e:
                _refuse(n, "title_regex", f"title_regex is not a valid RE2 expression ({e}).")
        if ("field" in rule) != ("equals" in rule) or ("field" in rule and not rule["field"]):
            _refuse(n, "field", "field (a JMESPath expression) and equals go together.")
        if rule.get("field"):
            try:
                compiled_path(rule["field"])
            except JMESPathError as e:
                _refuse(n, "field", f"field is not a valid JMESPath expression ({str(e).splitlines()[0]}).")
        sev = rule.get("incident_severity")
        if sev is not None and sev not in Severity.__members__:
            _refuse(n, "incident_severity", f"incident_severity must be one of {', '.join(Severity)} or null.")
        action = rule.get("action")
        if action is not None and action not in ACTIONS:
            _refuse(n, "action", f"action must be one of {', '.join(ACTIONS)}.")
        if action in ("open", "route", "attach") and sev is None:
            _refuse(n, "incident_severity", f"the {action} action needs an incident_severity.")
        if action == "route" and not (rule.get("service") or rule.get("team")):
            _refuse(n, "service", "the route action needs a service or a team.")
        if (rule.get("service") or rule.get("team")) and action not in ("route", "attach"):
            _refuse(n, "action", "only route and attach use a service or team.")
        if session is not None:
            _check_targets(session, n, rule)
    return rules


def _check_targets(session: Session, n: int, rule: dict) -> None:
    from incidents.catalog.models import Service, Team

    if rule.get("service") and session.scalar(sa.select(Service.id).where(Service.slug == rule["service"])) is None:
        _refuse(n, "service", f"no service {rule['service']!r}.")
    if rule.get("team") and session.scalar(sa.select(Team.id).where(Team.slug == rule["team"])) is None:
        _refuse(n, "team", f"no team {rule['team']!r}.")


@dataclass(frozen=True)
class Decision:
    """What one event does: the action, the severity it opens at, and where to (service/team slugs)."""

    action: str = "alert_only"
    severity: Severity | None = None
    rule: int | None = None  # the matching rule, counted from 1; None when no rule matched
    service: str | None = None
    team: str | None = None

    @property
    def opens(self) -> bool:
        return self.action in ("open", "route", "attach")

    def describe(self) -> str:
        """One line for people: the preview table, the suppressed alert's mark."""
        by = f"rule {self.rule}" if self.rule else "no rule"
        where = " → ".join(x for x in (self.service and f"service {self.service}", self.team and f"team {self.team}")
                           if x)
        what = {"open": f"open a {self.severity} incident",
                "route": f"open a {self.severity} incident on {where}",
                "attach": f"attach to the open incident of {where or 'the integration’s service'} "
                          f"(or open a {self.severity} one)",
                "alert_only": "keep as an alert only",
                "suppress": "suppress: stored and counted, nothing else"}[self.action]
        return f"{what} ({by})"


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)  # true, 3, 2.5, {"a":1}


def rule_matches(rule: dict, parsed: ParsedEvent, event: str, payload: Any = None) -> bool:
    """Whether every condition of `rule` holds for this event (`payload`: the delivery's parsed JSON body)."""
    if rule.get("events") and event not in rule["events"]:
        return False
    if rule.get("severities") and (parsed.severity or "").lower() not in [s.lower() for s in rule["severities"]]:
        return False
    if rule.get("environments") and \
            (parsed.environment or "").lower() not in [e.lower() for e in rule["environments"]]:
        return False
    title = parsed.title or ""
    if rule.get("title_contains") and rule["title_contains"].lower() not in title.lower():
        return False
    if rule.get("title_regex") and compiled_regex(rule["title_regex"]).search(title) is None:
        return False
    if rule.get("tags"):
        have = {t.lower() for t in parsed.tags}
        if any(t.strip().lower() not in have for t in rule["tags"]):
            return False
    if rule.get("field"):
        try:
            found = compiled_path(rule["field"]).search(payload) if payload is not None else None
        except JMESPathError:  # a type error at run time (a function on the wrong type): no match
            found = None
        if _as_text(found) is None or _as_text(found) != str(rule.get("equals", "")):
            return False
    return True


def decide(rules: list[dict], parsed: ParsedEvent, event: str, payload: Any = None) -> Decision:
    """The decision of the first rule matching this event; keep as an alert when none matches."""
    for n, rule in enumerate(rules, 1):
        if not rule_matches(rule, parsed, event, payload):
            continue
        sev = rule.get("incident_severity")
        severity = Severity(sev) if sev else None
        action = rule.get("action") or ("open" if severity else "alert_only")
        return Decision(action, severity, n, rule.get("service") or None, rule.get("team") or None)
    return Decision()


def match_rules(rules: list[dict], parsed: ParsedEvent, event: str, payload: Any = None) -> Severity | None:
    """The incident severity of the first matching rule if it opens one, else None (the old question)."""
    decision = decide(rules, parsed, event, payload)
    return decision.severity if decision.opens else None


@dataclass(frozen=True)
class Preview:
    alert: Any  # the Alert row
    event: str  # the event the rules were tried with
    decision: Decision


def preview_rules(session: Session, integration: Any, rules: list[dict] | None, limit: int = 50) -> list[Preview]:
    """What `rules` (None: the source's defaults) would do with this integration's last `limit` alerts, most
    recently seen first. Read-only. Each alert is tried with the event of the first delivery stored for it,
    parsed again (so payload-field conditions see its body), else with its own fields and last event."""
    from incidents import jsonbody
    from incidents.alert.models import Alert, Delivery
    from incidents.alert.sources import Kind, parse

    rules = default_rules(integration.source.value) if rules is None else rules
    alerts = list(session.scalars(sa.select(Alert).where(Alert.integration_id == integration.id)
                                  .order_by(Alert.last_seen_at.desc(), Alert.id.desc()).limit(limit)))
    first = dict(session.execute(sa.select(Delivery.alert_id, sa.func.min(Delivery.id))
                                 .where(Delivery.alert_id.in_([a.id for a in alerts]))
                                 .group_by(Delivery.alert_id)).all()) if alerts else {}
    bodies = {d.id: d for d in session.scalars(sa.select(Delivery).where(Delivery.id.in_(list(first.values()))))}
    options = dict(integration.options or {}) | ({"site_url": integration.site_url} if integration.site_url else {})
    out = []
    for alert in alerts:
        parsed = ParsedEvent(alert.source.value, alert.last_event, Kind.TRIGGER, fingerprint=alert.fingerprint,
                             title=alert.title, severity=alert.severity, environment=alert.environment,
                             tags=tuple(alert.tags or ()))
        payload = None
        delivery = bodies.get(first.get(alert.id))
        if delivery is not None:
            try:
                payload = jsonbody.loads(delivery.body)
                headers = {str(k).lower(): str(v) for k, v in (delivery.headers or {}).items()}
                mine = [e for e in parse(alert.source.value, payload, headers, options)
                        if e.fingerprint == alert.fingerprint]
                parsed = mine[0] if mine else parsed
            except ValueError:  # a body its parser now refuses: the alert's own fields will do
                pass
        out.append(Preview(alert, parsed.event, decide(rules, parsed, parsed.event, payload)))
    return out
