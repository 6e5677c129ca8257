"""Incidents, their tags and their timeline."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, backref, mapped_column, relationship

from incidents.auth.models import User
from incidents.catalog.models import Service, Team
from incidents.database import Base, UTCDateTime, str_enum, utcnow
from incidents.incident.durations import STORED_COLUMNS, stored_seconds


class Severity(StrEnum):
    SEV1 = "SEV1"
    SEV2 = "SEV2"
    SEV3 = "SEV3"
    SEV4 = "SEV4"


# (background, text) of each severity's badge: app.css's .sev-sevN and the e-mails' inline styles use these
# (tests/notify/test_services.py holds the stylesheet to them), so SEV3 is the same amber everywhere.
SEVERITY_COLOURS: dict[str, tuple[str, str]] = {
    "SEV1": ("#b42318", "#ffffff"), "SEV2": ("#f79009", "#1d2330"),
    "SEV3": ("#fef0c7", "#7a4d05"), "SEV4": ("#eef2f6", "#364152")}


class Status(StrEnum):
    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    INVESTIGATING = "investigating"
    MITIGATED = "mitigated"
    RESOLVED = "resolved"
    CLOSED = "closed"

    @property
    def is_open(self) -> bool:
        return self not in (Status.RESOLVED, Status.CLOSED)


class EntryKind(StrEnum):
    CREATED = "created"
    STATUS = "status"
    ROLE = "role"
    NOTE = "note"
    EDIT = "edit"
    ALERT = "alert"
    DEPLOY = "deploy"
    UPDATE = "update"  # a status update for stakeholders (its text is in `incident_update`)


class IncidentRole(StrEnum):
    COMMANDER = "commander"
    COMMS_LEAD = "comms_lead"
    SCRIBE = "scribe"

    @property
    def label(self) -> str:
        return {"commander": "Incident commander", "comms_lead": "Communications lead", "scribe": "Scribe"}[self]


def _seconds_column(metric: str):
    # Generated and stored on PostgreSQL. On SQLite plain columns that triggers write with the same expression
    # (migration 0019): SQLite never reads a generated column from an index, so the insights index would not cover.
    return mapped_column(sa.Computed(stored_seconds(metric), persisted=True))


class Incident(Base):
    __tablename__ = "incident"
    __table_args__ = (
        sa.Index("ix_incident_status_created", "status", "created_at"),
        sa.Index("ix_incident_severity_created", "severity", "created_at"),
        sa.Index("ix_incident_service_created", "service_id", "created_at"),
        sa.Index("ix_incident_team_created", "team_id", "created_at"),
        sa.Index("ix_incident_created", "created_at"),
        # The insights: every figure of a period is one range scan of this index, never of the wide rows.
        sa.Index("ix_incident_insights", "started_at", "severity", "team_id", "service_id", "source", "repeat_of_id",
                 "seconds_to_detect", "seconds_to_acknowledge", "seconds_to_mitigate", "seconds_to_resolve"),
        # A percentile's exact second: the few values of its bucket, wherever they are in the period. Partial, so
        # a new incident (its milestones not reached) adds an entry to the detection index only.
        *(sa.Index(f"ix_incident_{column}", column, "started_at", "severity", "team_id", "service_id",
                   sqlite_where=sa.text(f"{column} IS NOT NULL"), postgresql_where=sa.text(f"{column} IS NOT NULL"))
          for column in STORED_COLUMNS.values()),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    summary: Mapped[str] = mapped_column(sa.Text, default="")
    severity: Mapped[Severity] = mapped_column(str_enum(Severity, 4))
    status: Mapped[Status] = mapped_column(str_enum(Status), default=Status.TRIGGERED)
    service_id: Mapped[int | None] = mapped_column(sa.ForeignKey("service.id"))
    team_id: Mapped[int | None] = mapped_column(sa.ForeignKey("team.id"))
    commander_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    comms_lead_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    scribe_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    created_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    # Set when an alert that had a resolved incident fired again (Rollbar reactivated/reopened item).
    repeat_of_id: Mapped[int | None] = mapped_column(sa.ForeignKey("incident.id"))

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Milestones: started (impact began), detected, acknowledged, mitigated, resolved; they power MTTA/MTTR.
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    detected_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    mitigated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # durations.py's metrics in whole seconds, computed by the database from the milestones above whatever writes
    # them (services, core inserts, imports): the insights aggregate these without reading a row into Python.
    seconds_to_detect: Mapped[int | None] = _seconds_column("time_to_detect")
    seconds_to_acknowledge: Mapped[int | None] = _seconds_column("time_to_acknowledge")
    seconds_to_mitigate: Mapped[int | None] = _seconds_column("time_to_mitigate")
    seconds_to_resolve: Mapped[int | None] = _seconds_column("time_to_resolve")
    # How it was opened: the alert source ("rollbar", "grafana", ...) of the alert that opened it, or "manual".
    source: Mapped[str] = mapped_column(sa.String(32), default="manual", server_default="manual")

    # The war room: where responders talk, meet and read what to do (editable links; "" when unset).
    chat_url: Mapped[str] = mapped_column(sa.String(500), default="", server_default="")
    call_url: Mapped[str] = mapped_column(sa.String(500), default="", server_default="")
    runbook_url: Mapped[str] = mapped_column(sa.String(500), default="", server_default="")
    # When the next status update for stakeholders is due (None once resolved, or before any timer started).
    next_update_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What fixed it: required to resolve (web, API, Slack); alerts that resolve an incident say so here.
    resolution: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    # The stakeholder view's capability: /status/<token> while set; revoking clears it, re-issuing makes a new one.
    status_token: Mapped[str | None] = mapped_column(sa.String(64), unique=True, index=True)
    # Whether the stakeholder view names the people holding roles (never notes, whatever this says).
    status_show_names: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

    service: Mapped[Service | None] = relationship()
    team: Mapped[Team | None] = relationship()
    commander: Mapped[User | None] = relationship(foreign_keys=[commander_id])
    comms_lead: Mapped[User | None] = relationship(foreign_keys=[comms_lead_id])
    scribe: Mapped[User | None] = relationship(foreign_keys=[scribe_id])
    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])
    repeat_of: Mapped[Incident | None] = relationship(remote_side=[id], foreign_keys=[repeat_of_id])
    tag_rows: Mapped[list[IncidentTag]] = relationship(
        cascade="all, delete-orphan", order_by="IncidentTag.name", lazy="selectin"
    )
    timeline: Mapped[list[TimelineEntry]] = relationship(
        back_populates="incident", cascade="all, delete-orphan",
        order_by="(TimelineEntry.occurred_at, TimelineEntry.id)",
    )

    @property
    def ref(self) -> str:
        return f"INC-{self.id}"

    @property
    def tags(self) -> list[str]:
        return [t.name for t in self.tag_rows]

    @property
    def is_open(self) -> bool:
        return self.status.is_open

    def role_holder(self, role: IncidentRole) -> User | None:
        return getattr(self, role.value)

    def update_overdue(self, now: datetime) -> bool:
        """An open incident whose next status update is past due."""
        return self.is_open and self.next_update_at is not None and self.next_update_at < now


class IncidentTag(Base):
    __tablename__ = "incident_tag"

    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incident.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50), primary_key=True, index=True)


class TimelineEntry(Base):
    __tablename__ = "timeline_entry"
    __table_args__ = (sa.Index("ix_timeline_entry_incident_at", "incident_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incident.id", ondelete="CASCADE"))
    kind: Mapped[EntryKind] = mapped_column(str_enum(EntryKind))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    author_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    # A one-line description ("Status: triggered -> acknowledged") and optional Markdown body (notes).
    text: Mapped[str] = mapped_column(sa.String(500))
    body: Mapped[str] = mapped_column(sa.Text, default="")
    # Structured facts for machines (old/new status, alert id, deploy revision ...).
    data: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    # A key event a responder pinned: shown above the rest of the timeline.
    pinned: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

    incident: Mapped[Incident] = relationship(back_populates="timeline")
    author: Mapped[User | None] = relationship()


class StatusUpdate(Base):
    """A structured update for stakeholders: where the incident stands, the impact now, what responders are doing,
    and when the next update is due. Each one is also a timeline entry (kind `update`, data `update_id`)."""

    __tablename__ = "incident_update"
    __table_args__ = (sa.Index("ix_incident_update_incident_created", "incident_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incident.id", ondelete="CASCADE"))
    status: Mapped[Status] = mapped_column(str_enum(Status))
    impact: Mapped[str] = mapped_column(sa.Text, default="")
    actions: Mapped[str] = mapped_column(sa.Text, default="")  # what we are doing
    next_update_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    author_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    incident: Mapped[Incident] = relationship(backref=backref(
        "updates", order_by="(StatusUpdate.created_at.desc(), StatusUpdate.id.desc())", cascade="all, delete-orphan",
        passive_deletes=True))
    author: Mapped[User | None] = relationship()
