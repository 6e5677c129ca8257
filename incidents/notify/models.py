"""E-mail subscriptions and the delivery log that makes every notification go out once."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from incidents.auth.models import User
from incidents.catalog.models import Team
from incidents.database import Base, UTCDateTime, str_enum, utcnow


class Subscription(Base):
    """A user's wish for e-mail about one team's incidents (or all, when team is None) of some severities."""

    __tablename__ = "notification_subscription"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user.id", ondelete="CASCADE"), index=True)
    team_id: Mapped[int | None] = mapped_column(sa.ForeignKey("team.id", ondelete="CASCADE"), index=True)
    # Comma-separated severities, e.g. "SEV1,SEV2".
    severities: Mapped[str] = mapped_column(sa.String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship()
    team: Mapped[Team | None] = relationship()

    @property
    def severity_list(self) -> list[str]:
        return [s for s in self.severities.split(",") if s]


class IncidentSubscriber(Base):
    """Someone who pressed Subscribe on one incident: they hear its status updates whatever their subscriptions."""

    __tablename__ = "incident_subscriber"

    incident_id: Mapped[int] = mapped_column(sa.ForeignKey("incident.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    user: Mapped[User] = relationship()


class Channel(StrEnum):
    EMAIL = "email"
    SLACK = "slack"


class DeliveryStatus(StrEnum):
    SENDING = "sending"  # claimed by a worker; another may take it over only after the lease ran out
    SENT = "sent"
    FAILED = "failed"  # temporary failure: the next run of the job tries again
    REJECTED = "rejected"  # permanent failure (5xx, bad settings): never retried


class NotificationLog(Base):
    """One row per (event, channel, recipient), inserted before sending: the unique key is the idempotency."""

    __tablename__ = "notification_log"
    __table_args__ = (sa.UniqueConstraint("event_key", "channel", "recipient"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    event_key: Mapped[str] = mapped_column(sa.String(200))
    channel: Mapped[Channel] = mapped_column(str_enum(Channel, 10))
    # An e-mail address, or "global" / "team:<id>" for Slack (never the webhook URL: it is a secret).
    recipient: Mapped[str] = mapped_column(sa.String(254))
    incident_id: Mapped[int | None] = mapped_column(sa.ForeignKey("incident.id", ondelete="CASCADE"), index=True)
    status: Mapped[DeliveryStatus] = mapped_column(str_enum(DeliveryStatus))
    attempts: Mapped[int] = mapped_column(default=1)
    last_error: Mapped[str] = mapped_column(sa.String(500), default="")
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
