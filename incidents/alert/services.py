"""Alert use cases: integrations and their tokens, ingesting one delivery, replay, and the lists.

Ingestion is built for many concurrent deliveries of one fingerprint (an error storm):
- the alert is written with one INSERT .. ON CONFLICT (integration, fingerprint) WHERE open DO UPDATE,
  so the partial unique index, not timing, keeps one open alert and the count exact;
- `event_count` comes back from that statement: 1 means this delivery inserted the row;
- on PostgreSQL the upsert leaves the alert row locked until commit, and on SQLite every writer holds
  the database lock (BEGIN IMMEDIATE), so deciding "open an incident" after it is race-free;
- the delivery is inserted after the alert with ON CONFLICT (integration, dedup_key) DO NOTHING: no row
  back means a sender retry, and the caller rolls the whole transaction back (the bump included).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, lazyload

from incidents import jsonbody
from incidents.alert.models import (
    OPEN_ALERT_PREDICATE,
    Alert,
    AlertStatus,
    Delivery,
    Integration,
    Outcome,
    Source,
)
from incidents.alert.sources import SOURCES, Kind, ParsedEvent, ParseError, redact_keys, redact_text, text
from incidents.alert.sources import parse as parse_payload
from incidents.auth.models import User
from incidents.bounds import get_by_id
from incidents.catalog import services as catalog
from incidents.database import Page, paginate, utcnow
from incidents.errors import Conflict, Invalid, NotFound
from incidents.incident import services as incidents
from incidents.incident.models import EntryKind, Incident, Severity, Status
from incidents.singleline import check_single_line

# --- rules ------------------------------------------------------------------------------------------

_PRODUCTION = ["production", "prod", "live"]  # Rollbar's own examples call production "live"
_ROLLBAR_OPENING = ["new_item", "reactivated_item", "reopened_item", "item_velocity"]

DEFAULT_RULES: dict[str, list[dict]] = {
    "opsgenie": [
        {"events": ["Create"], "severities": ["P1"], "incident_severity": "SEV1"},
        {"events": ["Create"], "severities": ["P2"], "incident_severity": "SEV2"},
    ],
    "rollbar": [
        {"events": _ROLLBAR_OPENING, "severities": ["critical"], "environments": _PRODUCTION,
         "incident_severity": "SEV1"},
        {"events": _ROLLBAR_OPENING, "severities": ["error"], "environments": _PRODUCTION,
         "incident_severity": "SEV2"},
    ],
}
_RULE_KEYS = {"events", "severities", "environments", "incident_severity"}
# The first event we ever see of an item is treated as its trigger, so a missed new_item (or a project
# that only sends `occurrence`) still opens the incident the rules call for.
_FIRST_SIGHT_EVENT = {"rollbar": "new_item", "opsgenie": "Create"}


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


# --- integrations -----------------------------------------------------------------------------------

TOKEN_PREFIX = "whk_"  # noqa: S105 - a public prefix, not a secret
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class IntegrationInfo:
    """What the webhook hot path needs of an integration, cached per process by token hash."""

    id: int
    source: str
    name: str
    service_id: int | None
    team_id: int | None
    rules: list | None
    active: bool

    @property
    def effective_rules(self) -> list[dict]:
        return self.rules if self.rules is not None else DEFAULT_RULES[self.source]


_cache: dict[str, tuple[float, IntegrationInfo]] = {}


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def forget_cached_integrations() -> None:
    _cache.clear()


def integration_for_token(session: Session, source: str, token: str | None, ttl: float = 10.0
                          ) -> IntegrationInfo | None:
    """The active integration of `source` whose token this is, or None; hits the database at most once
    per token per `ttl` seconds (a disabled or rotated token stops working within ttl on every worker)."""
    if not token or len(token) > 512:
        return None
    digest = hash_token(token)
    now = time.monotonic()
    hit = _cache.get(digest)
    if hit is not None and hit[0] > now:
        info = hit[1]
    else:
        row = session.scalar(sa.select(Integration).where(Integration.token_hash == digest))
        # The lookup is by hash (no timing signal about the token); the compare is constant-time anyway.
        if row is None or not hmac.compare_digest(row.token_hash, digest):
            return None
        info = integration_info(row)
        _cache[digest] = (now + ttl, info)
    return info if info.source == source and info.active else None


def integration_info(row: Integration) -> IntegrationInfo:
    return IntegrationInfo(row.id, row.source.value, row.name, row.service_id, row.team_id, row.rules, row.active)


def webhook_url(base_url: str, source: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/webhooks/{source}?token={token}"


def _check_token(token: str) -> str:
    token = token.strip()
    if len(token) < MIN_TOKEN_LENGTH or len(token) > 200 or not token.isprintable() or " " in token:
        raise Invalid(f"A token needs {MIN_TOKEN_LENGTH} to 200 printable characters without spaces.",
                      {"token": ["Too short or invalid."]})
    return token


def list_integrations(session: Session) -> list[Integration]:
    return list(session.scalars(sa.select(Integration).order_by(Integration.source, Integration.name)))


def get_integration(session: Session, key: int | str) -> Integration:
    if str(key).isdigit():
        row = get_by_id(session, Integration, key)
    else:
        row = session.scalar(sa.select(Integration).where(Integration.name == str(key)))
    if row is None:
        raise NotFound(f"No integration {key!r}.")
    return row


def create_integration(session: Session, *, source: str, name: str, token: str | None = None,
                       service: str | int | None = None, team: str | int | None = None,
                       rules: list | None = None) -> tuple[Integration, str]:
    """Create an integration; returns it and its plain token (shown once, only its hash is stored)."""
    try:
        source = Source(source)
    except ValueError:
        raise Invalid(f"Unknown source {source!r}.", {"source": [f"One of: {', '.join(Source)}."]}) from None
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise Invalid("A name of 1 to 120 characters is required.", {"name": ["Required."]})
    check_single_line(name=name)
    if session.scalar(sa.select(Integration.id).where(Integration.source == source, Integration.name == name)):
        raise Conflict(f"A {source.label} integration named {name!r} exists.", {"name": ["Already in use."]})
    plain = _check_token(token) if token else TOKEN_PREFIX + secrets.token_urlsafe(32)
    if session.scalar(sa.select(Integration.id).where(Integration.token_hash == hash_token(plain))):
        raise Conflict("That token is already used by another integration.", {"token": ["Already in use."]})
    svc = catalog.get_service(session, service) if service else None
    tm = catalog.get_team(session, team) if team else (svc.team if svc else None)
    row = Integration(source=source, name=name, token_hash=hash_token(plain), token_hint=plain[-4:],
                      service=svc, team=tm, rules=validate_rules(rules), active=True)
    session.add(row)
    session.flush()
    return row, plain


def update_integration(session: Session, row: Integration, **changes) -> Integration:
    if "name" in changes:
        name = (changes["name"] or "").strip()
        if not name or len(name) > 120:
            raise Invalid("A name of 1 to 120 characters is required.", {"name": ["Required."]})
        check_single_line(name=name)
        row.name = name
    if "service" in changes:
        row.service = catalog.get_service(session, changes["service"]) if changes["service"] else None
    if "team" in changes:
        row.team = catalog.get_team(session, changes["team"]) if changes["team"] else None
    if "rules" in changes:
        row.rules = validate_rules(changes["rules"])
    if "active" in changes:
        row.active = bool(changes["active"])
    session.flush()
    forget_cached_integrations()
    return row


def rotate_token(session: Session, row: Integration) -> str:
    plain = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row.token_hash, row.token_hint = hash_token(plain), plain[-4:]
    session.flush()
    forget_cached_integrations()
    return plain


# --- ingestion --------------------------------------------------------------------------------------

class Duplicate(Exception):
    """This delivery was received before (same integration and dedup key): nothing may change."""


@dataclass
class Result:
    delivery_id: int | None
    outcome: str
    alert_id: int | None = None
    incident_id: int | None = None
    message: str = ""
    deduplicated: bool = False  # an occurrence folded into an alert that was already open (for metrics)

    def as_json(self) -> dict:
        return {"delivery": self.delivery_id, "outcome": self.outcome, "alert": self.alert_id,
                "incident": self.incident_id, "message": self.message}


def dedup_key(parsed: ParsedEvent | None, raw: bytes | str) -> str:
    """The source's own identity of a delivery (Rollbar occurrence uuid), else the hash of the body."""
    basis = parsed.dedup_key if parsed and parsed.dedup_key else raw
    data = basis.encode("utf-8", "replace") if isinstance(basis, str) else basis
    return hashlib.sha256(data).hexdigest()


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


@functools.cache
def _delivery_insert(dialect: str):
    """Built once per dialect: constructing SQLAlchemy statements costs more than running them."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = Delivery.__table__
    return insert(table).on_conflict_do_nothing(index_elements=["integration_id", "dedup_key"]).returning(table.c.id)


def store_delivery(session: Session, integration_id: int, source: str, *, outcome: Outcome, body: str,
                   headers: dict, received_at: datetime, event: str = "", error: str = "",
                   key: str | None = None, alert_id: int | None = None) -> int:
    """Insert one delivery; raises Duplicate when its key was seen before for this integration."""
    values = dict(integration_id=integration_id, source=source, received_at=received_at, event=event[:64],
                  outcome=outcome, error=error, dedup_key=key, body=body, headers=headers, alert_id=alert_id,
                  replayed_at=None)
    delivery_id = session.connection().execute(_delivery_insert(_dialect(session)), values).scalar()
    if delivery_id is None:
        raise Duplicate(key)
    return delivery_id


def ingest(session: Session, info: IntegrationInfo, parsed: ParsedEvent, *, body: str, headers: dict,
           received_at: datetime, key: str, replay_of: int | None = None) -> Result:
    """Apply one parsed delivery inside the caller's transaction (which it never commits)."""
    def record(outcome: Outcome, alert_id: int | None = None, error: str = "") -> int:
        if replay_of is not None:
            session.execute(sa.update(Delivery).where(Delivery.id == replay_of).values(
                outcome=outcome, alert_id=alert_id, error=error, event=parsed.event[:64], replayed_at=utcnow()))
            return replay_of
        return store_delivery(session, info.id, info.source, outcome=outcome, body=body, headers=headers,
                              received_at=received_at, event=parsed.event, error=error, key=key,
                              alert_id=alert_id)

    kind = parsed.kind
    if kind == Kind.IGNORE:
        return Result(record(Outcome.IGNORED, error=parsed.reason), Outcome.IGNORED, message=parsed.reason)
    # Event times come from the sender's clock: never later than when we received the event.
    at = min(parsed.occurred_at or received_at, received_at)
    if kind == Kind.DEPLOY:
        delivery_id = record(Outcome.PROCESSED)
        count = _record_deploy(session, info, parsed, at, delivery_id)
        return Result(delivery_id, Outcome.PROCESSED, message=f"{parsed.reason}; noted on {count} open incident(s).")
    if kind in (Kind.TRIGGER, Kind.REPEAT, Kind.REACTIVATE, Kind.ACKNOWLEDGE, Kind.UNACKNOWLEDGE, Kind.NOTE):
        row = _upsert_alert(session, info, parsed, at, received_at)
        deduplicated = bool(parsed.bump) and row.occurrence_count > 1
    else:
        deduplicated = False
        row = _touch_open_alert(session, info, parsed, at, received_at)
        if row is None:
            what = f"alertId {parsed.external_id}" if kind == Kind.ESCALATE else f"fingerprint {parsed.fingerprint}"
            message = f"No open alert with {what}: nothing to {parsed.event}."
            return Result(record(Outcome.IGNORED, error=message), Outcome.IGNORED, message=message)
    delivery_id = record(Outcome.PROCESSED, alert_id=row.id)
    incident_id = _apply(session, info, parsed, row, at, delivery_id)
    return Result(delivery_id, Outcome.PROCESSED, row.id, incident_id, deduplicated=deduplicated)


@functools.cache
def _alert_upsert(dialect: str, bump: bool, set_status: bool):
    """INSERT .. ON CONFLICT (integration_id, fingerprint) WHERE open DO UPDATE .. RETURNING, built once."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = Alert.__table__
    c = table.c
    stmt = insert(table)
    new = stmt.excluded
    changes: dict[str, Any] = {
        "event_count": c.event_count + 1,
        "last_event": new.last_event,
        "updated_at": new.updated_at,
        "title": new.title,
        "severity": sa.func.coalesce(new.severity, c.severity),
        "environment": sa.func.coalesce(new.environment, c.environment),
        "external_id": sa.func.coalesce(c.external_id, new.external_id),
        "link": sa.func.coalesce(c.link, new.link),
    }
    if bump:
        changes["occurrence_count"] = c.occurrence_count + 1
        changes["last_seen_at"] = sa.case((new.last_seen_at > c.last_seen_at, new.last_seen_at),
                                          else_=c.last_seen_at)
    if set_status:
        changes["status"] = new.status
    return stmt.on_conflict_do_update(
        index_elements=["integration_id", "fingerprint"], index_where=sa.text(OPEN_ALERT_PREDICATE), set_=changes,
    ).returning(c.id, c.incident_id, c.event_count, c.occurrence_count, c.status)


def _upsert_alert(session: Session, info: IntegrationInfo, parsed: ParsedEvent, at: datetime, now: datetime):
    kind = parsed.kind
    status = AlertStatus.ACKNOWLEDGED if kind == Kind.ACKNOWLEDGE else AlertStatus.OPEN
    stmt = _alert_upsert(_dialect(session), parsed.bump, kind in (Kind.ACKNOWLEDGE, Kind.UNACKNOWLEDGE))
    return session.connection().execute(stmt, dict(
        integration_id=info.id, source=info.source, fingerprint=parsed.fingerprint,
        external_id=parsed.external_id, title=parsed.title or parsed.fingerprint, description=parsed.description,
        severity=parsed.severity, status=status, environment=parsed.environment, link=parsed.link,
        first_seen_at=at, last_seen_at=at, occurrence_count=1, event_count=1, last_event=parsed.event[:64],
        incident_id=None, closed_at=None, created_at=now, updated_at=now,
    )).one()


def _touch_open_alert(session: Session, info: IntegrationInfo, parsed: ParsedEvent, at: datetime, now: datetime):
    """Find (and lock, by updating) the open alert an annotation or close event is about; None if there is none."""
    close = parsed.kind == Kind.CLOSE
    params: dict[str, Any] = {
        "b_integration_id": info.id, "b_last_event": parsed.event[:64], "b_now": now,
        "b_match": parsed.external_id if parsed.kind == Kind.ESCALATE else parsed.fingerprint}
    if close:
        params.update(b_status=AlertStatus.RESOLVED if info.source == "rollbar" else AlertStatus.CLOSED,
                      b_closed_at=at)
    return session.connection().execute(_touch_statement(parsed.kind == Kind.ESCALATE, close), params).first()


@functools.cache
def _touch_statement(by_external_id: bool, close: bool):
    """UPDATE .. RETURNING of the open alert, built once per shape (building it cost more than running it).
    Core, on the connection: no Alert object is loaded on this path, so the ORM's identity-map sync is moot."""
    c = Alert.__table__.c
    match = c.external_id if by_external_id else c.fingerprint
    values: dict[str, Any] = {"event_count": c.event_count + 1, "last_event": sa.bindparam("b_last_event"),
                              "updated_at": sa.bindparam("b_now", type_=c.updated_at.type)}
    if close:
        values.update(status=sa.bindparam("b_status", type_=c.status.type),
                      closed_at=sa.bindparam("b_closed_at", type_=c.closed_at.type))
    return (sa.update(Alert.__table__)
            .where(c.integration_id == sa.bindparam("b_integration_id"), sa.text(OPEN_ALERT_PREDICATE),
                   match == sa.bindparam("b_match", type_=match.type))
            .values(values)
            .returning(c.id, c.incident_id, c.event_count, c.occurrence_count, c.status))


def _apply(session: Session, info: IntegrationInfo, parsed: ParsedEvent, row, at: datetime,
           delivery_id: int) -> int | None:
    """The lifecycle after the alert row is written (and locked): rules, incident, timeline."""
    kind, label = parsed.kind, Source(info.source).label
    incident_id = row.incident_id
    if kind in (Kind.TRIGGER, Kind.REPEAT):
        if incident_id is None:
            first_sight = row.event_count == 1
            event = _FIRST_SIGHT_EVENT[info.source] if first_sight and kind == Kind.REPEAT else parsed.event
            severity = match_rules(info.effective_rules, parsed, event)
            if severity is not None:
                return _open_incident(session, info, parsed, row.id, severity, at, delivery_id)
        elif parsed.reason:  # item_velocity, exp_repeat_item: worth a line on an open incident
            _alert_entry(session, incident_id, parsed.reason, parsed, row.id, delivery_id, at, only_open=True)
        return incident_id

    if kind == Kind.REACTIVATE:
        incident = _incident(session, incident_id) if incident_id else None
        verb = "reactivated" if parsed.event == "reactivated_item" else "reopened"
        if incident is not None and incident.is_open:
            _alert_entry(session, incident_id, f"{label}: item {verb}", parsed, row.id, delivery_id, at)
            return incident_id
        previous = incident or _previous_incident(session, info.id, parsed.fingerprint, row.id)
        severity = match_rules(info.effective_rules, parsed, parsed.event)
        if previous is not None:
            severity = severity or previous.severity
        if severity is None:
            return incident_id
        return _open_incident(session, info, parsed, row.id, severity, at, delivery_id, repeat_of=previous)

    if incident_id is None:
        return None
    by = f" by {parsed.actor}" if parsed.actor else ""
    if kind == Kind.ACKNOWLEDGE:
        incident = _incident(session, incident_id)
        if incident is not None and incident.status == Status.TRIGGERED:
            # The responder acknowledged in OpsGenie: that moment is this incident's MTTA.
            incidents.acknowledge_incident(session, incident, at=max(at, incident.detected_at))
        _alert_entry(session, incident_id, f"{label}: alert acknowledged{by}", parsed, row.id, delivery_id, at)
    elif kind == Kind.UNACKNOWLEDGE:
        _alert_entry(session, incident_id, f"{label}: alert unacknowledged{by}", parsed, row.id, delivery_id, at)
    elif kind == Kind.NOTE:
        incident = _incident(session, incident_id)
        if incident is not None and parsed.note:
            incidents.add_note(session, incident, f"{parsed.note}\n\n*{parsed.actor or 'Someone'}, in {label}*",
                               occurred_at=at)
    elif kind == Kind.CLOSE:
        verb = "item resolved" if info.source == "rollbar" else f"alert {parsed.event.lower()}d"
        _alert_entry(session, incident_id, f"{label}: {verb}{by}", parsed, row.id, delivery_id, at)
    else:  # INFO, ESCALATE
        _alert_entry(session, incident_id, parsed.reason, parsed, row.id, delivery_id, at)
    return incident_id


_STATUS_OF_INCIDENT = sa.select(Incident.__table__.c.status).where(Incident.__table__.c.id == sa.bindparam("id"))


def _alert_entry(session: Session, incident_id: int, line: str, parsed: ParsedEvent, alert_id: int,
                 delivery_id: int, at: datetime, only_open: bool = False) -> None:
    # The status only, and the entry as a plain INSERT: loading the incident (and its tags) and an ORM flush
    # cost more than the rest of the delivery. Alert entries announce nothing, so no notification is skipped.
    status = session.connection().execute(_STATUS_OF_INCIDENT, {"id": incident_id}).scalar()
    if status is None or (only_open and not status.is_open):
        return
    incidents.add_timeline_entries(session, [incident_id], EntryKind.ALERT, line, occurred_at=at, data={
        "source": parsed.source, "event": parsed.event, "alert_id": alert_id, "delivery_id": delivery_id})


def _previous_incident(session: Session, integration_id: int, fingerprint: str | None, alert_id: int):
    """The incident of the most recent earlier alert with this fingerprint, if any."""
    incident_id = session.scalar(
        sa.select(Alert.incident_id).where(Alert.integration_id == integration_id, Alert.fingerprint == fingerprint,
                                           Alert.id != alert_id, Alert.incident_id.is_not(None))
        .order_by(Alert.id.desc()).limit(1))
    return _incident(session, incident_id) if incident_id else None


def _incident(session: Session, incident_id: int) -> Incident | None:
    # Without the eager load of its tags: the webhook path reads the status and writes entries, nothing more
    # (anything else it touches still loads, lazily).
    return session.get(Incident, incident_id, options=[lazyload("*")])


def _open_incident(session: Session, info: IntegrationInfo, parsed: ParsedEvent, alert_id: int,
                   severity: Severity, at: datetime, delivery_id: int | None, *,
                   repeat_of: Incident | None = None, by: User | None = None) -> int:
    label = Source(info.source).label
    summary = "\n\n".join(p for p in (parsed.description, f"[Open in {label}]({parsed.link})" if parsed.link else "")
                          if p)
    incident_id = incidents.declare_incident(
        session, title=parsed.title or f"{label} alert {parsed.fingerprint}", severity=severity,
        summary=summary, service_id=info.service_id, team_id=info.team_id, tags=[info.source],
        started_at=at, detected_at=at, created_by=by, repeat_of_id=repeat_of.id if repeat_of is not None else None,
    )
    line = f"Opened from {label} alert: {parsed.title}"
    if repeat_of is not None:
        line += f" (repeat of {repeat_of.ref})"
    incidents.add_timeline_entries(session, [incident_id], EntryKind.ALERT, line, author=by, occurred_at=at, data={
        "source": parsed.source, "event": parsed.event, "alert_id": alert_id, "delivery_id": delivery_id,
        "fingerprint": parsed.fingerprint, "link": parsed.link, "repeat_of": repeat_of.id if repeat_of else None})
    session.execute(sa.update(Alert).where(Alert.id == alert_id).values(incident_id=incident_id))
    return incident_id


def _record_deploy(session: Session, info: IntegrationInfo, parsed: ParsedEvent, at: datetime,
                   delivery_id: int) -> int:
    """Note a deploy on every open incident fed by this integration's alerts in the deploy's environment."""
    if not parsed.environment:
        return 0
    linked = sa.select(Alert.incident_id).where(Alert.integration_id == info.id,
                                                Alert.environment == parsed.environment)
    open_incidents = (sa.select(Incident.id)
                      .where(Incident.id.in_(linked), Incident.status.not_in([Status.RESOLVED, Status.CLOSED])))
    # One INSERT .. SELECT: during an alert storm hundreds of incidents can be open, and an ORM flush per
    # incident made one deploy delivery take ~0.4 s while holding the write lock; fetching the ids and an
    # executemany still cost ~6 ms there (bench/README.md). Now no row passes through Python.
    return incidents.add_timeline_entries_where(
        session, open_incidents, EntryKind.DEPLOY, parsed.reason, occurred_at=at,
        data=parsed.deploy | {"delivery_id": delivery_id, "source": parsed.source})


# --- replay -----------------------------------------------------------------------------------------

REPLAYABLE = (Outcome.FAILED, Outcome.REJECTED, Outcome.IGNORED)


def replay_delivery(session: Session, delivery: Delivery) -> Result:
    """Run a stored delivery through parse and ingest again, in a savepoint: a failure is written on the
    delivery instead of aborting the caller's transaction. Processed deliveries are never re-applied."""
    if delivery.outcome not in REPLAYABLE:
        raise Conflict(f"Delivery {delivery.id} was {delivery.outcome.value}; only "
                       f"{', '.join(o.value for o in REPLAYABLE)} deliveries can be replayed.")
    info = integration_info(delivery.integration)
    try:
        parsed = parse_payload(info.source, jsonbody.loads(delivery.body))
    except ValueError as e:
        message = str(e) if isinstance(e, ParseError | jsonbody.TooDeep) else "The body is not valid JSON."
        delivery.outcome, delivery.error, delivery.replayed_at = Outcome.REJECTED, message, utcnow()
        session.flush()
        return Result(delivery.id, Outcome.REJECTED, message=message)
    key = delivery.dedup_key or dedup_key(parsed, delivery.body)
    try:
        with session.begin_nested():
            result = ingest(session, info, parsed, body=delivery.body, headers=delivery.headers,
                            received_at=delivery.received_at, key=key, replay_of=delivery.id)
    except Exception as e:  # noqa: BLE001 - the point of replay is to survive and record our own bugs
        delivery.outcome, delivery.error, delivery.replayed_at = Outcome.FAILED, describe_error(e), utcnow()
        session.flush()
        return Result(delivery.id, Outcome.FAILED, message=delivery.error)
    session.expire(delivery)
    return result


def describe_error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:2000]


# --- bodies and headers -----------------------------------------------------------------------------

SAFE_HEADERS = ("Content-Type", "Content-Length", "User-Agent", "X-Forwarded-For", "X-Request-Id")


def safe_headers(headers, remote_addr: str | None) -> dict:
    """Only headers that help debugging and carry no secret (never the token, cookies or Authorization)."""
    kept = {name: text(headers.get(name), 300) for name in SAFE_HEADERS if headers.get(name)}
    if remote_addr:
        kept["Remote-Addr"] = text(remote_addr, 64)
    return kept


def stored_body(raw: bytes, payload: Any = None, redact: Callable[[dict], bool] = redact_keys) -> str:
    """The text kept for inspection, secrets redacted whatever the outcome (processed, rejected, failed): a JSON
    payload goes through `redact` (a source's own, for objects) and is re-serialised when that found anything;
    a body that is not readable JSON keeps its text with the values of secret-looking keys blanked.

    `payload` is redacted in place: parse it first."""
    if isinstance(payload, dict | list):
        found = redact(payload) if isinstance(payload, dict) else redact_keys(payload)
        if found:
            return json.dumps(payload, ensure_ascii=True)
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        body = json.dumps(payload, ensure_ascii=True) if payload is not None else raw.decode("utf-8", "replace")
    if not isinstance(payload, dict | list):
        body = redact_text(body)
    return body.replace("\x00", "\ufffd")  # PostgreSQL text cannot hold NUL


def delivery_body(source: str, raw: bytes, payload: Any = None) -> str:
    """What a webhook delivery of `source` stores, on every path: stored_body with the source's redaction."""
    return stored_body(raw, payload, SOURCES[source].redact)


# --- lists ------------------------------------------------------------------------------------------

@dataclass
class AlertFilter:
    status: str | None = None  # open (open + acknowledged), a status value, or None for all
    source: str | None = None
    integration: int | None = None
    severity: str | None = None
    environment: str | None = None
    q: str | None = None


def list_alerts(session: Session, f: AlertFilter, page: int = 1, per_page: int = 25) -> Page:
    stmt = sa.select(Alert).order_by(Alert.last_seen_at.desc(), Alert.id.desc())
    if f.status == "open":
        stmt = stmt.where(Alert.status.in_([AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED]))
    elif f.status:
        try:
            stmt = stmt.where(Alert.status == AlertStatus(f.status))
        except ValueError:
            raise Invalid(f"Unknown status {f.status!r}.", {"status": ["Unknown status."]}) from None
    if f.source:
        stmt = stmt.where(Alert.source == f.source)
    if f.integration:
        stmt = stmt.where(Alert.integration_id == f.integration)
    if f.severity:
        stmt = stmt.where(Alert.severity == f.severity)
    if f.environment:
        stmt = stmt.where(Alert.environment == f.environment)
    if f.q:
        like = "%" + f.q.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(sa.or_(Alert.title.ilike(like, escape="\\"), Alert.fingerprint == f.q.strip()))
    return paginate(session, stmt, page, per_page)


def get_alert(session: Session, alert_id: int | str) -> Alert:
    alert = get_by_id(session, Alert, alert_id)
    if alert is None:
        raise NotFound(f"No alert {alert_id}.")
    return alert


def list_deliveries(session: Session, *, integration: int | None = None, outcome: str | None = None,
                    alert: int | None = None, page: int = 1, per_page: int = 25) -> Page:
    stmt = sa.select(Delivery).order_by(Delivery.received_at.desc(), Delivery.id.desc())
    if integration:
        stmt = stmt.where(Delivery.integration_id == integration)
    if outcome:
        try:
            stmt = stmt.where(Delivery.outcome == Outcome(outcome))
        except ValueError:
            raise Invalid(f"Unknown outcome {outcome!r}.", {"outcome": [f"One of: {', '.join(Outcome)}."]}) from None
    if alert:
        stmt = stmt.where(Delivery.alert_id == alert)
    return paginate(session, stmt, page, per_page)


def get_delivery(session: Session, delivery_id: int | str) -> Delivery:
    delivery = get_by_id(session, Delivery, delivery_id)
    if delivery is None:
        raise NotFound(f"No delivery {delivery_id}.")
    return delivery


# --- responder actions ------------------------------------------------------------------------------

def open_incident_from_alert(session: Session, alert: Alert, severity: Severity | str, *,
                             by: User | None = None) -> Incident:
    """A responder decides this alert deserves an incident (the rules did not open one)."""
    if alert.incident_id is not None:
        raise Conflict(f"Alert {alert.id} already belongs to {alert.incident.ref}.")
    try:
        severity = Severity(severity)
    except ValueError:
        raise Invalid(f"Unknown severity {severity!r}.", {"severity": [f"One of: {', '.join(Severity)}."]}) from None
    parsed = ParsedEvent(alert.source.value, "manual", Kind.TRIGGER, fingerprint=alert.fingerprint,
                         title=alert.title, description=alert.description, link=alert.link)
    info = integration_info(alert.integration)
    previous = _previous_incident(session, info.id, alert.fingerprint, alert.id)
    repeat_of = previous if previous is not None and not previous.is_open else None
    incident_id = _open_incident(session, info, parsed, alert.id, severity, utcnow(), None,
                                 repeat_of=repeat_of, by=by)
    session.refresh(alert)
    return session.get(Incident, incident_id)


def attach_alert(session: Session, alert: Alert, incident: Incident, *, by: User | None = None) -> Alert:
    """Link an alert to an existing incident (its later events then write that incident's timeline)."""
    if alert.incident_id == incident.id:
        return alert
    alert.incident = incident
    session.flush()
    incidents.add_timeline_entry(
        session, incident, EntryKind.ALERT, f"Alert attached: {alert.title}", author=by,
        data={"source": alert.source.value, "event": "attach", "alert_id": alert.id, "link": alert.link})
    return alert
