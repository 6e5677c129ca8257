"""The alert and delivery lists, single lookups by id, and what an incident's page shows of its alerts."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from incidents.alert.models import Alert, AlertStatus, Delivery, Outcome, Source
from incidents.bounds import get_by_id
from incidents.database import Page, paginate
from incidents.errors import Invalid, NotFound
from incidents.incident.models import EntryKind, TimelineEntry


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


INCIDENT_PANEL_ALERTS = 50  # the most recently seen; the panel says how many there are in all


@dataclass
class IncidentAlerts:
    """The incident page's alert facts: who opened it ("Alertmanager · prod-cluster") and its alerts."""

    opened_by: str | None
    opening_alert: Alert | None
    alerts: list[Alert]
    total: int


def _opening_entry(session: Session, incident_id: int) -> TimelineEntry | None:
    """The incident's first alert entry, when it is the one that opened it: processing.open_incident writes it right
    after the declaration, and it alone carries the alert's fingerprint (an attach entry does not)."""
    entry = session.scalar(sa.select(TimelineEntry).where(TimelineEntry.incident_id == incident_id,
                                                          TimelineEntry.kind == EntryKind.ALERT)
                           .order_by(TimelineEntry.id).limit(1))
    data = entry.data if entry is not None and isinstance(entry.data, dict) else {}
    return entry if "fingerprint" in data and data.get("source") else None


def _source_label(name: object) -> str | None:
    try:
        return Source(name).label
    except ValueError:
        return None


def incident_alerts(session: Session, incident_id: int, limit: int = INCIDENT_PANEL_ALERTS) -> IncidentAlerts:
    """Every alert attached to the incident (the `limit` last seen, with their integrations) and, for an incident
    opened from an alert, its source label and integration name."""
    stmt = (sa.select(Alert).where(Alert.incident_id == incident_id).options(selectinload(Alert.integration))
            .order_by(Alert.last_seen_at.desc(), Alert.id.desc()).limit(limit))
    alerts = list(session.scalars(stmt))
    total = len(alerts) if len(alerts) < limit else session.scalar(
        sa.select(sa.func.count()).select_from(Alert).where(Alert.incident_id == incident_id))
    opened_by, opening = None, None
    entry = _opening_entry(session, incident_id)
    if entry is not None:
        alert_id = entry.data.get("alert_id")
        opening = get_by_id(session, Alert, alert_id) if isinstance(alert_id, int) else None
        if opening is not None:
            opened_by = f"{opening.source.label} · {opening.integration.name}"
        else:  # the alert was deleted since: its source is still on the entry
            opened_by = _source_label(entry.data.get("source"))
    return IncidentAlerts(opened_by, opening, alerts, total)
