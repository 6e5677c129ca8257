"""The alert and delivery lists, and single lookups by id."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from incidents.alert.models import Alert, AlertStatus, Delivery, Outcome
from incidents.bounds import get_by_id
from incidents.database import Page, paginate
from incidents.errors import Invalid, NotFound


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
