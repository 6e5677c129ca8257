"""Shortcut outbox, inbound webhook deliveries and per-team card settings."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, backref, mapped_column, relationship

from incidents.action_item.models import ActionItem
from incidents.auth.models import User
from incidents.catalog.models import Team
from incidents.database import Base, UTCDateTime, str_enum, utcnow


class ExportStatus(StrEnum):
    PENDING = "pending"  # to send; retried (next_attempt_at) until sent or an admin gives up
    SENT = "sent"  # the story exists and its id is stored
    FAILED = "failed"  # Shortcut refused the card (400/404/422): retrying the same body cannot help
    ABANDONED = "abandoned"  # an admin gave up on it


class ShortcutExport(Base):
    """The outbox row of one action item: written with the request, updated by the export job."""

    __tablename__ = "shortcut_export"
    __table_args__ = (
        sa.Index("ix_shortcut_export_status_next", "status", "next_attempt_at"),
        sa.Index("ix_shortcut_export_story", "story_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # One card per action item, enforced by the database: a second request finds this row.
    action_item_id: Mapped[int] = mapped_column(sa.ForeignKey("action_item.id", ondelete="CASCADE"), unique=True)
    status: Mapped[ExportStatus] = mapped_column(str_enum(ExportStatus), default=ExportStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A job holds the row until then; a worker killed mid-call leaves it to the sweep once it passes.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str] = mapped_column(sa.Text, default="")
    story_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    story_url: Mapped[str] = mapped_column(sa.String(500), default="")
    # The card as last seen (webhook or reconcile): unstarted, started, done, archived, deleted.
    card_state: Mapped[str] = mapped_column(sa.String(20), default="")
    # Archived or deleted without completion: a human decides what that means for the item.
    card_closed: Mapped[bool] = mapped_column(default=False)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # changed_at of the newest webhook event applied: an older event arriving late changes nothing.
    story_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    requested_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id", ondelete="SET NULL"))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    # The item's `export` (None until one is requested) is this relationship's backref: action items never import
    # the tracker. Loaded with the item (selectin), deleted with it.
    action_item: Mapped[ActionItem] = relationship(backref=backref(
        "export", uselist=False, lazy="selectin", cascade="all, delete-orphan", passive_deletes=True,
    ))
    requested_by: Mapped[User | None] = relationship()

    @property
    def sync_state(self) -> str:
        """One word for the UI: the outbox status, or the card's state once sent."""
        if self.status != ExportStatus.SENT:
            return self.status.value
        if self.card_closed and self.action_item.status.value in ("open", "in_progress"):
            return "card closed without completion"  # until a person marks the item done or won't do
        return self.card_state or "sent"


class DeliveryOutcome(StrEnum):
    PROCESSED = "processed"
    IGNORED = "ignored"  # no story of ours, or nothing that matters to an action item
    REJECTED = "rejected"  # not a Shortcut event (kept for inspection)
    FAILED = "failed"  # our bug; the reconcile job repairs the state it would have set


class ShortcutDelivery(Base):
    """Every signed webhook body as received, stored before it is answered; event_id deduplicates."""

    __tablename__ = "shortcut_delivery"
    __table_args__ = (sa.Index("ix_shortcut_delivery_received", "received_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[DeliveryOutcome] = mapped_column(str_enum(DeliveryOutcome))
    story_ids: Mapped[list] = mapped_column(sa.JSON, default=list)
    error: Mapped[str] = mapped_column(sa.Text, default="")
    body: Mapped[str] = mapped_column(sa.Text)
    headers: Mapped[dict] = mapped_column(sa.JSON, default=dict)


class ShortcutSettings(Base):
    """Card settings of one team, or of every team without its own (team_id NULL)."""

    __tablename__ = "shortcut_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int | None] = mapped_column(sa.ForeignKey("team.id", ondelete="CASCADE"), unique=True)
    workflow_state_id: Mapped[int | None] = mapped_column(sa.BigInteger)
    workflow_state_name: Mapped[str] = mapped_column(sa.String(300), default="")
    # Export every action item when the team's post-mortem is published.
    auto_export: Mapped[bool] = mapped_column(default=False)
    updated_by_id: Mapped[int | None] = mapped_column(sa.ForeignKey("user.id", ondelete="SET NULL"))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    team: Mapped[Team | None] = relationship()
