"""Integrations (one per sender and secret), raw deliveries, and alerts deduplicated by fingerprint."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from incidents.alert.sources import SOURCES
from incidents.catalog.models import Service, Team
from incidents.database import Base, UTCDateTime, str_enum, utcnow
from incidents.incident.models import Incident

# The registered sources (alert/sources), as the enum the columns store.
Source = StrEnum("Source", {name.upper(): name for name in SOURCES})
Source.label = property(lambda self: SOURCES[self.value].label)
Source.setup = property(lambda self: SOURCES[self.value].setup)
Source.signed = property(lambda self: SOURCES[self.value].signed)


class AlertStatus(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"  # Rollbar resolved_item
    CLOSED = "closed"  # OpsGenie Close / Delete

    @property
    def is_open(self) -> bool:
        return self in (AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED)


class Outcome(StrEnum):
    PROCESSED = "processed"
    IGNORED = "ignored"
    REJECTED = "rejected"
    FAILED = "failed"


# The predicate of "this alert is open": the partial unique index and every ON CONFLICT target share it,
# so at most one open alert per (integration, fingerprint) exists, enforced by the database.
OPEN_ALERT_PREDICATE = "status IN ('open', 'acknowledged')"


class Integration(Base):
    __tablename__ = "integration"
    __table_args__ = (sa.UniqueConstraint("source", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[Source] = mapped_column(str_enum(Source))
    name: Mapped[str] = mapped_column(sa.String(120))
    # sha256 of the secret token (256-bit random, so a fast hash is enough); the token itself is shown once.
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    token_hint: Mapped[str] = mapped_column(sa.String(16), default="")
    service_id: Mapped[int | None] = mapped_column(sa.ForeignKey("service.id"))
    team_id: Mapped[int | None] = mapped_column(sa.ForeignKey("team.id"))
    # None means the source's DEFAULT_RULES (its module in alert/sources); a list replaces them.
    rules: Mapped[list | None] = mapped_column(sa.JSON)
    # The key the sender signs with (Sentry's client secret, PagerDuty's webhook secret): kept as given, because
    # checking an HMAC needs it; never shown again, logged or sent anywhere.
    secret: Mapped[str | None] = mapped_column(sa.String(255))
    site_url: Mapped[str | None] = mapped_column(sa.String(500))  # the sender's own site, for links (JSM)
    options: Mapped[dict] = mapped_column(sa.JSON, default=dict, server_default="{}")  # e.g. severity_label
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    service: Mapped[Service | None] = relationship()
    team: Mapped[Team | None] = relationship()


class Alert(Base):
    __tablename__ = "alert"
    __table_args__ = (
        sa.Index("uq_alert_open_fingerprint", "integration_id", "fingerprint", unique=True,
                 sqlite_where=sa.text(OPEN_ALERT_PREDICATE), postgresql_where=sa.text(OPEN_ALERT_PREDICATE)),
        sa.Index("ix_alert_integration_fingerprint", "integration_id", "fingerprint", "id"),
        sa.Index("ix_alert_integration_external", "integration_id", "external_id"),
        sa.Index("ix_alert_status_last_seen", "status", "last_seen_at"),
        sa.Index("ix_alert_last_seen", "last_seen_at"),
        sa.Index("ix_alert_incident", "incident_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    integration_id: Mapped[int] = mapped_column(sa.ForeignKey("integration.id", ondelete="CASCADE"))
    source: Mapped[Source] = mapped_column(str_enum(Source))
    # OpsGenie alias (falling back to alertId), Rollbar item id.
    fingerprint: Mapped[str] = mapped_column(sa.String(255))
    external_id: Mapped[str | None] = mapped_column(sa.String(255))  # OpsGenie alertId (Escalate has only this)
    title: Mapped[str] = mapped_column(sa.String(500))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    severity: Mapped[str | None] = mapped_column(sa.String(16))  # "P1".."P5" or "debug".."critical"
    status: Mapped[AlertStatus] = mapped_column(str_enum(AlertStatus), default=AlertStatus.OPEN)
    environment: Mapped[str | None] = mapped_column(sa.String(100))
    link: Mapped[str | None] = mapped_column(sa.String(1000))
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Occurrences of the problem (repeats); event_count counts every delivery applied, and is 1 exactly
    # for the delivery that inserted the row, which is how the upsert tells "inserted" from "updated".
    occurrence_count: Mapped[int] = mapped_column(sa.BigInteger, default=1)
    event_count: Mapped[int] = mapped_column(sa.BigInteger, default=1)
    last_event: Mapped[str] = mapped_column(sa.String(64), default="")
    incident_id: Mapped[int | None] = mapped_column(sa.ForeignKey("incident.id", ondelete="SET NULL"))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The firing episode the alert is in, as its sender names it (Alertmanager's startsAt); None for senders
    # that count every delivery as an occurrence.
    occurrence: Mapped[str | None] = mapped_column(sa.String(100))
    tags: Mapped[list] = mapped_column(sa.JSON, default=list, server_default="[]")  # the last event's labels
    # Why an integration's rule suppressed it ("suppress (rule 2)"): stored and counted, nothing else happens.
    suppressed: Mapped[str | None] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    integration: Mapped[Integration] = relationship()
    incident: Mapped[Incident | None] = relationship()

    @property
    def is_open(self) -> bool:
        return self.status.is_open


class Delivery(Base):
    __tablename__ = "delivery"
    __table_args__ = (
        # A sender's retry of the same delivery carries the same key: the second insert finds a conflict.
        sa.UniqueConstraint("integration_id", "dedup_key"),
        sa.Index("ix_delivery_integration_received", "integration_id", "received_at"),
        sa.Index("ix_delivery_outcome_received", "outcome", "received_at"),
        sa.Index("ix_delivery_alert", "alert_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    integration_id: Mapped[int] = mapped_column(sa.ForeignKey("integration.id", ondelete="CASCADE"))
    source: Mapped[Source] = mapped_column(str_enum(Source))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    event: Mapped[str] = mapped_column(sa.String(64), default="")
    outcome: Mapped[Outcome] = mapped_column(str_enum(Outcome))
    error: Mapped[str] = mapped_column(sa.Text, default="")
    dedup_key: Mapped[str | None] = mapped_column(sa.String(64))
    # The body as received, with secrets (tokens in echoed headers, Rollbar access tokens) redacted.
    body: Mapped[str] = mapped_column(sa.Text)
    headers: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    alert_id: Mapped[int | None] = mapped_column(sa.ForeignKey("alert.id", ondelete="SET NULL"))
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    integration: Mapped[Integration] = relationship()
    alert: Mapped[Alert | None] = relationship()
