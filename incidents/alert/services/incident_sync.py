"""What an alert's later events do to the incident it belongs to, beyond its own timeline line.

- Every alert of an incident closed or resolved: the timeline says so once, and when the delivering integration's
  `options["resolve_incident"]` is true the incident is resolved through the status machine (its event emitted).
- UpdatePriority (Kind.PRIORITY): the alert's severity follows, and the incident's when the integration's
  `options["update_incident_severity"]` is true (through `update_incident`, so `incident.severity_changed` is heard).
- The alert's environment reaches the incident it opens as an `env:<name>` tag (incidents have no environment).

Processing calls these inside the delivery's transaction, after the alert rows are written (and locked).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, lazyload

from incidents.alert.models import Alert, AlertStatus
from incidents.alert.services.integrations import IntegrationInfo
from incidents.alert.sources import ParsedEvent
from incidents.alert.sources.base import tag
from incidents.incident import services as incidents
from incidents.incident.models import EntryKind, Incident, Severity

# The integration options (booleans) that let an alert's events move the incident itself.
RESOLVE_INCIDENT = "resolve_incident"
UPDATE_INCIDENT_SEVERITY = "update_incident_severity"

# Opsgenie/JSM priorities as incident severities (P5, informational, is the lowest we have).
_SEVERITY_OF_PRIORITY = {"P1": Severity.SEV1, "P2": Severity.SEV2, "P3": Severity.SEV3, "P4": Severity.SEV4,
                         "P5": Severity.SEV4}

ALL_CLOSED_EVENT = "all_alerts_closed"  # the `event` of the timeline entry's data


def option(info: IntegrationInfo, name: str) -> bool:
    """A boolean integration option (stored as JSON true, or "true" by older writers)."""
    value = info.options.get(name)
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"))


def environment_tag(parsed: ParsedEvent) -> str | None:
    """`env:<name>` for an alert with an environment, cleaned to the incident's tag rule; None without one."""
    return tag("env", parsed.environment) if parsed.environment else None


def _load_incident(session: Session, incident_id: int) -> Incident | None:
    return session.get(Incident, incident_id, options=[lazyload("*")])


def change_priority(session: Session, info: IntegrationInfo, parsed: ParsedEvent, alert_id: int,
                    incident_id: int | None) -> None:
    """The alert takes the event's priority as its severity; its open incident takes the matching severity
    when the integration asks for it (a resolved or closed incident keeps the severity it was handled at)."""
    if not parsed.severity:
        return
    session.execute(sa.update(Alert.__table__).where(Alert.__table__.c.id == alert_id)
                    .values(severity=parsed.severity))
    wanted = _SEVERITY_OF_PRIORITY.get(parsed.severity.upper())
    if incident_id is None or wanted is None or not option(info, UPDATE_INCIDENT_SEVERITY):
        return
    incident = _load_incident(session, incident_id)
    if incident is not None and incident.is_open and incident.severity != wanted:
        incidents.update_incident(session, incident, severity=wanted)


def _lock_incidents(session: Session, incident_ids: list[int]) -> None:
    """Take the incidents' rows (PostgreSQL; SQLite's writer holds the database) in id order, so that two
    deliveries closing an incident's last two alerts at once count one after the other, and the second sees
    the first's close: without it each sees the other's alert open and nobody writes the line.

    FOR NO KEY UPDATE: it excludes the same lock (the count above) but not the key-share lock a timeline entry's
    foreign key takes on its incident, so a Rollbar deploy noting every open incident in one INSERT .. SELECT
    and this count never wait for each other crosswise (a deadlock the bench hit once per run, 1 s each)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(Incident.__table__.c.id).where(Incident.__table__.c.id.in_(incident_ids))
                        .order_by(Incident.__table__.c.id).with_for_update(key_share=True))


def _all_closed_line(statuses: dict[AlertStatus, int]) -> str:
    n = sum(statuses.values())
    word = ("resolved" if set(statuses) == {AlertStatus.RESOLVED} else
            "closed" if set(statuses) == {AlertStatus.CLOSED} else "closed or resolved")
    return f"All {n} alerts are {word}"


def note_all_closed(session: Session, info: IntegrationInfo, closed: Iterable[tuple[int, datetime]],
                    delivery_id: int) -> list[int]:
    """For each incident (id, when) whose alert this delivery closed: when none of its alerts is open any more,
    one timeline line ("All 3 alerts are resolved"; an incident of one alert has that alert's own line), and the
    incident resolved if the integration's `resolve_incident` option is set and it is still open. Only a delivery
    that closed an open alert comes here, so the line is written once per time the incident's last open alert
    closes. Returns the incidents whose alerts are all closed."""
    latest: dict[int, datetime] = {}
    for incident_id, at in closed:
        latest[incident_id] = max(at, latest.get(incident_id, at))
    if not latest:
        return []
    ids = sorted(latest)
    _lock_incidents(session, ids)
    a = Alert.__table__.c
    counts: dict[int, dict[AlertStatus, int]] = {}
    for incident_id, status, n in session.execute(
            sa.select(a.incident_id, a.status, sa.func.count()).where(a.incident_id.in_(ids))
            .group_by(a.incident_id, a.status)):
        counts.setdefault(incident_id, {})[AlertStatus(status)] = n
    done = []
    for incident_id in ids:
        statuses = counts.get(incident_id, {})
        if not statuses or any(status.is_open for status in statuses):
            continue
        at, n = latest[incident_id], sum(statuses.values())
        if n > 1:
            incidents.add_timeline_entries(session, [incident_id], EntryKind.ALERT, _all_closed_line(statuses),
                                           occurred_at=at, data={"source": info.source, "event": ALL_CLOSED_EVENT,
                                                                 "alerts": n, "delivery_id": delivery_id})
        done.append(incident_id)
        if option(info, RESOLVE_INCIDENT):
            incident = _load_incident(session, incident_id)
            if incident is not None and incident.is_open:
                incidents.resolve_incident(session, incident, at=max(at, incident.detected_at),
                                           resolution=f"Every alert closed at the source ({info.source}).")
    return done
