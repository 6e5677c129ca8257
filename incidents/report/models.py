"""Who receives the weekly report: per team, or everyone's (team None: the global list)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from incidents.catalog.models import Team
from incidents.database import Base, UTCDateTime, utcnow


class ReportRecipient(Base):
    __tablename__ = "report_recipient"
    __table_args__ = (sa.UniqueConstraint("team_id", "email"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    # None: the global list, which receives the all-teams report (besides INCIDENTS_REPORT_RECIPIENTS).
    team_id: Mapped[int | None] = mapped_column(sa.ForeignKey("team.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(sa.String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    team: Mapped[Team | None] = relationship()
