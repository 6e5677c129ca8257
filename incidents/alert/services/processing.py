"""Applying one delivery inside the caller's transaction: the alert, the incident its rules open, the timeline.

Ingestion is built for many concurrent deliveries of one fingerprint (an error storm):
- the alert is written with one INSERT .. ON CONFLICT (integration, fingerprint) WHERE open DO UPDATE,
  so the partial unique index, not timing, keeps one open alert and the count exact;
- `event_count` comes back from that statement: 1 means this delivery inserted the row;
- on PostgreSQL the upsert leaves the alert row locked until commit, and on SQLite every writer holds
  the database lock (BEGIN IMMEDIATE), so deciding "open an incident" after it is race-free;
- the delivery is inserted after the alert with ON CONFLICT (integration, dedup_key) DO NOTHING: no row
  back means a sender retry, and the caller rolls the whole transaction back (the bump included);
- a delivery that touched an alert emits `alert.received`, whichever path (batched, alone, replay) applied it.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, lazyload

from incidents import events
from incidents.alert.models import OPEN_ALERT_PREDICATE, Alert, AlertStatus, Delivery, Outcome, Source
from incidents.alert.services.incident_sync import change_priority, environment_tag, note_all_closed
from incidents.alert.services.integrations import IntegrationInfo
from incidents.alert.services.rules import Decision, decide
from incidents.alert.sources import SOURCES, Kind, ParsedEvent
from incidents.auth.models import User
from incidents.database import utcnow
from incidents.incident import services as incidents
from incidents.incident.models import EntryKind, Incident, Severity, Status
from incidents.prepared import Prepared
from incidents.webhooks import stored_body

# The first event we ever see of an item is treated as its trigger, so a missed new_item (or a project
# that only sends `occurrence`) still opens the incident the rules call for.
_FIRST_SIGHT_EVENT = {"rollbar": "new_item", "opsgenie": "Create"}
# Opsgenie's (and JSM's) Close and Delete close an alert; every other CLOSE event (Rollbar resolved_item,
# Alertmanager's resolved ...) resolves it.
_CLOSING_ACTIONS = frozenset({"Close", "Delete"})


class Duplicate(Exception):
    """This delivery was received before (same integration and dedup key): nothing may change."""


@dataclass
class Result:
    delivery_id: int | None
    outcome: str
    alert_id: int | None = None  # the delivery's first alert (in the body's order), as its row records
    incident_id: int | None = None
    message: str = ""
    deduplicated: bool = False  # an occurrence folded into an alert that was already open (for metrics)
    alert_ids: list[int] = field(default_factory=list)  # every alert the delivery touched, in the body's order

    def as_json(self) -> dict:
        return {"delivery": self.delivery_id, "outcome": self.outcome, "alert": self.alert_id,
                "incident": self.incident_id, "message": self.message,
                "alerts": self.alert_ids or ([self.alert_id] if self.alert_id else [])}


# What a delivery carries: its parser's events (one ParsedEvent is accepted for one-event callers).
Events = ParsedEvent | Sequence[ParsedEvent]


def events_of(parsed: Events) -> tuple[ParsedEvent, ...]:
    return (parsed,) if isinstance(parsed, ParsedEvent) else tuple(parsed)


def first_event(parsed: Events) -> ParsedEvent:
    return events_of(parsed)[0]


def lock_key(event: ParsedEvent) -> str:
    """The alert row an event writes, as the key every transaction takes its alert rows in ("" for none)."""
    if event.kind in (Kind.IGNORE, Kind.DEPLOY):
        return ""
    return event.fingerprint or event.external_id or ""


def dedup_key(parsed: Events | None, raw: bytes | str, *, by_body: bool = True) -> str | None:
    """The source's own identity of a delivery (Rollbar occurrence uuid, the first event's), else the hash of
    the body; None (every delivery stored) for a sender whose identical bodies are deliberate re-sends."""
    first = first_event(parsed) if parsed else None
    if not (first and first.dedup_key) and not by_body:
        return None
    basis = first.dedup_key if first and first.dedup_key else raw
    data = basis.encode("utf-8", "replace") if isinstance(basis, str) else basis
    return hashlib.sha256(data).hexdigest()


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


@functools.cache
def _delivery_insert(dialect: str):
    """Built once per dialect: constructing SQLAlchemy statements costs more than running them."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = Delivery.__table__
    return Prepared(insert(table).on_conflict_do_nothing(index_elements=["integration_id", "dedup_key"])
                    .returning(table.c.id))


@functools.cache
def _stored_keys(dialect: str) -> Prepared:
    """SELECT of the (integration, dedup key) pairs already stored among some, on the unique index, as one statement
    text for every batch size (run once per batch, on the writer's turn): PostgreSQL takes the lists as arrays,
    SQLite as JSON arrays read by json_each (an expanding IN would be rendered afresh for each size)."""
    c = Delivery.__table__.c
    if dialect == "postgresql":
        ids = sa.bindparam("ids", type_=postgresql.ARRAY(sa.Integer))
        keys = sa.bindparam("keys", type_=postgresql.ARRAY(c.dedup_key.type))
        where = (c.integration_id == sa.any_(ids), c.dedup_key == sa.any_(keys))
    else:
        ids = sa.func.json_each(sa.bindparam("ids", type_=sa.JSON)).table_valued("value")
        keys = sa.func.json_each(sa.bindparam("keys", type_=sa.JSON)).table_valued("value")
        where = (c.integration_id.in_(sa.select(ids.c.value)), c.dedup_key.in_(sa.select(keys.c.value)))
    return Prepared(sa.select(c.integration_id, c.dedup_key).where(*where))


def stored_keys(session: Session, pairs: Sequence[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which of these (integration, dedup key) pairs a committed delivery already holds: sender retries, which
    change nothing. (A retry whose first delivery is not committed yet is still refused by `store_delivery`.)"""
    if not pairs:
        return set()
    found = _stored_keys(_dialect(session)).execute(session, {
        "ids": sorted({i for i, _ in pairs}), "keys": sorted({k for _, k in pairs})})
    return set(pairs) & {(i, k) for i, k in found}


def store_delivery(session: Session, integration_id: int, source: str, *, outcome: Outcome, body: str,
                   headers: dict, received_at: datetime, event: str = "", error: str = "",
                   key: str | None = None, alert_id: int | None = None) -> int:
    """Insert one delivery; raises Duplicate when its key was seen before for this integration."""
    values = dict(integration_id=integration_id, source=source, received_at=received_at, event=event[:64],
                  outcome=outcome, error=error, dedup_key=key, body=body, headers=headers, alert_id=alert_id,
                  replayed_at=None)
    delivery_id = _delivery_insert(_dialect(session)).execute(session, values).scalar()
    if delivery_id is None:
        raise Duplicate(key)
    return delivery_id


def ingest(session: Session, info: IntegrationInfo, parsed: Events, *, body: str, headers: dict,
           received_at: datetime, key: str, replay_of: int | None = None, payload: Any = None) -> Result:
    """Apply one parsed delivery inside the caller's transaction (which it never commits): one delivery row, and
    each of its events in turn.

    Events are applied in lock order (by alert key, stable: one alert's events keep the body's order), so that
    transactions always take alert rows in one global order (batching.py). The delivery row is inserted once
    the first alert is written (its dedup key refuses a sender's retry), records the body's first alert, and is
    `ignored` when no event touched anything. `payload` is the parsed JSON body, for rules on a payload field."""
    events_ = events_of(parsed)
    delivery_id: int | None = None
    recorded_alert: int | None = None
    touched: list[tuple[int, int, int | None]] = []  # (position in the body, alert id, incident id)
    ignored: list[str] = []
    messages: list[str] = []
    deduplicated = False

    def record(outcome: Outcome, alert_id: int | None = None, error: str = "") -> int:
        nonlocal delivery_id, recorded_alert
        event = events_[0].event[:64]
        recorded_alert = alert_id
        if replay_of is not None:
            session.execute(sa.update(Delivery).where(Delivery.id == replay_of).values(
                outcome=outcome, alert_id=alert_id, error=error, event=event, replayed_at=utcnow()))
            delivery_id = replay_of
        else:
            delivery_id = store_delivery(session, info.id, info.source, outcome=outcome, body=body,
                                         headers=headers, received_at=received_at, event=event, error=error,
                                         key=key, alert_id=alert_id)
        return delivery_id

    order = sorted(range(len(events_)), key=lambda n: lock_key(events_[n])) if len(events_) > 1 else [0]
    for n in order:
        event = events_[n]
        kind = event.kind
        if kind == Kind.IGNORE:
            ignored.append(event.reason)
            continue
        # Event times come from the sender's clock: never later than when we received the event.
        at = min(event.occurred_at or received_at, received_at)
        if kind == Kind.DEPLOY:
            if delivery_id is None:
                record(Outcome.PROCESSED)
            count = _record_deploy(session, info, event, at, delivery_id)
            messages.append(f"{event.reason}; noted on {count} open incident(s).")
            continue
        if event.occurrence and kind in (Kind.TRIGGER, Kind.REPEAT) and _episode_ended(session, info, event):
            ignored.append(f"Alert {event.fingerprint}: its episode {event.occurrence} has already ended; "
                           "a late re-send changes nothing.")
            continue
        if kind in (Kind.TRIGGER, Kind.REPEAT, Kind.REACTIVATE, Kind.ACKNOWLEDGE, Kind.UNACKNOWLEDGE, Kind.NOTE):
            row = _upsert_alert(session, info, event, at, received_at)
            if event.occurrence:  # folded into the open alert (its episode again, or its next one)
                deduplicated = deduplicated or row.event_count > 1
            else:
                deduplicated = deduplicated or (bool(event.bump) and row.occurrence_count > 1)
        else:
            row = _touch_open_alert(session, info, event, at, received_at)
            if row is None:
                what = f"alertId {event.external_id}" if kind == Kind.ESCALATE else f"fingerprint {event.fingerprint}"
                ignored.append(f"No open alert with {what}: the {event.event} event changes nothing.")
                continue
        if delivery_id is None:
            record(Outcome.PROCESSED, alert_id=row.id)
        incident_id = _apply(session, info, event, row, at, delivery_id, payload)
        if kind == Kind.PRIORITY:
            change_priority(session, info, event, row.id, incident_id)
        events.emit(session, "alert.received", alert_id=row.id, delivery_id=delivery_id, kind=kind.value,
                    incident_id=incident_id)
        touched.append((n, row.id, incident_id))

    if delivery_id is not None:  # after every alert row of the delivery is written (and locked): incidents last
        note_all_closed(session, info, _closed_incidents(events_, touched, received_at), delivery_id)
    if delivery_id is None:  # nothing but events we do not act on
        message = ignored[0] if len(set(ignored)) == 1 else f"{len(ignored)} events, none acted on: {ignored[0]}"
        return Result(record(Outcome.IGNORED, error=message), Outcome.IGNORED, message=message)
    touched.sort()
    alert_ids = list(dict.fromkeys(alert_id for _n, alert_id, _i in touched))
    first_alert, first_incident = (touched[0][1], touched[0][2]) if touched else (None, None)
    if first_alert != recorded_alert:  # several alerts, taken in lock order: the row names the body's first
        session.connection().execute(_DELIVERY_ALERT, {"b_id": delivery_id, "b_alert_id": first_alert})
    return Result(delivery_id, Outcome.PROCESSED, first_alert, first_incident, message=" ".join(messages),
                  deduplicated=deduplicated, alert_ids=alert_ids)


def _closed_incidents(events_: Sequence[ParsedEvent], touched: list[tuple[int, int, int | None]],
                      received_at: datetime) -> list[tuple[int, datetime]]:
    """(incident, when) for each alert with an incident this delivery closed or resolved."""
    return [(incident_id, min(events_[n].occurred_at or received_at, received_at))
            for n, _alert, incident_id in touched if incident_id is not None and events_[n].kind == Kind.CLOSE]


@functools.cache
def _alert_upsert(dialect: str, bump: bool, set_status: bool, episode: bool = False, tags: bool = False):
    """INSERT .. ON CONFLICT (integration_id, fingerprint) WHERE open DO UPDATE .. RETURNING, built once per shape.

    `episode`: the event names its firing episode; the same one as the alert's moves last seen only, another one
    is one more occurrence and becomes the alert's. `tags`: the event's tags replace the alert's."""
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
    later = sa.case((new.last_seen_at > c.last_seen_at, new.last_seen_at), else_=c.last_seen_at)
    if episode:
        # A NULL stored episode compares as different: the first event that names one starts it.
        changes["occurrence_count"] = c.occurrence_count + sa.case((c.occurrence == new.occurrence, 0), else_=1)
        changes["occurrence"] = new.occurrence
        changes["last_seen_at"] = later
    elif bump:
        changes["occurrence_count"] = c.occurrence_count + 1
        changes["last_seen_at"] = later
    if set_status:
        changes["status"] = new.status
    if tags:
        changes["tags"] = new.tags
    return Prepared(stmt.on_conflict_do_update(
        index_elements=["integration_id", "fingerprint"], index_where=sa.text(OPEN_ALERT_PREDICATE), set_=changes,
    ).returning(c.id, c.incident_id, c.event_count, c.occurrence_count, c.status))


MAX_ALERT_TAGS = 50


def _episode(parsed: ParsedEvent) -> str | None:
    """The event's firing episode, fitted to the column (a long one is hashed, so two never collide)."""
    value = parsed.occurrence
    if not value:
        return None
    return value if len(value) <= 100 else "sha256:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()


def _tags(parsed: ParsedEvent) -> list[str]:
    return list(dict.fromkeys(t for t in parsed.tags if isinstance(t, str) and t))[:MAX_ALERT_TAGS]


def _upsert_alert(session: Session, info: IntegrationInfo, parsed: ParsedEvent, at: datetime, now: datetime):
    kind = parsed.kind
    status = AlertStatus.ACKNOWLEDGED if kind == Kind.ACKNOWLEDGE else AlertStatus.OPEN
    episode, tags = _episode(parsed), _tags(parsed)
    stmt = _alert_upsert(_dialect(session), parsed.bump, kind in (Kind.ACKNOWLEDGE, Kind.UNACKNOWLEDGE),
                         episode is not None, bool(tags))
    return stmt.execute(session, dict(
        integration_id=info.id, source=info.source, fingerprint=parsed.fingerprint,
        external_id=parsed.external_id, title=parsed.title or parsed.fingerprint, description=parsed.description,
        severity=parsed.severity, status=status, environment=parsed.environment, link=parsed.link,
        first_seen_at=at, last_seen_at=at, occurrence_count=1, event_count=1, last_event=parsed.event[:64],
        incident_id=None, closed_at=None, occurrence=episode, tags=tags, created_at=now, updated_at=now,
    )).one()


def _episode_ended(session: Session, info: IntegrationInfo, parsed: ParsedEvent) -> bool:
    """Whether this firing episode (Alertmanager's startsAt) was already resolved or closed: one peer of an HA pair
    may re-send the firing notification after the other sent the resolve; the same episode does not fire again."""
    return session.connection().execute(_ENDED_EPISODE, {
        "integration_id": info.id, "fingerprint": parsed.fingerprint, "occurrence": _episode(parsed)}).first() \
        is not None


_ENDED_EPISODE = (sa.select(Alert.__table__.c.id).where(
    Alert.__table__.c.integration_id == sa.bindparam("integration_id"),
    Alert.__table__.c.fingerprint == sa.bindparam("fingerprint"),
    Alert.__table__.c.occurrence == sa.bindparam("occurrence"),
    Alert.__table__.c.status.in_([AlertStatus.RESOLVED, AlertStatus.CLOSED])).limit(1))


def _touch_open_alert(session: Session, info: IntegrationInfo, parsed: ParsedEvent, at: datetime, now: datetime):
    """Find (and lock, by updating) the open alert an annotation or close event is about; None if there is none."""
    close = parsed.kind == Kind.CLOSE
    params: dict[str, Any] = {
        "b_integration_id": info.id, "b_last_event": parsed.event[:64], "b_now": now,
        "b_match": parsed.external_id if parsed.kind == Kind.ESCALATE else parsed.fingerprint}
    if close:
        params.update(b_status=AlertStatus.CLOSED if parsed.event in _CLOSING_ACTIONS else AlertStatus.RESOLVED,
                      b_closed_at=at)
    return _touch_statement(parsed.kind == Kind.ESCALATE, close).execute(session, params).first()


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
    return Prepared(sa.update(Alert.__table__)
                    .where(c.integration_id == sa.bindparam("b_integration_id"), sa.text(OPEN_ALERT_PREDICATE),
                           match == sa.bindparam("b_match", type_=match.type))
                    .values(values)
                    .returning(c.id, c.incident_id, c.event_count, c.occurrence_count, c.status))


def _apply(session: Session, info: IntegrationInfo, parsed: ParsedEvent, row, at: datetime,
           delivery_id: int, payload: Any = None) -> int | None:
    """The lifecycle after the alert row is written (and locked): rules, incident, timeline."""
    kind, label = parsed.kind, Source(info.source).label
    incident_id = row.incident_id
    if kind in (Kind.TRIGGER, Kind.REPEAT):
        if incident_id is None:
            first_sight = row.event_count == 1
            event = _FIRST_SIGHT_EVENT.get(info.source, parsed.event) if first_sight and kind == Kind.REPEAT \
                else parsed.event
            decision = decide(info.effective_rules, parsed, event, payload)
            return apply_decision(session, info, parsed, row.id, decision, at, delivery_id)
        elif parsed.reason:  # item_velocity, exp_repeat_item: worth a line on an open incident
            _alert_entry(session, incident_id, parsed.reason, parsed, row.id, delivery_id, at, only_open=True)
        return incident_id

    if kind == Kind.REACTIVATE:
        verb = "reactivated" if parsed.event == "reactivated_item" else "reopened"
        # Its incident still open (the common case): a line on it, written only if it is, in one statement.
        if incident_id and _alert_entry(session, incident_id, f"{label}: item {verb}", parsed, row.id, delivery_id,
                                        at, only_open=True):
            return incident_id
        incident = _incident(session, incident_id) if incident_id else None
        previous = incident or previous_incident(session, info.id, parsed.fingerprint, row.id)
        decision = decide(info.effective_rules, parsed, parsed.event, payload)
        if decision.action == "suppress":
            return apply_decision(session, info, parsed, row.id, decision, at, delivery_id)
        severity = decision.severity if decision.opens else None
        if previous is not None:
            severity = severity or previous.severity
        if severity is None:
            return incident_id
        return open_incident(session, info, parsed, row.id, severity, at, delivery_id, repeat_of=previous,
                             **_target(session, info, decision))

    if incident_id is None:
        return None
    by = f" by {parsed.actor}" if parsed.actor else ""
    if kind == Kind.ACKNOWLEDGE:
        # Most acknowledgements follow the first: the status alone says so, without loading the incident.
        if _status_of(session, incident_id) == Status.TRIGGERED:
            incident = _incident(session, incident_id)
            if incident is not None and incident.status == Status.TRIGGERED:
                # The responder acknowledged in OpsGenie: that moment is this incident's MTTA.
                incidents.acknowledge_incident(session, incident, at=max(at, incident.detected_at))
        _alert_entry(session, incident_id, f"{label}: alert acknowledged{by}", parsed, row.id, delivery_id, at)
    elif kind == Kind.UNACKNOWLEDGE:
        _alert_entry(session, incident_id, f"{label}: alert unacknowledged{by}", parsed, row.id, delivery_id, at)
    elif kind == Kind.NOTE:
        incident = _incident(session, incident_id) if parsed.note else None  # an empty note changes nothing
        if incident is not None:
            incidents.add_note(session, incident, f"{parsed.note}\n\n*{parsed.actor or 'Someone'}, in {label}*",
                               occurred_at=at)
    elif kind == Kind.CLOSE:
        if parsed.event in _CLOSING_ACTIONS:
            line = f"{label}: alert {parsed.event.lower()}d{by}"
        elif info.source == "rollbar":
            line = f"{label}: item resolved{by}"
        else:
            line = parsed.reason or f"{label}: alert resolved{by}"
        _alert_entry(session, incident_id, line, parsed, row.id, delivery_id, at)
    else:  # INFO, ESCALATE
        _alert_entry(session, incident_id, parsed.reason, parsed, row.id, delivery_id, at)
    return incident_id


def apply_decision(session: Session, info: IntegrationInfo, parsed: ParsedEvent, alert_id: int,
                   decision: Decision, at: datetime, delivery_id: int | None) -> int | None:
    """Carry out what the rules decided for an alert without an incident; returns the incident it joined or opened.

    suppress marks the alert (why, in `suppressed`) and does nothing else: the delivery is stored and the alert
    counted as for any other, but no incident is opened and so nothing is announced."""
    if decision.action == "suppress":
        session.connection().execute(_SUPPRESS_ALERT, {"b_id": alert_id, "b_suppressed": decision.describe()[:200]})
        return None
    if not decision.opens:
        return None
    target = _target(session, info, decision)
    if decision.action == "attach":
        incident_id = _open_incident_of(session, info, target.get("service_id", info.service_id))
        if incident_id is not None:
            session.connection().execute(_ATTACH_ALERT, {"b_id": alert_id, "b_incident_id": incident_id})
            incidents.add_timeline_entries(
                session, [incident_id], EntryKind.ALERT, f"Alert attached by rule {decision.rule}: {parsed.title}",
                occurred_at=at, data={"source": parsed.source, "event": parsed.event, "alert_id": alert_id,
                                      "delivery_id": delivery_id, "link": parsed.link, "rule": decision.rule})
            return incident_id
    return open_incident(session, info, parsed, alert_id, decision.severity, at, delivery_id, **target)


def _target(session: Session, info: IntegrationInfo, decision: Decision) -> dict:
    """open_incident's service_id/team_id/rule for a route or attach rule (a service brings its team; a team
    named as well wins). A slug deleted since the rule was saved falls back to the integration's own."""
    if decision.action not in ("route", "attach"):
        return {}
    from incidents.catalog.models import Service, Team

    service_id, team_id = info.service_id, info.team_id
    if decision.service:
        found = session.execute(sa.select(Service.id, Service.team_id).where(Service.slug == decision.service)).first()
        if found is not None:
            service_id, team_id = found
    if decision.team:
        found_team = session.scalar(sa.select(Team.id).where(Team.slug == decision.team))
        if found_team is not None:
            team_id = found_team
    return {"service_id": service_id, "team_id": team_id, "rule": decision.rule}


def _open_incident_of(session: Session, info: IntegrationInfo, service_id: int | None) -> int | None:
    """The most recent open incident of the service; without a service, the most recent open incident this
    integration's alerts belong to. (Two first alerts of one service applied at the same instant by two processes
    on PostgreSQL may each open one: attach joins what is open when it looks.)"""
    query = sa.select(Incident.id).where(Incident.status.not_in([Status.RESOLVED, Status.CLOSED]))
    if service_id is not None:
        query = query.where(Incident.service_id == service_id)
    else:
        query = query.where(Incident.id.in_(sa.select(Alert.incident_id).where(Alert.integration_id == info.id)))
    return session.scalar(query.order_by(Incident.id.desc()).limit(1))


# The alert and delivery updates of this path, built once and run on the connection: an ORM update built per call
# cost more than its round trip (the webhook writer's CPU, issue 18). No Alert or Delivery object is loaded on
# this path; the one caller that holds an Alert (open_incident_from_alert) refreshes it afterwards.
_ALERTS = Alert.__table__
_ALERT_BY_ID = _ALERTS.c.id == sa.bindparam("b_id")
_SUPPRESS_ALERT = sa.update(_ALERTS).where(_ALERT_BY_ID).values(
    suppressed=sa.bindparam("b_suppressed", type_=_ALERTS.c.suppressed.type))
_ATTACH_ALERT = sa.update(_ALERTS).where(_ALERT_BY_ID).values(
    incident_id=sa.bindparam("b_incident_id", type_=_ALERTS.c.incident_id.type))
_LINK_ALERT = sa.update(_ALERTS).where(_ALERT_BY_ID).values(
    incident_id=sa.bindparam("b_incident_id", type_=_ALERTS.c.incident_id.type), suppressed=None)
_DELIVERY_ALERT = sa.update(Delivery.__table__).where(Delivery.__table__.c.id == sa.bindparam("b_id")).values(
    alert_id=sa.bindparam("b_alert_id", type_=Delivery.__table__.c.alert_id.type))

_STATUS_OF_INCIDENT = Prepared(
    sa.select(Incident.__table__.c.status).where(Incident.__table__.c.id == sa.bindparam("id")))
# An alert entry's incident, if it still exists (or is still open): the check and the INSERT are one statement.
_ENTRY_INCIDENT = sa.select(Incident.__table__.c.id).where(Incident.__table__.c.id == sa.bindparam("a_incident_id"))
_ENTRY_OPEN_INCIDENT = _ENTRY_INCIDENT.where(Incident.__table__.c.status != Status.RESOLVED,  # no expanding IN
                                             Incident.__table__.c.status != Status.CLOSED)


def _status_of(session: Session, incident_id: int) -> Status | None:
    return _STATUS_OF_INCIDENT.execute(session, {"id": incident_id}).scalar()


def _alert_entry(session: Session, incident_id: int, line: str, parsed: ParsedEvent, alert_id: int,
                 delivery_id: int, at: datetime, only_open: bool = False) -> int:
    """The line on the incident if it exists (and, with `only_open`, is open); 1 if written, else 0."""
    # One INSERT .. SELECT, without loading the incident (and its tags) or an ORM flush: those cost more than the
    # rest of the delivery. Alert entries announce nothing, so no notification is skipped.
    return incidents.add_timeline_entries_where(
        session, _ENTRY_OPEN_INCIDENT if only_open else _ENTRY_INCIDENT, EntryKind.ALERT, line, occurred_at=at,
        data={"source": parsed.source, "event": parsed.event, "alert_id": alert_id, "delivery_id": delivery_id},
        params={"a_incident_id": incident_id})


def previous_incident(session: Session, integration_id: int, fingerprint: str | None, alert_id: int):
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


_INCIDENT_TAG = re.compile(r"^[\w.:/-]{1,50}$")  # the incident's own tag rule (incident/services.py)
MAX_INCIDENT_TAGS = 20


def incident_tags(source: str, parsed: ParsedEvent) -> list[str]:
    """The source's name, `env:<environment>`, then the alert's tags the incident's rule accepts, at most 20."""
    out = [source]
    env = environment_tag(parsed)  # early, so that twenty labels never push it out
    if env and _INCIDENT_TAG.match(env):
        out.append(env)
    for tag in parsed.tags:
        tag = tag.strip().lower() if isinstance(tag, str) else ""
        if _INCIDENT_TAG.match(tag) and tag not in out:
            out.append(tag)
    return out[:MAX_INCIDENT_TAGS]


def open_incident(session: Session, info: IntegrationInfo, parsed: ParsedEvent, alert_id: int,
                   severity: Severity, at: datetime, delivery_id: int | None, *,
                   repeat_of: Incident | None = None, by: User | None = None,
                   service_id: int | None = None, team_id: int | None = None, rule: int | None = None) -> int:
    """Declare the incident an alert opens, on the integration's service and team unless a routing rule named
    others, with its first timeline entry, and link the alert to it."""
    label = Source(info.source).label
    if service_id is None and team_id is None:
        service_id, team_id = info.service_id, info.team_id
    summary = "\n\n".join(p for p in (parsed.description, f"[Open in {label}]({parsed.link})" if parsed.link else "")
                          if p)
    incident_id = incidents.declare_incident(
        session, title=parsed.title or f"{label} alert {parsed.fingerprint}", severity=severity,
        summary=summary, service_id=service_id, team_id=team_id, tags=incident_tags(info.source, parsed),
        started_at=at, detected_at=at, created_by=by, repeat_of_id=repeat_of.id if repeat_of is not None else None,
        source=info.source,
    )
    line = f"Opened from {label} alert: {parsed.title}"
    if repeat_of is not None:
        line += f" (repeat of {repeat_of.ref})"
    if rule is not None:
        line += f" (routed by rule {rule})"
    incidents.add_timeline_entries(session, [incident_id], EntryKind.ALERT, line, author=by, occurred_at=at, data={
        "source": parsed.source, "event": parsed.event, "alert_id": alert_id, "delivery_id": delivery_id,
        "fingerprint": parsed.fingerprint, "link": parsed.link, "repeat_of": repeat_of.id if repeat_of else None,
        "rule": rule})
    session.connection().execute(_LINK_ALERT, {"b_id": alert_id, "b_incident_id": incident_id})
    return incident_id


def _record_deploy(session: Session, info: IntegrationInfo, parsed: ParsedEvent, at: datetime,
                   delivery_id: int) -> int:
    """Note a deploy on every open incident fed by this integration's alerts in the deploy's environment."""
    if not parsed.environment:
        return 0
    # One INSERT .. SELECT, no row through Python: during an alert storm hundreds of incidents can be open, and
    # this runs while holding the write lock.
    return incidents.add_timeline_entries_where(
        session, _DEPLOY_TARGETS, EntryKind.DEPLOY, parsed.reason, occurred_at=at,
        data=parsed.deploy | {"delivery_id": delivery_id, "source": parsed.source},
        params={"d_integration_id": info.id, "d_environment": parsed.environment})


# The open incidents fed by an integration's alerts in one environment: a deploy's notes go on them.
_DEPLOY_TARGETS = (sa.select(Incident.id).where(
    Incident.id.in_(sa.select(Alert.incident_id).where(Alert.integration_id == sa.bindparam("d_integration_id"),
                                                       Alert.environment == sa.bindparam("d_environment"))),
    Incident.status != Status.RESOLVED, Incident.status != Status.CLOSED))  # no expanding IN: see prepared.py


def delivery_body(source: str, raw: bytes, payload: Any = None) -> str:
    """What a webhook delivery of `source` stores, on every path: stored_body with the source's redaction."""
    return stored_body(raw, payload, SOURCES[source].redact)
