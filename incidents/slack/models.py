"""Slack tables: inbound dedup keys, the incident <-> channel link, and the outbox of Web API calls."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from incidents.database import Base, UTCDateTime, str_enum, utcnow


class SlackInbound(Base):
    """One accepted request from Slack, stored before it is acknowledged; `key` makes a retry a no-op."""

    __tablename__ = "slack_inbound"

    id: Mapped[int] = mapped_column(primary_key=True)
    # event:<event_id>, command:<trigger_id>, action:<action_id>:<action_ts>, view:<view id>:<hash>
    key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(30))
    payload: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SlackChannel(Base):
    """The incident's channel and its pinned summary message (ts); one per incident."""

    __tablename__ = "slack_channel"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incident.id", ondelete="CASCADE"), unique=True)
    channel_id: Mapped[str] = mapped_column(sa.String(40), unique=True)
    name: Mapped[str] = mapped_column(sa.String(80))
    summary_ts: Mapped[str] = mapped_column(sa.String(40), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class OutboxState(StrEnum):
    PENDING = "pending"  # not sent yet
    SENDING = "sending"  # a call went out; its outcome is unknown until recorded (a retry checks Slack first)
    DONE = "done"
    FAILED = "failed"  # Slack refused it for good (ok:false that a retry cannot fix)


class SlackOutbox(Base):
    """One outbound action, keyed so that a retried job finds it done instead of doing it twice."""

    __tablename__ = "slack_outbox"
    __table_args__ = (sa.Index("ix_slack_outbox_state", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(200), unique=True)  # e.g. incident:7:create_channel
    incident_id: Mapped[int | None] = mapped_column(sa.ForeignKey("incident.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(sa.String(60))
    state: Mapped[OutboxState] = mapped_column(str_enum(OutboxState), default=OutboxState.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    result: Mapped[dict] = mapped_column(sa.JSON, default=dict)
    last_error: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
